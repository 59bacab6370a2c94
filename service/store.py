"""The status store (the `service.ports.StatusStore` port) and the way a session's writes reach
it: each session's status (`keys.status_key`, shared with the back office) and B5 reconnect
record (`keys.session_key`) in Redis, written by one fenced script in the per-tick pipeline.

Owns:
- `OrderedWrites`: one session's writes — its status (with the outbox record, B6) and its
  pending record (B5) — over any `StatusStore`, kept in order and retried, so a slow or absent
  store never delays the session's next command (the backoff timer above all) and no update
  is lost or reordered. One writer task; a write that fails is retried (`service.retry`:
  capped exponential) until the store takes it; if the task is cancelled (the session
  released), what is left stays queued for `repair()` (the gateway's lease loop runs it).
- `ValidityCache`: the short positive validity answers (R3), dropped for a session by every
  close (`ClearCache`) and every status write, asked first by `service.validity`.
- `RedisStatusStore`: every call joins the one MULTI/EXEC of everything asked in the same
  event-loop tick (`service.tick_batch.TickBatcher`): in a storm thousands of sessions share a
  round trip; alone, each call is one (`round_trips`). Writes that depend on owning the
  session carry the lease's fencing token (`fence=`) and go through
  `service.redis_scripts.WRITE_LUA`, queued by its SHA1 (`queue_write`): refused as a whole
  (`FencedWrite`, counted in `fenced`) once another process has taken the session. A status
  key of another type than a string reads as malformed (counted, `MalformedInput`), never as
  a failed read. A recovered session costs at most 5 round trips (service README, "Round trips").
Must not: decide what to write (the runner turns the core's commands into writes), drop a
write, judge validity (`service.validity` does, over any store), or send to the back office
outside the outbox (an update rides in its status write's script; the outbox is told of each
committed one so its flusher wakes).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from service import keys
from service.core import Priority, Status
from service.due_work import NO_DUE_WORK, DueWork
from service.errors import ConfigError, FencedWrite, MalformedInput, StoreError
from service.logging import get_logger
from service.metrics import ServiceMetrics
from service.pending import PendingReconnect, parse_pending, pending_mapping
from service.ports import Outbox, StatusUpdate
from service.redis_scripts import WRITE_SHA, load_scripts, reply_text
from service.retry import RetryPolicy, Retrying
from service.status_values import READ_STATUS_LUA, parse_status
from service.tick_batch import TickBatcher

log = get_logger(component="store")

MAX_REQUESTS_PER_PIPELINE = 200  # building and parsing one is a stretch the loop cannot interrupt
APPEND_IDEMPOTENCY_TTL_S = 86_400  # an outbox entry's idempotency key: retries of one write come within seconds


# -- one session's writes, in order -----------------------------------------------------

Write = Callable[[], Any]  # returns an awaitable; the same write each time (repeats are harmless)


class OrderedWrites:
    """`queue(what, write)`; `has_unwritten`, `needs_repair`, `repair()`, `flush(timeout_s)`."""

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]], log: Any,
                 metrics: ServiceMetrics, *, retries: int, retry: RetryPolicy,
                 due_work: DueWork = NO_DUE_WORK,
                 on_fenced: Callable[[str, FencedWrite], None] = lambda what, err: None) -> None:
        """`due_work` (due reconnect timers) is handed on before every write and as the writer
        resumes after one: a storm resumes thousands of writers in one pass.
        `on_fenced` is told of a write Redis refused because the session's lease moved (B9):
        every write still queued is dropped with it — none of them is this process's to make.
        A write that failed `retries` times in a row is logged as deferred (once) and counted."""
        self._on_fenced = on_fenced
        self._spawn = spawn
        self._due_work = due_work
        self._log = log
        self._metrics = metrics
        self._retries = retries
        self._retry = retry
        self._writes: deque[tuple[str, Write]] = deque()  # the head is being written (or failed)
        self._writer: asyncio.Task[bool] | None = None

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
        """Write queued writes in order, each retried until it goes through; a write that
        failed `retries` times in a row (or failed with anything but `StoreError`) is logged
        once as deferred. True once the queue is empty."""
        retry, deferred = Retrying(self._retry), False
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
            retry.succeeded()
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
    """What a fenced write did: `accepted` (else nothing was written and `token_now` is the
    session's token), the `seq` of its outbox entry (0: none) and malformed values it replaced."""

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


def write_keys(session_id: str, update_id: str) -> list[str]:
    return [keys.fence_key(session_id), keys.status_key(session_id), keys.session_key(session_id),
            keys.OUTBOX_KEY, keys.seq_key(session_id), keys.update_id_key(update_id) if update_id else
            keys.update_id_key("-"), keys.OUTBOX_KEY + ":malformed"]


def queue_write(pipe: Any, session_id: str, *, token: int | None, status: Status | None = None,
                update: StatusUpdate | None = None, pending: PendingReconnect | None = None,
                clear_pending: bool = False) -> None:
    """Queue one fenced write on `pipe`: the status, its outbox entry (`update`, whose status
    must be `status`), and the pending record set (`pending`), cleared or kept. `token` None
    writes unfenced (tools and tests that own no lease)."""
    if pending is not None:
        mapping = pending_mapping(pending)
        op, attempt, due, started = "set", mapping["attempt"], mapping["due_at_s"], mapping.get("started_at_s", "")
        counted = mapping.get("counted", "")
    else:
        op, attempt, due, started, counted = ("clear" if clear_pending else "keep"), "", "", "", ""
    if update is None:
        entry: list[Any] = ["", session_id, "", "", APPEND_IDEMPOTENCY_TTL_S]
    else:
        entry = [update.update_id, session_id, Priority(update.priority).value, repr(float(update.at_s)),
                 APPEND_IDEMPOTENCY_TTL_S]
    script_keys = write_keys(session_id, update.update_id if update is not None else "")
    pipe.evalsha(WRITE_SHA, len(script_keys), *script_keys, "" if token is None else str(token),
                 "" if status is None else Status(status).value, op, attempt, due, started, *entry, counted)


# -- the Redis store -----------------------------------------------------------------------


def check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not session_id:
        raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
    return session_id


def check_status_write(session_id: str, status: Status, outbox_update: StatusUpdate | None,
                       pending: PendingReconnect | None, clear_pending: bool) -> Status:
    """What every store checks before a status write queues anything; returns the `Status`."""
    check_session_id(session_id)
    status = Status(status)
    if outbox_update is not None and (outbox_update.session_id != session_id or outbox_update.status != status):
        raise ValueError(f"outbox_update is for ({outbox_update.session_id!r}, {outbox_update.status}), "
                         f"but the write is ({session_id!r}, {status})")
    if pending is not None and clear_pending:
        raise ValueError("set_status: pass pending or clear_pending, not both")
    if pending is not None:
        pending_mapping(pending)  # bad bookkeeping raises here, before anything is queued
    return status


class RedisStatusStore:
    """Status and reconnect record per session in Redis; one per process."""

    def __init__(self, redis: aioredis.Redis, *, cache: ValidityCache | None = None,
                 outbox: Outbox | None = None, due_work: DueWork = NO_DUE_WORK) -> None:
        """`cache`: the validity cache a status write makes stale (its entry is dropped).
        `outbox`: told of each committed update, so its flusher wakes (high = at once).
        `due_work`: due reconnect timers, handed on between per-tick pipelines (`TickBatcher`)."""
        self.redis = redis
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

    @contextmanager
    def _store_errors(self, what: str) -> Iterator[None]:
        """Turn Redis failures into `StoreError` naming the operation."""
        try:
            yield
        except ResponseError as err:
            raise StoreError(f"redis rejected {what}: {err}; a key holds a value of the wrong "
                             "kind (written by hand?): inspect it") from err
        except RedisError as err:
            raise StoreError(f"redis failed during {what}: {type(err).__name__}: {err}; "
                             "check that Redis is up, then retry") from err

    async def _run(self, what: str, build: Callable[[Any], None]) -> list[Any]:
        with self._store_errors(what):
            return await self._tick.run(build)

    # -- status ---------------------------------------------------------------------------

    async def get_status(self, session_id: str, *, mark_started: PendingReconnect | None = None,
                         fence: int | None = None) -> Status | None:
        """The session's status, or None if Redis has none. A value that does not parse is
        counted in `malformed` and raised as `MalformedInput("redis", ...)`. `mark_started` is
        saved as the reconnect record (fenced, like `save_pending`) in the same request as the
        read: one entry of the tick's pipeline, so an attempt's start costs no round trip of its
        own; its refusal (`FencedWrite`) wins over the read."""
        key = keys.status_key(check_session_id(session_id))
        if mark_started is not None:
            pending_mapping(mark_started)  # a bad record raises before anything is queued

        def build(pipe: Any) -> None:
            pipe.eval(READ_STATUS_LUA, 1, key)
            if mark_started is not None:
                queue_write(pipe, session_id, token=fence, pending=mark_started)
        results = await self._run(f"GET status of {session_id!r}", build)
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
        """Write the status and, in the same script (all or nothing), append `outbox_update`
        and save or clear the reconnect bookkeeping. Returns the update as stored, with the
        `seq` Redis assigned (the `seq` passed in is ignored). On `StoreError` the write may or
        may not have committed: retry with the same update (same `update_id`). With `fence`
        (the lease's token, B9) nothing is written once the session's lease has moved:
        `FencedWrite` is raised."""
        status = check_status_write(session_id, status, outbox_update, pending, clear_pending)
        if self.cache is not None:
            self.cache.forget(session_id)

        def build(pipe: Any) -> None:
            queue_write(pipe, session_id, token=fence, status=status, update=outbox_update,
                        pending=pending, clear_pending=clear_pending)
        results = await self._run(f"SET status of {session_id!r}", build)
        seq = self._checked(session_id, results[0], fence)
        if outbox_update is None:
            return None
        stored = StatusUpdate(outbox_update.update_id, session_id, status, outbox_update.priority,
                              seq, outbox_update.at_s)
        if self.outbox is not None:
            self.outbox.notify(stored)
        return stored

    def _checked(self, session_id: str, reply: Any, fence: int | None) -> int:
        """A fenced write's reply → its seq; counts and logs what it replaced; raises
        `FencedWrite` (counted) when it was refused."""
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
        """Replace the session's reconnect bookkeeping with `pending` (None: delete it), fenced
        like `set_status`. To save it in the same script as a status write, pass `pending=` (or
        `clear_pending=True`) to `set_status`."""
        check_session_id(session_id)
        if pending is not None:
            pending_mapping(pending)
        results = await self._run(f"HSET pending of {session_id!r}", lambda pipe: queue_write(
            pipe, session_id, token=fence, pending=pending, clear_pending=pending is None))
        self._checked(session_id, results[0], fence)

    async def pending(self, session_id: str) -> PendingReconnect | None:
        """The saved reconnect bookkeeping, or None. Garbage, or a key of another type than a
        hash, raises `MalformedInput` (counted)."""
        key = keys.session_key(check_session_id(session_id))
        try:
            (raw,) = await self._run(f"HGETALL pending of {session_id!r}", lambda pipe: pipe.hgetall(key))
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
