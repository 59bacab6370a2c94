"""`LinkDriver`: one session's WhatsApp link — open it, wait for its end, close it (R7, B3) —
with each outcome handed back as the event the machine is given (`Opened`, `StartFailed`,
`Closed`, `KeepaliveMissed`).

Owns: the current link, the task driving it and its generation (a stale outcome is never
delivered: `close()` makes the old link's outcomes stale before the next link opens), the
malformed-frame counter of the link, and how a failed open or an ended link is reported
and counted. Must not: decide anything (the core does, from the events), or let an I/O
error escape the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from service.core import CloseReason, FailReason
from service.core.events import Closed, Event, KeepaliveMissed, Opened, StartFailed
from service.errors import LinkFailed, MalformedInput
from service.ports import Link, LinkClosed, Secret
from service.runtime.context import RunnerContext

Deliver = Callable[[Event, Callable[[], bool]], Awaitable[None]]  # deliver(event, guard)
Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


class LinkDriver:
    """`open(attempt)` starts a link in a task; `await close()` ends it (R7: awaited)."""

    def __init__(self, session_id: str, credentials: Secret, ctx: RunnerContext, *, log: Any,
                 deliver: Deliver, spawn: Spawn) -> None:
        """`deliver(event, guard)` hands an outcome to the session; `spawn` starts (and
        tracks) the task that drives the link."""
        self._session_id = session_id
        self._credentials = credentials
        self._ctx = ctx
        self._log = log
        self._deliver = deliver
        self._spawn = spawn
        self._generation = 0
        self._link: Link | None = None
        self._task: asyncio.Task[None] | None = None
        self._malformed_seen = 0

    def open(self, attempt: int) -> None:
        """Open a new link for `attempt` (0: the first connect, not a counted attempt)."""
        self._generation += 1
        generation = self._generation
        link = self._ctx.transport.new_link(self._session_id, self._credentials)
        self.sync_counters()
        self._link, self._malformed_seen = link, 0
        self._task = self._spawn(self._drive(link, attempt, generation))

    async def _drive(self, link: Link, attempt: int, generation: int) -> None:
        def current() -> bool:
            return self._generation == generation

        timeout_s = self._ctx.policy.timeouts.connect_timeout_s
        try:
            async with self._ctx.open_slot():  # the connect timeout starts once a slot is ours
                # the transport enforces timeout_s; the outer deadline only guards a transport bug
                # (a deadline, not wait_for: no second task per attempt)
                async with asyncio.timeout(timeout_s + 1.0):
                    await link.open(timeout_s)
        except Exception as err:  # noqa: BLE001 - every failure to open is a StartFailed
            if current():
                self._count_attempt(attempt, "failed")
            await self._deliver(self._start_failed(err), current)
            return
        if current():
            self._count_attempt(attempt, "opened")
        await self._deliver(Opened(), current)
        try:
            closed = await link.wait_closed()
        except Exception as err:  # noqa: BLE001 - a broken reader is a close without a code
            closed = LinkClosed(code=None, reason=f"{type(err).__name__}: {err}")
        if current():
            self.sync_counters()
        dead = closed.code == CloseReason.KEEPALIVE_TIMEOUT  # the Link protocol's code for a link found dead
        event: Event = KeepaliveMissed() if dead else Closed(closed.code, closed.wait_s)
        await self._deliver(event, current)

    def sync_counters(self) -> None:
        """Count malformed frames the current link ignored since the last look."""
        seen = int(getattr(self._link, "malformed_frames", 0) or 0)
        if seen > self._malformed_seen:
            self._ctx.metrics.malformed.labels(source="wire").inc(seen - self._malformed_seen)
            self._log.warning("malformed_input", source="wire", frames=seen - self._malformed_seen)
            self._malformed_seen = seen

    def _start_failed(self, err: BaseException) -> StartFailed:
        if isinstance(err, LinkFailed):
            if FailReason.MALFORMED in err.reason:
                self._ctx.metrics.count_malformed("wire")
            return StartFailed(reason=err.reason, code=err.code)
        if isinstance(err, asyncio.TimeoutError):
            return StartFailed(reason=FailReason.CONNECT_TIMEOUT)
        if isinstance(err, MalformedInput):
            self._ctx.metrics.count_malformed(err.source)
            return StartFailed(reason=FailReason.MALFORMED)
        return StartFailed(reason=type(err).__name__)

    def _count_attempt(self, attempt: int, outcome: str) -> None:
        if attempt >= 1:
            self._ctx.metrics.count_attempt(outcome)

    async def close(self) -> None:
        """R7: the old socket is closed (and the close awaited) before any new one opens."""
        self._generation += 1
        self.sync_counters()
        link, task = self._link, self._task
        self._link, self._task = None, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        if link is not None:
            try:
                async with asyncio.timeout(self._ctx.close_timeout_s):
                    await link.close()
            except Exception as err:  # noqa: BLE001 - R7: errors while closing are ignored
                self._log.info("close_socket_error", error=repr(err))
