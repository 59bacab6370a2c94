"""One session's attempt I/O, as a part of `SessionRunner`: asking whether the session may
still reconnect (R4) and driving its link — open, wait for the end, close (R7, B3) — and
turning each outcome into the event the machine is handed.

Owns: the validation task and the link task of the current attempt, each with a generation
so a stale outcome is never delivered, and how a failed open or an ended link is reported
(`StartFailed`, `Closed`, `KeepaliveMissed`) and counted. Must not: decide anything (the
core does, from the events), or let an I/O error escape this session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from service.core.events import Closed, Event, KeepaliveMissed, Opened, StartFailed, Validated, ValidationFailed
from service.errors import FencedWrite, LinkFailed, MalformedInput, StoreError
from service.pending import PendingReconnect
from service.ports import Link, LinkClosed, Secret

if TYPE_CHECKING:
    from service.runtime.runner import RunnerContext, _Gen

KEEPALIVE_CODE = "keepalive_timeout"  # the Link protocol's code for a link found dead


class AttemptIO:
    """Mixed into `SessionRunner`, whose state these methods share."""

    session_id: str
    _credentials: Secret
    _ctx: RunnerContext
    _gen: _Gen
    _log: Any
    _scheduled: PendingReconnect | None
    _scheduled_reason: str
    _link: Link | None
    _link_attempt: int
    _link_task: asyncio.Task[None] | None
    _link_malformed_seen: int
    fence: int | None
    _fenced: Callable[[str, FencedWrite], None]
    # SessionRunner's, used here
    dropped: bool
    deliver: Callable[..., Coroutine[Any, Any, None]]
    _run_due_timers: Callable[[], None]
    _spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]

    # ---- validation (R4) -----------------------------------------------------------------

    def _start_validation(self, for_reconnect: bool) -> None:
        self._gen.validation += 1
        generation = self._gen.validation
        mark = None
        scheduled = self._scheduled
        if for_reconnect and scheduled is not None and self._scheduled_reason == "backoff":
            # this counted attempt starts now: say so in the validation's round trip (B5)
            mark = PendingReconnect(scheduled.attempt, scheduled.due_at_epoch_s, self._ctx.clock())
        self._spawn(self._validate(for_reconnect, generation, mark))

    async def _validate(self, for_reconnect: bool, generation: int, mark: PendingReconnect | None = None) -> None:
        """Ask the store until it can answer; an unreachable Redis is not an answer. Any
        other exception is a failed validation the core is told of (`ValidationFailed`),
        counted and logged: this task never ends with the session left validating."""
        wait_s = self._ctx.io_retry_s

        def current() -> bool:
            return self._gen.validation == generation
        while current() and not self.dropped:
            self._run_due_timers()
            try:
                async with self._ctx.validation_slot():
                    ok = await self._ctx.store.is_session_active_batched(
                        self.session_id, for_reconnect=for_reconnect, mark_started=mark, fence=self.fence)
            except FencedWrite as err:  # the attempt's start could not be recorded: not ours any more
                self._fenced("mark_started", err)
                return
            except StoreError as err:
                self._ctx.metrics.command_errors.labels(command="Validate").inc()
                self._log.warning("validation_unavailable", error=str(err), retry_in_s=wait_s)
                await asyncio.sleep(wait_s)
                wait_s = min(wait_s * 2, self._ctx.validate_retry_cap_s)
                continue
            except Exception as err:  # noqa: BLE001 - a bug or an input no check foresaw
                self._ctx.metrics.command_errors.labels(command="Validate").inc()
                self._log.error("validation_failed", error=repr(err)[:300], error_type=type(err).__name__,
                                exc_info=True)
                await self.deliver(ValidationFailed(reason=type(err).__name__), guard=current)
                return
            await self.deliver(Validated(ok=ok), guard=current)
            return

    # ---- the link (R7, B3) ----------------------------------------------------------------

    def _open_socket(self, attempt: int) -> None:
        self._gen.link += 1
        generation = self._gen.link
        link = self._ctx.transport.new_link(self.session_id, self._credentials)
        self.sync_link_counters()
        self._link, self._link_attempt, self._link_malformed_seen = link, attempt, 0
        self._link_task = self._spawn(self._drive_link(link, attempt, generation))

    async def _drive_link(self, link: Link, attempt: int, generation: int) -> None:
        def current() -> bool:
            return self._gen.link == generation

        timeout_s = self._ctx.policy.timeouts.connect_timeout_s
        try:
            async with self._ctx.open_slot():  # the connect timeout starts once a slot is ours
                # the transport enforces timeout_s; the outer deadline only guards a transport bug
                await asyncio.wait_for(link.open(timeout_s), timeout_s + 1.0)
        except Exception as err:  # noqa: BLE001 - every failure to open is a StartFailed
            if current():
                self._count_attempt(attempt, "failed")
            await self.deliver(self._start_failed(err), guard=current)
            return
        if current():
            self._count_attempt(attempt, "opened")
        await self.deliver(Opened(), guard=current)
        try:
            closed = await link.wait_closed()
        except Exception as err:  # noqa: BLE001 - a broken reader is a close without a code
            closed = LinkClosed(code=None, reason=f"{type(err).__name__}: {err}")
        if current():
            self.sync_link_counters()
        event: Event = KeepaliveMissed() if closed.code == KEEPALIVE_CODE else Closed(closed.code, closed.wait_s)
        await self.deliver(event, guard=current)

    def sync_link_counters(self) -> None:
        """Count malformed frames the current link ignored since the last look."""
        seen = int(getattr(self._link, "malformed_frames", 0) or 0)
        if seen > self._link_malformed_seen:
            self._ctx.metrics.malformed.labels(source="wire").inc(seen - self._link_malformed_seen)
            self._log.warning("malformed_input", source="wire", frames=seen - self._link_malformed_seen)
            self._link_malformed_seen = seen

    def _start_failed(self, err: BaseException) -> StartFailed:
        if isinstance(err, LinkFailed):
            if "malformed" in err.reason:
                self._ctx.metrics.count_malformed("wire")
            return StartFailed(reason=err.reason, code=err.code)
        if isinstance(err, asyncio.TimeoutError):
            return StartFailed(reason="connect_timeout")
        if isinstance(err, MalformedInput):
            self._ctx.metrics.count_malformed(err.source)
            return StartFailed(reason="malformed")
        return StartFailed(reason=type(err).__name__)

    def _count_attempt(self, attempt: int, outcome: str) -> None:
        if attempt >= 1:
            self._ctx.metrics.count_attempt(outcome)

    async def _close_socket(self) -> None:
        """R7: the old socket is closed (and the close awaited) before any new one opens."""
        self._gen.link += 1
        self.sync_link_counters()
        link, task = self._link, self._link_task
        self._link, self._link_task = None, None
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        if link is not None:
            try:
                await asyncio.wait_for(link.close(), self._ctx.close_timeout_s)
            except Exception as err:  # noqa: BLE001 - R7: errors while closing are ignored
                self._log.info("close_socket_error", error=repr(err))
