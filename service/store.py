"""The status store (the `service.ports.StatusStore` port) and a session's way to it: each
session's status (`keys.status_key`, shared with the back office) and B5 reconnect record
(`keys.session_key`) in Redis, written by one fenced script in the per-tick pipeline.

Owns:
- `OrderedWrites`: one session's writes — its status (with a new outbox update, B6) and its
  pending record (B5) — kept in order by one writer task and retried (`service.retry`: capped
  exponential) until the store takes them, so a slow or absent store never delays the
  session's next command (the backoff timer above all) and nothing is lost or reordered; what
  a cancelled writer (a released session) leaves stays queued for `repair()` (the gateway's).
- `ValidityCache`: short positive validity answers (R3, asked first by `service.validity`),
  dropped for a session by every close (`clear_cache`) and every status write.
- `RedisStatusStore`: every call joins the one round trip of its event-loop tick
  (`service.tick_batch.TickBatcher`: a storm's sessions share round trips; `round_trips`): its
  reads and writes are script calls, a tick's batched into one call on a single Redis.
  Writes carry the lease's fencing token (`fence=`) in `service.redis_scripts.WRITE_LUA`, sent
  by SHA1 (`queue_write`): refused whole (`FencedWrite`, counted in `fenced`) once another
  process took the session. A status key that is not a string reads as malformed (counted);
  the read's script (`service.status_values.READ_STATUS_LUA`) goes by SHA1 too.
Must not: decide what to write (the core does), drop a write, judge validity (the chain
does, over any store), or send to the back office but through the outbox (an update rides
in its status write's script; the outbox is told of each committed one so its flusher wakes).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from service import keys
from service.keys import check_session_id
from service.core import Priority, Status
from service.due_work import NO_DUE_WORK, DueWork
from service.errors import ConfigError, FencedWrite, MalformedInput, StoreError
from service.logging import get_logger
from service.metrics import ServiceMetrics
from service.pending import PendingReconnect, parse_pending, pending_mapping
from service.ports import ENUM_TEXT, Outbox, StatusStore, StatusUpdate, new_update
from service.redis_connect import layout_for
from service.redis_scripts import READ_STATUS_SHA, WRITE_SHA, load_scripts, reply_text
from service.retry import RetryPolicy, Retrying
from service.status_values import parse_status
from service.tick_batch import TickBatcher

log = get_logger(component="store")

MAX_REQUESTS_PER_PIPELINE = 200  # building and parsing one is a stretch the loop cannot interrupt
APPEND_IDEMPOTENCY_TTL_S = 86_400  # an outbox entry's idempotency key: retries of one write come within seconds
_TTL_TEXT = str(APPEND_IDEMPOTENCY_TTL_S)  # as a command sends it (a batch carries text as it is: `ScriptBatch`)


# -- one session's writes, in order -----------------------------------------------------

Write = Callable[[], Any]  # returns an awaitable; the same write each time (repeats are harmless)


class OrderedWrites:
    """`set_status(...)`, `save_pending(...)` (to `store`, for `session_id`, with `fence`) or any
    `queue(what, write)`; `has_unwritten`, `needs_repair`, `repair()`, `flush(timeout_s)`."""

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]], log: Any,
                 metrics: ServiceMetrics, *, retries: int, retry: RetryPolicy, due_work: DueWork = NO_DUE_WORK,
                 on_fenced: Callable[[str, FencedWrite], None] = lambda what, err: None,
                 store: StatusStore | None = None, session_id: str = "", fence: int | None = None) -> None:
        """`due_work` (due timers) is handed on before every write and as the writer resumes (a storm
        resumes thousands in one pass). `on_fenced` hears of a write refused because the lease
        moved (B9): every queued write is dropped with it. `retries` failures in a row: deferred."""
        self._store: Any = store
        self._session_id, self._fence = session_id, fence
        self._on_fenced = on_fenced
        self._spawn = spawn
        self._due_work = due_work
        self._log = log
        self._metrics = metrics
        self._retries = retries
        self._retry = retry
        self._writes: deque[tuple[str, Write]] = deque()  # the head is being written (or failed)
        self._writer: asyncio.Task[bool] | None = None

    def set_status(self, status: Status, priority: Priority, *, at_s: float,
                   pending: PendingReconnect | None = None, clear_pending: bool = False) -> None:
        """Queue the status write, with a new outbox update and the pending record written with it."""
        update = new_update(self._session_id, status, priority, at_s=at_s)
        self.queue("set_status", lambda: self._store.set_status(  # the same update each time: repeats are harmless
            self._session_id, status, outbox_update=update, pending=pending, clear_pending=clear_pending,
            fence=self._fence))

    def save_pending(self, pending: PendingReconnect | None) -> None:
        """Queue the session's B5 record (None: delete it)."""
        self.queue("save_pending", lambda: self._store.save_pending(self._session_id, pending, fence=self._fence))

    def queue(self, what: str, write: Write) -> None:
        self._writes.append((what, write))
        if self._writer is None or self._writer.done():
            self._writer = self._spawn(self._drain())

    @property
    def has_unwritten(self) -> bool:
        return bool(self._writes)

    @property
    def needs_repair(self) -> bool:
        return bool(self._writes) and (self._writer is None or self._writer.done())

    async def repair(self) -> bool:
        """Run the writer again over what failed; True once every queued write is done."""
        if not self.needs_repair:
            return not self._writes
        self._writer = self._spawn(self._drain())
        return await self._writer

    async def flush(self, timeout_s: float) -> bool:
        """Wait (bounded) for the writer; True if nothing is left."""
        if self._writer is not None and not self._writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout_s)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        return not self._writes

    async def _drain(self) -> bool:
        """Write the queue in order, each write retried until it lands (one that failed `retries`
        times, or with anything but `StoreError`, is logged once as deferred); True once empty."""
        retry: Retrying | None = None  # made at a first failure: a write that lands needs none
        deferred = False
        while self._writes:
            what, write = self._writes[0]
            self._due_work.run_due_now()
            try:
                await write()
            except FencedWrite as err:
                self._writes.clear()
                self._on_fenced(what, err)
                return True
            except Exception as err:  # noqa: BLE001 - Redis down, or a bug: the write waits either way
                self._due_work.run_due_now()
                retry = retry or Retrying(self._retry)
                wait_s = retry.failed()
                if isinstance(err, StoreError) and retry.failures < self._retries:
                    self._log.warning("store_retry", operation=what, try_number=retry.failures, error=str(err),
                                      retry_in_s=wait_s)
                elif not deferred:
                    deferred = True
                    self._metrics.command_errors.labels(command="SetStatus").inc()
                    self._log.error("status_write_deferred", operation=what, queued=len(self._writes),
                                    error=str(err)[:300], error_type=type(err).__name__)
                await retry.wait()
                continue
            self._due_work.run_due_now()  # resumed: thousands of writers can resume in one loop pass
            if deferred:
                self._log.info("status_write_repaired", operation=what)
                deferred = False
            retry = None
            self._writes.popleft()
        return True


