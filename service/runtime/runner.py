"""One session's asyncio driver: owns its `SessionMachine`, carries out its commands with
real I/O, and turns link outcomes, timers and validation answers back into events.

Owns: the machine, the session's turn that serialises events (a stale outcome never reaches
a new state: each timer, link and validation outcome carries a generation checked under the
turn) and the dispatch of each command to its part: `LinkDriver` (link.py) and `Validation`
(validation.py) answer through `deliver`, `SessionTimer` (timers.py) through `deliver_now`;
writes queue in `OrderedWrites` (`service.store`), `Emit` goes to `SessionReport` (report.py),
tasks to `SessionTasks` (tasks.py).
Must not: make any reconnect decision (attempts, delays, codes, validity rules are the
core's), or let one session's failure escape into another session or the gateway —
every I/O error is logged, counted and contained here.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from service.core import IllegalTransition, SessionMachine, State, Status
from service.core.events import (
    BackoffElapsed, CancelReconnect, ClearCache, ClearPending, CloseSocket, Command, Drop, Emit, Event,
    MarkStarted, OpenSocket, RecordPending, ScheduleReconnect, SetStatus, Validate, written_with,
)
from service.errors import FencedWrite, MalformedInput
from service.outbox import new_update
from service.pending import record_of
from service.ports import Secret
from service.runtime.context import RunnerContext
from service.runtime.link import LinkDriver
from service.runtime.report import SessionReport
from service.runtime.tasks import SessionTasks
from service.runtime.timers import SessionTimer
from service.runtime.turn import Turn
from service.runtime.validation import Validation
from service.store import OrderedWrites

_BOOKKEEPING = (RecordPending, MarkStarted, ClearPending)  # crash bookkeeping (B5): see `_save_pending`


class SessionRunner:
    """Drives one session. `deliver(event)` is the only way events reach the machine."""

    def __init__(self, session_id: str, credentials: Secret, ctx: RunnerContext,
                 status: Status | None = None, fence: int | None = None) -> None:
        """`fence`: the fencing token of this process's lease on the session (B9), carried by
        every write; None writes unfenced (a runner with no lease, in tests)."""
        self.session_id = session_id
        self.fence = fence
        self._ctx = ctx
        seed = None if ctx.rng_seed is None else hash((ctx.rng_seed, session_id))
        self.machine = SessionMachine(session_id, ctx.policy, random.Random(seed), status=status)
        self.status = status  # last status this runner wrote (or found)
        self.drop_reason: str | None = None
        self._lock = Turn()  # one event at a time; a due timer may take it inside its callback
        self._timer = SessionTimer(ctx.timers, lambda guard: self.deliver_now(BackoffElapsed(), guard))
        self._loop_now = 0.0  # loop time when the current event was handed to the machine
        self.state_since = asyncio.get_running_loop().time()  # loop time the machine entered its state
        self._log = ctx.log.bind(session_id=session_id)
        self._tasks = SessionTasks(ctx.metrics, self._log)
        self._spawn = self._tasks.spawn
        self._writes = OrderedWrites(self._spawn, self._log, ctx.metrics, retries=ctx.io_retries,
                                     retry=ctx.write_retry, due_work=ctx.timers,
                                     on_fenced=self._fenced)
        self._report = SessionReport(ctx.timeline, ctx.metrics, self._log)
        self._link = LinkDriver(session_id, credentials, ctx, log=self._log, deliver=self.deliver, spawn=self._spawn)
        self._validation = Validation(session_id, ctx, fence=fence, log=self._log, deliver=self.deliver,
                                      spawn=self._spawn, on_fenced=self._fenced, dropped=lambda: self.dropped)

    @property
    def timer_due(self) -> float | None:
        """Loop time the pending reconnect timer is due at, None if none is pending."""
        return self._timer.due_s

    @property
    def dropped(self) -> bool:
        return self.machine.state is State.DROPPED

    # ---- events in -------------------------------------------------------------------

    async def deliver(self, event: Event, guard: Callable[[], bool] | None = None) -> None:
        """Hand `event` to the machine and carry out its commands, in order. Never raises.
        Timers of any session that have fallen due go first (`ReconnectTimers.run_due_now`)."""
        self._ctx.timers.run_due_now()
        try:
            async with self._lock:
                if self.dropped:
                    return
                if guard is not None and not guard():
                    return  # a stale timer, link or validation outcome: its generation has passed
                commands = self._step(event)
                index = self._run_now(commands, 0)
                while index < len(commands):  # a command that must be awaited (closing a socket)
                    await self._run_awaited(commands[index])
                    index = self._run_now(commands, index + 1)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - one session's bug must not reach the others
            self._session_error(event, err)

    def deliver_now(self, event: Event, guard: Callable[[], bool]) -> None:
        """`deliver` from a plain callback (a due timer): when nothing else of this session is
        running, the machine gets the event at once, in this callback; otherwise it waits its
        turn in a task. Commands that must be awaited finish in a task that keeps the turn."""
        if not self._lock.try_acquire():
            self._spawn(self.deliver(event, guard))
            return
        try:
            if self.dropped or not guard():
                self._lock.release()
                return
            commands = self._step(event)
            index = self._run_now(commands, 0)
        except Exception as err:  # noqa: BLE001 - one session's bug must not reach the others
            self._lock.release()
            self._session_error(event, err)
            return
        if index < len(commands):
            self._spawn(self._finish(event, commands, index))
        else:
            self._lock.release()

    async def _finish(self, event: Event, commands: list[Command], index: int) -> None:
        try:
            while index < len(commands):
                await self._run_awaited(commands[index])
                index = self._run_now(commands, index + 1)
        except Exception as err:  # noqa: BLE001 - one session's bug must not reach the others
            self._session_error(event, err)
        finally:
            self._lock.release()

    def _session_error(self, event: Event, err: Exception) -> None:
        self._ctx.metrics.command_errors.labels(command="deliver").inc()
        self._log.error("session_error", event_type=type(event).__name__, error=repr(err), exc_info=True)

    def _step(self, event: Event) -> list[Command]:
        """The machine's commands for `event` (none if the core calls it illegal)."""
        self._loop_now = asyncio.get_running_loop().time()
        lateness_s = self._timer.lateness_s(self._loop_now) if isinstance(event, BackoffElapsed) else None
        if lateness_s is not None:
            self._record_lateness(lateness_s)
        state = self.machine.state
        try:
            commands = self.machine.handle(event, self._ctx.clock())
            if self.machine.state is not state:
                self.state_since = self._loop_now
            return commands
        except IllegalTransition as err:
            self._ctx.metrics.illegal.labels(event=err.event).inc()
            self._log.warning("illegal_transition", state=err.state, event_type=err.event)
            return []

    def _record_lateness(self, lateness_s: float) -> None:
        self._ctx.metrics.lateness.observe(max(0.0, lateness_s))
        if self._ctx.lateness_s is not None:
            self._ctx.lateness_s.append(lateness_s)

    # ---- commands out ----------------------------------------------------------------

    def _run_now(self, commands: list[Command], index: int) -> int:
        """Carry out commands from `index` on while none needs awaiting; returns the index of
        the first that does (only `CloseSocket`), or len(commands). The crash bookkeeping pairs
        (`events.written_with`: a status and its record, an attempt's start and its validation)
        are carried out as one write each."""
        while index < len(commands):
            command = commands[index]
            kind = type(command)
            if kind is CloseSocket:
                return index
            paired = written_with(commands, index)
            try:
                if kind is Emit:
                    self._report.emit(command.record)
                elif kind is SetStatus:
                    self._set_status(command, paired)
                elif kind is ClearCache:
                    self._ctx.validity.clear_cache(self.session_id)
                elif kind is ScheduleReconnect:
                    self._schedule(command)
                elif kind is CancelReconnect:
                    self._timer.cancel()
                elif kind is Validate:
                    self._validation.start(command.for_reconnect)
                elif kind in _BOOKKEEPING:
                    self._save_pending(command, paired)
                elif kind is OpenSocket:
                    self._link.open(command.attempt)
                elif kind is Drop:
                    self._drop(command.reason)
                else:
                    raise TypeError(f"the runtime cannot carry out {command!r}")
            except Exception as err:  # noqa: BLE001 - log, count, carry on with the next command
                self._command_failed(command, err)
            index += 1 if paired is None else 2
        return index

    async def _run_awaited(self, command: Command) -> None:
        try:
            await self._link.close()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - log, count, carry on with the next command
            self._command_failed(command, err)

    def _command_failed(self, command: Command, err: Exception) -> None:
        name = type(command).__name__
        self._ctx.metrics.command_errors.labels(command=name).inc()
        if isinstance(err, MalformedInput):
            self._ctx.metrics.count_malformed(err.source)
        self._log.error("command_failed", command=name, error=str(err), error_type=type(err).__name__)

    def _set_status(self, command: SetStatus, record: Command | None) -> None:
        """Queue the status write (with its outbox record, and the pending record the core wrote
        with it) and go on at once: a slow or absent Redis must not delay the commands after it
        (the backoff timer above all). Writes are kept in order and retried until Redis has
        them, so no update is lost (B6)."""
        pending = record_of(record) if isinstance(record, RecordPending) else None
        clear = isinstance(record, ClearPending)
        update = new_update(self.session_id, command.status, command.priority, at_s=self._ctx.clock())

        def write() -> Any:  # the same update each time: its update_id makes a repeat harmless
            return self._ctx.store.set_status(self.session_id, command.status, outbox_update=update,
                                              pending=pending, clear_pending=clear, fence=self.fence)
        self._queue_write("set_status", write)
        self._ctx.metrics.status_changed(self.status, command.status)
        self.status = command.status

    def _save_pending(self, command: RecordPending | MarkStarted | ClearPending, paired: Command | None) -> None:
        """The pending record as the core says (B5), in order with the session's other writes.
        An attempt's start goes in its validation's read (`paired`), one round trip, unless
        writes are still queued: then after them, so an older record never lands over it."""
        if isinstance(paired, Validate) and not self._writes.has_unwritten:
            self._validation.start(paired.for_reconnect, record_of(command))
            return
        pending = None if isinstance(command, ClearPending) else record_of(command)
        self._queue_write("save_pending", lambda: self._ctx.store.save_pending(
            self.session_id, pending, fence=self.fence))
        if isinstance(paired, Validate):
            self._validation.start(paired.for_reconnect)

    def _queue_write(self, what: str, write: Callable[[], Any]) -> None:
        self._writes.queue(what, write)

    def _fenced(self, what: str, err: FencedWrite) -> None:
        """Redis refused a write: another process owns the session now (B9). Counted, logged;
        the gateway lets the session go without writing anything more."""
        self._ctx.metrics.fenced.labels(write=what).inc()
        self._log.warning("write_fenced", operation=what, fence=err.token, fence_now=err.token_now)
        if self._ctx.on_fenced is not None:
            self._ctx.on_fenced(self)

    @property
    def has_unwritten(self) -> bool:
        return self._writes.has_unwritten

    @property
    def needs_repair(self) -> bool:
        return self._writes.needs_repair

    async def repair_status(self) -> bool:
        """Write the queued writes that failed (Redis down or saturated); True once all are written."""
        if not self._writes.needs_repair:
            return not self._writes.has_unwritten
        written = await self._writes.repair()
        if written:
            self._log.info("status_write_repaired", status=self.status.value if self.status else None)
        return written

    async def flush_writes(self, timeout_s: float) -> bool:
        """Wait (bounded) for queued status writes; True if none is left."""
        return await self._writes.flush(timeout_s)

    def _schedule(self, command: ScheduleReconnect) -> None:
        self._timer.start(self._loop_now + command.delay_s)
        self._ctx.metrics.backoff.observe(command.delay_s)

    def sync_link_counters(self) -> None:
        """Count malformed frames the current link ignored since the last look."""
        self._link.sync_counters()

    def _drop(self, reason: str) -> None:
        self.drop_reason = reason
        self._timer.cancel()
        self._validation.cancel()
        if self._ctx.on_drop is not None:
            self._ctx.on_drop(self, reason)

    async def aclose(self) -> None:
        """Cancel every task of this runner and close its link (after `Released`)."""
        await self.flush_writes(self._ctx.close_timeout_s)
        self._timer.cancel()
        self._validation.cancel()
        await self._link.close()
        await self._tasks.cancel_all()
