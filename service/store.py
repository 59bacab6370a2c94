"""The Redis status store (the `service.ports.StatusStore` port): each session's status and its
B5 reconnect record, every operation joined to the per-tick pipeline.

Owns: reading and writing `keys.status_key` (shared with the back office, which may write
it too) and the reconnect bookkeeping hash `keys.session_key` (B5). Must not: judge validity
(`service.validity` does, over this store), keep anything in memory, or send to the back
office outside the outbox (status updates go through the outbox, in the same script as the
write; the outbox is told of each committed one so its flusher wakes).

Round trips: every call joins the one MULTI/EXEC of everything asked of this store in the
same event-loop tick (`service.redis_batch.TickBatcher`): in a storm, thousands of sessions
share a round trip; alone, each call is one. `round_trips` counts them. A recovered session
(drop, attempt 1 fails, attempt 2 opens) costs at most 5: `set_status(connecting)` with
pending attempt 1; validation read 1 with "attempt 1 started" saved in the same tick;
pending attempt 2 with its due time (B5: a restart resumes it then); validation read 2; and
`set_status(active)` with the pending record cleared.

Writes that depend on owning the session carry the lease's fencing token (`fence=`) and go
through `service.redis_scripts.WRITE_LUA`: refused as a whole (`FencedWrite`, counted in
`fenced`) once another process has taken the session. A status key of another type than a
string reads as malformed (counted, `MalformedInput`), never as a failed read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from service import keys
from service.core import Status
from service.due_work import NO_DUE_WORK, DueWork
from service.errors import FencedWrite, MalformedInput, StoreError
from service.logging import get_logger
from service.pending import PendingReconnect, parse_pending, pending_mapping
from service.ports import Outbox, StatusUpdate
from service.redis_batch import TickBatcher
from service.redis_scripts import load_scripts, parse_write_reply, queue_write
from service.status_values import READ_STATUS_LUA, parse_status
from service.validity import ValidityCache

log = get_logger(component="store")

MAX_REQUESTS_PER_PIPELINE = 200  # building and parsing one is a stretch the loop cannot interrupt


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

    async def get_status(self, session_id: str) -> Status | None:
        """The session's status, or None if Redis has none. A value that does not parse is
        counted in `malformed` and raised as `MalformedInput("redis", ...)`."""
        key = keys.status_key(check_session_id(session_id))
        (raw,) = await self._run(f"GET status of {session_id!r}", lambda pipe: pipe.eval(READ_STATUS_LUA, 1, key))
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