# -- the validity cache (R3) ---------------------------------------------------------------

class ValidityCache:
    """Positive validity answers by session, each for `ttl_s` on `clock` (0: nothing cached)."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(ttl_s, (int, float)) or isinstance(ttl_s, bool) or not 0.0 <= ttl_s < float("inf"):
            raise ConfigError(f"validity cache_ttl_s must be a finite number >= 0, got {ttl_s!r}")
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self._entries: dict[str, tuple[float, bool]] = {}  # session → (expires_at, valid when strict)
        self.hits = 0

    def forget(self, session_id: str) -> None:
        """R3: drop the session's entry (every close, every status write)."""
        self._entries.pop(session_id, None)

    def remember(self, session_id: str, *, strict_ok: bool) -> None:
        if self.ttl_s > 0:
            self._entries[session_id] = (self.clock() + self.ttl_s, strict_ok)

    def answers(self, session_id: str, for_reconnect: bool) -> bool:
        """True if a live entry says valid for this kind of question (counted in `hits`)."""
        entry = self._entries.get(session_id)
        if entry is None:
            return False
        expires_at, strict_ok = entry
        if self.clock() >= expires_at:
            del self._entries[session_id]
            return False
        if strict_ok or for_reconnect:
            self.hits += 1
            return True
        return False


# -- the fenced write (B9) ----------------------------------------------------------------

@dataclass(frozen=True)
class WriteReply:
    """A fenced write's outcome: `accepted` (else nothing written; `token_now` is the session's),
    its outbox entry's `seq` (0: none), the malformed values it replaced."""

    accepted: bool
    seq: int = 0
    token_now: str = ""
    notes: tuple[str, ...] = ()


def parse_write_reply(reply: Any) -> WriteReply:
    """The reply of `WRITE_LUA`; anything else raises `MalformedInput("redis", ...)`."""
    if not isinstance(reply, list) or not reply or reply[0] not in (0, 1) or isinstance(reply[0], bool):
        raise MalformedInput("redis", f"a fenced write answered {reply!r:.80}")
    if reply[0] == 0:
        return WriteReply(False, token_now=reply_text(reply[1]) if len(reply) > 1 else "")
    if len(reply) < 2 or not isinstance(reply[1], int) or isinstance(reply[1], bool):
        raise MalformedInput("redis", f"a fenced write answered no seq: {reply!r:.80}")
    return WriteReply(True, reply[1], notes=tuple(reply_text(note) for note in reply[2:]))


