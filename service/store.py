"""The Redis status store, the in-process validity cache and the validation chain (R1, R3, R4, B5).

Owns: reading and writing `keys.status_key` (shared with the back office, which may write
it too), the reconnect bookkeeping hash `keys.session_key` (B5), and the answer to "is this
session still valid?". Must not: decide what to do with the answer (the core does), keep
anything in memory but positive validity answers, or send to the back office outside the
outbox (status updates go through `service.outbox.Outbox`, in the same MULTI as the write).

Validation chain (`is_session_active`): cache → Redis status → back office.
- Cache: only positive answers are cached, for `cache_ttl_s`; `clear_cache` (R3) and every
  `set_status` drop the session's entry. An entry made while `connecting` (valid only for a
  reconnect) never answers a strict question.
- Redis: R1 — `active` is valid, and `connecting` too when `for_reconnect`. Other statuses,
  or a value that does not parse (counted in `malformed`, logged) are not valid: we cannot
  confirm the session, so we fail closed; nothing else is disturbed. A *missing* status
  during a reconnect (Redis lost its data: a restart without persistence, a failover to an
  empty replica) is not a verdict: the back office, which owns the accounts, decides
  (counted in `missing_status`); if it cannot answer either, `StoreError` is raised so the
  caller retries rather than dropping every session that reconnects after a Redis wipe.
- Back office, asked only when Redis says valid: it owns the accounts, so if it says the
  account is gone or disabled, *invalid wins* (counted in `backoffice_vetoes`). If it is
  unreachable (`BackOfficeError`), the Redis answer stands — a back-office outage must not
  drop every session that reconnects during it — and the event is counted in
  `backoffice_unreachable`; that answer is not cached, so the next validation asks again.
- Budget (R4 within a bound): every back-office question waits at most `backoffice_budget_s`
  (None: as long as the client's own timeout). An answer that comes later is not waited
  for: it counts as unreachable (also counted in `backoffice_budget_expired`), so a slow or
  silent back office adds at most the budget to a reconnect, not its full timeout.

Round trips: `round_trips` counts every Redis round trip this store makes (a pipeline is
one). The `*_batched` methods do what their plain namesakes do, but their commands join the
one MULTI/EXEC of everything asked in the same event-loop tick (`service.redis_batch`):
in a storm, thousands of sessions share a round trip. A recovered session (drop, attempt 1
fails, attempt 2 opens) costs at most 5 even alone: `set_status(connecting)` with pending
attempt 1; validation read 1 with "attempt 1 started" (`mark_started`); pending attempt 2
with its due time (B5: a restart resumes it then); validation read 2; and
`set_status(active)` with the pending record cleared.

Writes that depend on owning the session carry the lease's fencing token (`fence=`) and go
through `service.redis_scripts.WRITE_LUA`: refused as a whole (`FencedWrite`, counted in
`fenced`) once another process has taken the session. A status key of another type than a
string reads as malformed (counted, fails closed), never as a failed read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from service import keys
from service.core import Status
from service.core.statuses import is_valid_status
from service.errors import BackOfficeError, ConfigError, FencedWrite, MalformedInput, StoreError
from service.logging import get_logger
from service.outbox import Outbox
from service.pending import PendingReconnect, parse_pending, pending_mapping
from service.ports import BackOffice, StatusUpdate
from service.redis_batch import TickBatcher
from service.redis_scripts import is_noscript, load_scripts, parse_write_reply, queue_write
from service.status_values import READ_STATUS_LUA, StatusScan, parse_status

log = get_logger(component="store")


def _check_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not session_id:
        raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
    return session_id


class StatusStore(StatusScan):
    """Status per session in Redis plus the validity chain; one per process."""

    def __init__(self, redis: aioredis.Redis, backoffice: BackOffice, *, cache_ttl_s: float,
                 clock: Callable[[], float] = time.monotonic, outbox: Outbox | None = None,
                 on_step: Callable[[], None] | None = None, backoffice_budget_s: float | None = None) -> None:
        """`on_step`: called between per-tick pipelines (`TickBatcher`); must not raise.
        `backoffice_budget_s`: the longest a validation waits for the back office (None: no bound
        but the client's timeout); see the module docstring."""
        if not isinstance(cache_ttl_s, (int, float)) or isinstance(cache_ttl_s, bool) or cache_ttl_s < 0:
            raise ConfigError(f"StatusStore cache_ttl_s must be a number >= 0, got {cache_ttl_s!r}")
        if backoffice_budget_s is not None and (
                not isinstance(backoffice_budget_s, (int, float)) or isinstance(backoffice_budget_s, bool)
                or not 0 < backoffice_budget_s < float("inf")):
            raise ConfigError(f"StatusStore backoffice_budget_s must be a finite number > 0 or None, "
                              f"got {backoffice_budget_s!r}")
        self.backoffice_budget_s = None if backoffice_budget_s is None else float(backoffice_budget_s)
        self.backoffice_budget_expired = 0
        self.redis = redis
        self.backoffice = backoffice
        self.cache_ttl_s = float(cache_ttl_s)
        self.clock = clock
        self.outbox = outbox  # when set, committed updates wake its flusher (high = at once)
        self._cache: dict[str, tuple[float, bool]] = {}  # session → (expires_at, valid when strict)
        self.round_trips = 0
        self.malformed = 0
        self.cache_hits = 0
        self.backoffice_vetoes = 0
        self.backoffice_unreachable = 0
        self.missing_status = 0  # reconnect validations that found no status in Redis
        self.fenced = 0  # writes Redis refused: the session's lease had moved (B9)
        self._batcher: TickBatcher | None = None  # made on first use of a `*_batched` method
        self._on_step = on_step

    @contextmanager
    def _round_trip(self, what: str) -> Iterator[None]:
        """Count one round trip; turn Redis failures into `StoreError` naming the operation."""
        self.round_trips += 1
        with self._store_errors(what):
            yield

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

    # -- status ---------------------------------------------------------------------------

    async def get_status(self, session_id: str) -> Status | None:
        """The session's status, or None if Redis has none. A value that does not parse is
        counted in `malformed` and raised as `MalformedInput("redis", ...)`."""
        _check_session_id(session_id)
        with self._round_trip(f"GET status of {session_id!r}"):
            raw = await self.redis.eval(READ_STATUS_LUA, 1, keys.status_key(session_id))
        try:
            return parse_status(raw, session_id)
        except MalformedInput:
            self.malformed += 1
            raise

    async def set_status(self, session_id: str, status: Status, *, outbox_update: StatusUpdate | None = None,
                         pending: PendingReconnect | None = None, clear_pending: bool = False,
                         fence: int | None = None) -> StatusUpdate | None:
        """Write the status and, in the same script (one round trip, all or nothing), append
        `outbox_update` and save or clear the reconnect bookkeeping. Returns the update as
        stored, with the `seq` Redis assigned (the `seq` passed in is ignored). On
        `StoreError` the write may or may not have committed: retry with the same update
        (same `update_id`). With `fence` (the lease's token, B9) nothing is written once the
        session's lease has moved: `FencedWrite` is raised."""
        build = self._status_write(session_id, status, outbox_update, pending, clear_pending, fence)
        with self._round_trip(f"SET status of {session_id!r}"):
            results = await self._scripted(build)
        return self._committed(session_id, Status(status), outbox_update, results, fence)

    async def _scripted(self, build: Callable[[Any], None]) -> list[Any]:
        """One MULTI/EXEC of what `build` queues; when Redis does not hold a script it names
        (a restart, `SCRIPT FLUSH`), the scripts are loaded and it is sent again, once."""
        for reload in (True, False):
            async with self.redis.pipeline(transaction=True) as pipe:
                build(pipe)
                try:
                    results = await pipe.execute(raise_on_error=False)
                except ResponseError as err:
                    if not (reload and is_noscript(err)):
                        raise
                    results = [err]
            if not (reload and any(is_noscript(result) for result in results)):
                break
            self.round_trips += 1
            await load_scripts(self.redis)
        error = next((result for result in results if isinstance(result, Exception)), None)
        if error is not None:
            raise error
        return results

    def _status_write(self, session_id: str, status: Status, outbox_update: StatusUpdate | None,
                      pending: PendingReconnect | None, clear_pending: bool,
                      fence: int | None) -> Callable[[Any], None]:
        """Check a status write and return what queues its commands on a MULTI pipeline."""
        _check_session_id(session_id)
        status = Status(status)
        if outbox_update is not None and (outbox_update.session_id != session_id or outbox_update.status != status):
            raise ValueError(f"outbox_update is for ({outbox_update.session_id!r}, {outbox_update.status}), "
                             f"but the write is ({session_id!r}, {status})")
        if pending is not None and clear_pending:
            raise ValueError("set_status: pass pending or clear_pending, not both")
        if pending is not None:
            pending_mapping(pending)  # bad bookkeeping raises here, before anything is queued
        self.clear_cache(session_id)

        def build(pipe: Any) -> None:
            queue_write(pipe, session_id, token=fence, status=status, update=outbox_update,
                        pending=pending, clear_pending=clear_pending)
        return build

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

    def _committed(self, session_id: str, status: Status, outbox_update: StatusUpdate | None,
                   results: list[Any], fence: int | None) -> StatusUpdate | None:
        seq = self._checked(session_id, results[0], fence)
        if outbox_update is None:
            return None
        stored = StatusUpdate(outbox_update.update_id, session_id, status, outbox_update.priority,
                              seq, outbox_update.at_s)
        if self.outbox is not None:
            self.outbox.notify(stored)
        return stored

    # -- validity ---------------------------------------------------------------------------

    def clear_cache(self, session_id: str) -> None:
        """R3: forget the session's cached validity (first thing on every close)."""
        self._cache.pop(session_id, None)

    def _cached(self, session_id: str, for_reconnect: bool) -> bool:
        entry = self._cache.get(session_id)
        if entry is None:
            return False
        expires_at, strict_ok = entry
        if self.clock() >= expires_at:
            del self._cache[session_id]
            return False
        return strict_ok or for_reconnect

    async def is_session_active(self, session_id: str, *, for_reconnect: bool = False) -> bool:
        """R1/R4: cache → Redis → back office; see the module docstring for every branch.
        Raises `StoreError` only when Redis itself cannot be read."""
        if self._cached(session_id, for_reconnect):
            self.cache_hits += 1
            return True
        try:
            status = await self.get_status(session_id)
        except MalformedInput as err:
            log.warning("status_malformed", session_id=session_id, detail=err.detail)
            return False
        return await self._judge(session_id, status, for_reconnect)

    async def _judge(self, session_id: str, status: Status | None, for_reconnect: bool) -> bool:
        """The rest of the chain once Redis answered `status` (R1, then the back office)."""
        if status is None and for_reconnect:
            return await self._ask_backoffice_without_redis(session_id)
        if status is None or not is_valid_status(status, for_reconnect=for_reconnect):
            return False
        try:
            backoffice_ok = await self._ask_backoffice(session_id)
        except BackOfficeError as err:
            self.backoffice_unreachable += 1
            log.warning("validation_backoffice_unreachable",
                        session_id=session_id, redis_status=status.value, error=str(err))
            return True
        if not backoffice_ok:
            self.backoffice_vetoes += 1
            return False
        if self.cache_ttl_s > 0:
            self._cache[session_id] = (self.clock() + self.cache_ttl_s, status is Status.ACTIVE)
        return True

    async def _ask_backoffice(self, session_id: str) -> bool:
        """The back office's answer within the budget; past it, a `BackOfficeError`."""
        if self.backoffice_budget_s is None:
            return await self.backoffice.is_valid(session_id)
        try:
            async with asyncio.timeout(self.backoffice_budget_s):
                return await self.backoffice.is_valid(session_id)
        except TimeoutError:
            self.backoffice_budget_expired += 1
            raise BackOfficeError(f"back office gave no validity answer for {session_id!r} within the "
                                  f"R4 budget of {self.backoffice_budget_s:g} s") from None

    async def _ask_backoffice_without_redis(self, session_id: str) -> bool:
        self.missing_status += 1
        try:
            valid = await self._ask_backoffice(session_id)
        except BackOfficeError as err:
            self.backoffice_unreachable += 1
            raise StoreError(f"no status in Redis for {session_id!r} and the back office cannot tell "
                             f"({err}); retry once either answers") from err
        log.warning("validation_without_redis_status", session_id=session_id, backoffice_valid=valid)
        return valid

    # -- reconnect bookkeeping (B5) -------------------------------------------------------------

    async def save_pending(self, session_id: str, attempt: int, due_at_epoch_s: float, *,
                           fence: int | None = None) -> None:
        """Record that attempt `attempt` is due at `due_at_epoch_s` (wall clock). To save it in
        the same round trip as a status write, pass `pending=` to `set_status` instead."""
        pending = PendingReconnect(attempt, due_at_epoch_s)
        pending_mapping(pending)
        with self._round_trip(f"HSET pending of {_check_session_id(session_id)!r}"):
            results = await self._scripted(lambda pipe: queue_write(pipe, session_id, token=fence, pending=pending))
        self._checked(session_id, results[0], fence)

    async def pending(self, session_id: str) -> PendingReconnect | None:
        """The saved reconnect bookkeeping, or None. Garbage, or a key of another type than a
        hash, raises `MalformedInput` (counted)."""
        try:
            with self._round_trip(f"HGETALL pending of {_check_session_id(session_id)!r}"):
                raw = await self.redis.hgetall(keys.session_key(session_id))
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

    async def clear_pending(self, session_id: str) -> None:
        with self._round_trip(f"DEL pending of {_check_session_id(session_id)!r}"):
            await self.redis.delete(keys.session_key(session_id))

    # -- per-tick batching (storms) ---------------------------------------------------------------

    def _tick(self) -> TickBatcher:
        if self._batcher is None:
            # 200 requests a pipeline: building and parsing one is a stretch the loop cannot interrupt
            self._batcher = TickBatcher(self.redis, on_round_trip=self._count_round_trip, max_requests=200,
                                        on_step=self._on_step, on_noscript=lambda: load_scripts(self.redis))
        return self._batcher

    def _count_round_trip(self) -> None:
        self.round_trips += 1

    async def set_status_batched(self, session_id: str, status: Status, *,
                                 outbox_update: StatusUpdate | None = None, pending: PendingReconnect | None = None,
                                 clear_pending: bool = False, fence: int | None = None) -> StatusUpdate | None:
        """`set_status`, its script joined to this tick's pipeline (still all or nothing, fenced)."""
        build = self._status_write(session_id, status, outbox_update, pending, clear_pending, fence)
        with self._store_errors(f"SET status of {session_id!r}"):
            results = await self._tick().run(build)
        return self._committed(session_id, Status(status), outbox_update, results, fence)

    async def save_pending_batched(self, session_id: str, pending: PendingReconnect | None, *,
                                   fence: int | None = None) -> None:
        """Replace the session's reconnect bookkeeping with `pending` (None: delete it), in this
        tick's pipeline (fenced like `set_status`)."""
        _check_session_id(session_id)
        if pending is not None:
            pending_mapping(pending)
        with self._store_errors(f"HSET pending of {session_id!r}"):
            results = await self._tick().run(lambda pipe: queue_write(pipe, session_id, token=fence, pending=pending,
                                                                      clear_pending=pending is None))
        self._checked(session_id, results[0], fence)

    async def is_session_active_batched(self, session_id: str, *, for_reconnect: bool = False,
                                        mark_started: PendingReconnect | None = None,
                                        fence: int | None = None) -> bool:
        """`is_session_active`, its Redis read joined to this tick's pipeline. `mark_started`
        (a record with `started_at_s`) is saved in the same round trip, fenced: the
        validation of an attempt is where it starts, so a restart knows it was spent (B5)."""
        _check_session_id(session_id)
        if mark_started is not None:
            pending_mapping(mark_started)
        if self._cached(session_id, for_reconnect):
            self.cache_hits += 1
            if mark_started is not None:
                await self.save_pending_batched(session_id, mark_started, fence=fence)
            return True

        def build(pipe: Any) -> None:
            pipe.eval(READ_STATUS_LUA, 1, keys.status_key(session_id))
            if mark_started is not None:
                queue_write(pipe, session_id, token=fence, pending=mark_started)
        with self._store_errors(f"GET status of {session_id!r}"):
            results = await self._tick().run(build)
        if mark_started is not None:
            self._checked(session_id, results[1], fence)
        try:
            status = parse_status(results[0], session_id)
        except MalformedInput as err:
            self.malformed += 1
            log.warning("status_malformed", session_id=session_id, detail=err.detail)
            return False
        return await self._judge(session_id, status, for_reconnect)

    async def is_session_active_many(self, session_ids: list[str], *, for_reconnect: bool = False) -> list[bool]:
        """`is_session_active` for each id: every Redis read in one round trip, then one
        back-office question per session that Redis found valid (R4 asks it fresh)."""
        return list(await asyncio.gather(*(self.is_session_active_batched(sid, for_reconnect=for_reconnect)
                                           for sid in session_ids)))


def _wrong_type(err: StoreError) -> bool:
    """True if Redis refused a command because the key holds another type (WRONGTYPE)."""
    return isinstance(err.__cause__, ResponseError) and str(err.__cause__).startswith("WRONGTYPE")