def accepted_seq(reply: Any) -> int | None:
    """The seq of the common reply, an accepted write that replaced nothing (`[1, seq]`), read
    without a `WriteReply`; None for any other reply (`parse_write_reply` reads it)."""
    if type(reply) is list and len(reply) == 2 and type(reply[0]) is int and reply[0] == 1 and type(reply[1]) is int:
        return reply[1]
    return None


def _text(value: Any, kind: type[Status] | type[Priority]) -> str:
    """A status's or priority's stored string (a plain string is checked by `kind`)."""
    text = ENUM_TEXT.get(value) if type(value) is kind else None
    return kind(value).value if text is None else text


def queue_write(pipe: Any, session_id: str, *, token: int | None, status: Status | None = None,
                update: StatusUpdate | None = None, pending: dict[str, str] | None = None,
                clear_pending: bool = False, layout: keys.KeyLayout = keys.SINGLE) -> None:
    """Queue one fenced write on `pipe`: the status, its outbox entry (`update`, of `status`) and
    the pending record set (`pending`: its `pending_mapping`, made as the write was checked),
    cleared or kept, at `layout`'s keys (one slot on a cluster). `token` None writes unfenced."""
    if pending is not None:
        op, attempt, due, started = "set", pending["attempt"], pending["due_at_s"], pending.get("started_at_s", "")
        counted = pending.get("counted", "")
    else:
        op, attempt, due, started, counted = ("clear" if clear_pending else "keep"), "", "", "", ""
    if update is None:
        entry: tuple[Any, ...] = ("", session_id, "", "", _TTL_TEXT)
    else:
        entry = (update.update_id, session_id, _text(update.priority, Priority), repr(float(update.at_s)),
                 _TTL_TEXT)
    script_keys = layout.write_keys(session_id, entry[0] or "-")
    # a command, not pipe.evalsha: redis-py's cluster pipeline blocks that method (the command routes by its keys)
    pipe.execute_command("EVALSHA", WRITE_SHA, len(script_keys), *script_keys, "" if token is None else str(token),
                         "" if status is None else _text(status, Status), op, attempt, due, started, *entry, counted)


# -- the Redis store -----------------------------------------------------------------------


def check_status_write(session_id: str, status: Status, outbox_update: StatusUpdate | None,
                       pending: PendingReconnect | None, clear_pending: bool) -> tuple[Status, dict[str, str] | None]:
    """What every store checks before a status write queues anything; returns the `Status` and
    the pending record's `pending_mapping` (None: no record)."""
    check_session_id(session_id)
    status = status if type(status) is Status else Status(status)
    if outbox_update is not None and (outbox_update.session_id != session_id or outbox_update.status != status):
        raise ValueError(f"outbox_update is for ({outbox_update.session_id!r}, {outbox_update.status}), "
                         f"but the write is ({session_id!r}, {status})")
    if pending is not None and clear_pending:
        raise ValueError("set_status: pass pending or clear_pending, not both")
    return status, None if pending is None else pending_mapping(pending)  # bad bookkeeping raises here


class RedisStatusStore:
    """Status and reconnect record per session in Redis; one per process."""

    def __init__(self, redis: aioredis.Redis, *, cache: ValidityCache | None = None,
                 outbox: Outbox | None = None, due_work: DueWork = NO_DUE_WORK,
                 layout: keys.KeyLayout | None = None) -> None:
        """`cache`: the validity cache a status write makes stale (its entry is dropped).
        `outbox`: told of each committed update, so its flusher wakes (high = at once).
        `due_work`: due reconnect timers, handed on between per-tick pipelines (`TickBatcher`)."""
        self.redis = redis
        self.layout = layout_for(redis, layout)  # where the keys live (hash-tagged shards on a cluster)
        self.cache = cache
        self.outbox = outbox
        self.round_trips = 0
        self.malformed = 0
        self.fenced = 0  # writes Redis refused: the session's lease had moved (B9)
        self._tick = TickBatcher(redis, on_round_trip=self._count_round_trip,
                                 max_requests=MAX_REQUESTS_PER_PIPELINE, due_work=due_work,
                                 on_noscript=lambda: load_scripts(redis))

    def _count_round_trip(self) -> None:
        self.round_trips += 1

    async def _run(self, build: Callable[[Any], None], operation: str, session_id: str,
                   scripted: bool = True) -> list[Any]:
        """`build`'s results from the tick's pipeline; Redis failures as `StoreError` naming the
        operation and session (the text is made only then: most requests succeed)."""
        try:
            return await self._tick.run(build, scripted=scripted)
        except ResponseError as err:
            what = f"{operation} of {session_id!r}"
            raise StoreError(f"redis rejected {what}: {err}; a key holds a value of the wrong "
                             "kind (written by hand?): inspect it") from err
        except RedisError as err:
            what = f"{operation} of {session_id!r}"
            raise StoreError(f"redis failed during {what}: {type(err).__name__}: {err}; "
                             "check that Redis is up, then retry") from err

    def clear_cache(self, session_id: str) -> None:
        """R3: drop the session's cached validity answer (every close; every status write too)."""
        if self.cache is not None:
            self.cache.forget(session_id)

    # -- status ---------------------------------------------------------------------------

    async def get_status(self, session_id: str, *, mark_started: PendingReconnect | None = None,
                         fence: int | None = None) -> Status | None:
        """The session's status (None: none; unparsable: counted, `MalformedInput`). `mark_started`
        is saved as the B5 record, fenced, in the read's request (no round trip of its own); its
        refusal (`FencedWrite`) wins over the read."""
        key = self.layout.status_key(check_session_id(session_id))
        mark = None if mark_started is None else pending_mapping(mark_started)  # a bad record raises here

        def build(pipe: Any) -> None:
            pipe.execute_command("EVALSHA", READ_STATUS_SHA, 1, key)  # loaded at start, like the write
            if mark is not None:
                queue_write(pipe, session_id, token=fence, pending=mark, layout=self.layout)
        results = await self._run(build, "GET status", session_id)
        if mark_started is not None:
            self._checked(session_id, results[1], fence)
        raw = results[0]
        try:
            return parse_status(raw, session_id)
        except MalformedInput:
            self.malformed += 1
            raise

    async def set_status(self, session_id: str, status: Status, *, outbox_update: StatusUpdate | None = None,
                         pending: PendingReconnect | None = None, clear_pending: bool = False,
                         fence: int | None = None) -> StatusUpdate | None:
        """The port's write (`service.ports.StatusStore.set_status`) in one fenced script; Redis
        assigns the `seq`. After a `StoreError` it may have committed: retry with the same update."""
        status, mapping = check_status_write(session_id, status, outbox_update, pending, clear_pending)
        self.clear_cache(session_id)

        def build(pipe: Any) -> None:
            queue_write(pipe, session_id, token=fence, status=status, update=outbox_update,
                        pending=mapping, clear_pending=clear_pending, layout=self.layout)
        results = await self._run(build, "SET status", session_id)
        seq = self._checked(session_id, results[0], fence)
        if outbox_update is None:
            return None
        stored = StatusUpdate(outbox_update.update_id, session_id, status, outbox_update.priority,
                              seq, outbox_update.at_s)
        if self.outbox is not None:
            self.outbox.notify(stored)
        return stored

    def _checked(self, session_id: str, reply: Any, fence: int | None) -> int:
        """A fenced write's reply → its seq (replacements counted, logged); `FencedWrite` if refused."""
        seq = accepted_seq(reply)
        if seq is not None:
            return seq
        result = parse_write_reply(reply)
        for note in result.notes:
            self.malformed += 1
            log.warning("redis_value_replaced", session_id=session_id, detail=note)
        if not result.accepted:
            self.fenced += 1
            raise FencedWrite(session_id, fence, result.token_now)
        return result.seq

    # -- reconnect bookkeeping (B5) -------------------------------------------------------------

    async def save_pending(self, session_id: str, pending: PendingReconnect | None, *,
                           fence: int | None = None) -> None:
        """Replace the session's reconnect record with `pending` (None: delete it), fenced like
        `set_status` (which saves it in the status write's script when given `pending=`)."""
        check_session_id(session_id)
        mapping = None if pending is None else pending_mapping(pending)  # a bad record raises here
        results = await self._run(lambda pipe: queue_write(
            pipe, session_id, token=fence, pending=mapping, clear_pending=pending is None, layout=self.layout),
            "HSET pending", session_id)
        self._checked(session_id, results[0], fence)

    async def pending(self, session_id: str) -> PendingReconnect | None:
        """The B5 record, or None; garbage or a key that is not a hash: `MalformedInput` (counted)."""
        key = self.layout.session_key(check_session_id(session_id))
        try:
            (raw,) = await self._run(lambda pipe: pipe.hgetall(key), "HGETALL pending", session_id,
                                     scripted=False)
        except StoreError as err:
            if not _wrong_type(err):
                raise
            self.malformed += 1
            raise MalformedInput("redis", f"pending reconnect of {session_id!r} is not a hash") from None
        if not raw:
            return None
        try:
            return parse_pending(raw, session_id)
        except MalformedInput:
            self.malformed += 1
            raise

    async def aclose(self) -> None:
        """Wait for the pipelines in flight."""
        await self._tick.aclose()


def _wrong_type(err: StoreError) -> bool:
    """True if Redis refused a command because the key holds another type (WRONGTYPE)."""
    return isinstance(err.__cause__, ResponseError) and str(err.__cause__).startswith("WRONGTYPE")
