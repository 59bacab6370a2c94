"""One session's asyncio driver: owns its `SessionMachine`, carries out its commands with
real I/O, and turns link outcomes, timers and validation answers back into events.

Owns: the machine, the session's `Turn` that serialises events (a stale outcome never reaches
a new state: each timer, link and validation outcome carries a generation checked under the
turn) and the dispatch of each command to its part: `LinkDriver` (drivers.py) and `Validation`
(validation.py) answer through `deliver`, `SessionTimer` (drivers.py) through `deliver_now`;
writes and the cache drop go to the store (`OrderedWrites`, `clear_cache`: `service.store`), `Emit`
to `SessionReport` (report.py), tasks to `SessionTasks` (tasks.py).
Must not: make any reconnect decision (attempts, delays, codes, validity rules are the core's),
or let one session's failure escape into another session or the gateway (contained here).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable

from service.core import IllegalTransition, SessionMachine, State, Status
from service.core.events import (
    BackoffElapsed, CancelReconnect, ClearCache, ClearPending, CloseSocket, Command, Drop, Emit, Event,
    MarkStarted, OpenSocket, RecordPending, ScheduleReconnect, SetStatus, Validate, WRITTEN_FIRST, written_with,
)
from service.errors import FencedWrite, MalformedInput
from service.pending import record_of
from service.ports import Secret
from service.runtime.context import RunnerContext
from service.runtime.report import SessionReport
from service.runtime.tasks import SessionTasks
from service.runtime.drivers import LinkDriver, SessionTimer
from service.runtime.validation import Validation
from service.store import OrderedWrites

_BOOKKEEPING = (RecordPending, MarkStarted, ClearPending)  # crash bookkeeping (B5): see `_save_pending`


class Turn:
    """A session's one-event-at-a-time lock with a non-blocking `try_acquire` (a due timer's event
    runs in its callback when the session is idle); released, it passes to the first waiter (no
    barging) and belongs to no task (a callback may take it, a task release it)."""

    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        if self._held or self._waiters:
            return False
        self._held = True
        return True

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # it was handed to us as we were cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("Turn.release() while the turn is free")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # still held: ownership passes to that waiter
                return
        self._held = False


class SessionRunner:
    """Drives one session. `deliver(event)` is the only way events reach the machine."""

    def __init__(self, session_id: str, credentials: Secret, ctx: RunnerContext,
                 status: Status | None = None, fence: int | None = None) -> None:
        """`fence`: this process's lease token for the session (B9), on every write; None: unfenced."""
        self.session_id = session_id
        self.fence = fence
        self._ctx = ctx
        seed = None if ctx.rng_seed is None else hash((ctx.rng_seed, session_id))
        self.machine = SessionMachine(session_id, ctx.policy, random.Random(seed), status=status)
        self.status = status  # last status this runner wrote (or found)
        self.drop_reason: str | None = None
        self._lock = Turn()  # one event at a time; a due timer may take it inside its callback
        self._timer = SessionTimer(ctx.timers, lambda guard: self.deliver_now(BackoffElapsed(), guard))
        self._loop = asyncio.get_running_loop()  # the runner's; asked once, not per event
        self._loop_now = 0.0  # loop time when the current event was handed to the machine
        self.state_since = self._loop.time()  # loop time the machine entered its state
        self._log = ctx.log.bind(session_id=session_id)
        self._tasks = SessionTasks(ctx.metrics, self._log)
        self._spawn = self._tasks.spawn
        self.writes = OrderedWrites(self._spawn, self._log, ctx.metrics, retries=ctx.io_retries, retry=ctx.write_retry,
                                    due_work=ctx.timers, on_fenced=self._fenced, store=ctx.store,
                                    session_id=session_id, fence=fence)  # the session's writes, in order
        self._report = SessionReport(ctx.timeline, ctx.metrics, self._log)
        self._link = LinkDriver(session_id, credentials, ctx, log=self._log, deliver=self.deliver, spawn=self._spawn)
        self._validation = Validation(  # the link its answer opens is driven in its own task (open_here)
            session_id, ctx, fence=fence, log=self._log, deliver=lambda e, g: self._link.open_here(self.deliver(e, g)),
            spawn=self._spawn, on_fenced=self._fenced, dropped=lambda: self.machine.state is State.DROPPED)

    @property
    def timer_due(self) -> float | None:
        """Loop time the pending reconnect timer is due at, None if none is pending."""
        return self._timer.due_s

    @property
    def dropped(self) -> bool:
        return self.machine.state is State.DROPPED

    # ---- events in -------------------------------------------------------------------

    async def deliver(self, event: Event, guard: Callable[[], bool] | None = None) -> None:
        """Hand `event` to the machine and carry out its commands, in order (due timers of any
        session first: `ReconnectTimers.run_due_now`). Never raises."""
        self._ctx.timers.run_due_now()
        try:
            if not self._lock.try_acquire():  # not `async with`: no coroutines to enter and leave a free turn
                await self._lock.acquire()
            try:
                if self.machine.state is State.DROPPED or (guard is not None and not guard()):
                    return  # dropped, or a stale timer, link or validation outcome: its generation has passed
                commands = self._step(event)
                index = self._run_now(commands, 0)
                while index < len(commands):  # a command that must be awaited (closing a socket)
                    await self._run_awaited(commands[index])
                    index = self._run_now(commands, index + 1)
            finally:
                self._lock.release()
        except Exception as err:  # noqa: BLE001 - one session's bug must not reach the others
            self._session_error(event, err)

    def deliver_now(self, event: Event, guard: Callable[[], bool]) -> None:
        """`deliver` from a plain callback (a due timer): in it when the session is idle, else in a task."""
        if not self._lock.try_acquire():
            self._spawn(self.deliver(event, guard))
            return
        try:
            if self.machine.state is State.DROPPED or not guard():
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
        self._loop_now = self._loop.time()
        lateness_s = self._timer.lateness_s(self._loop_now) if type(event) is BackoffElapsed else None
        if lateness_s is not None:
            self._ctx.metrics.lateness.observe(max(0.0, lateness_s))
            if self._ctx.lateness_s is not None:
                self._ctx.lateness_s.append(lateness_s)
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

    # ---- commands out ----------------------------------------------------------------

    def _run_now(self, commands: list[Command], index: int) -> int:
        """Carry out commands from `index` on up to the first to await (`CloseSocket`, its index
        returned; else len(commands)); each crash bookkeeping pair (`written_with`) as one write."""
        while index < len(commands):
            command = commands[index]
            kind = type(command)
            if kind is CloseSocket:
                return index
            paired = written_with(commands, index) if kind in WRITTEN_FIRST else None
            try:
                if kind is Emit:
                    self._report.emit(command.record)
                elif kind is SetStatus:
                    self._set_status(command, paired)
                elif kind is ClearCache:
                    self._ctx.store.clear_cache(self.session_id)
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
        except Exception as err:  # noqa: BLE001 - log, count, carry on with the next command
            self._command_failed(command, err)

    def _command_failed(self, command: Command, err: Exception) -> None:
        name = type(command).__name__
        self._ctx.metrics.command_errors.labels(command=name).inc()
        if isinstance(err, MalformedInput):
            self._ctx.metrics.count_malformed(err.source)
        self._log.error("command_failed", command=name, error=str(err), error_type=type(err).__name__)

    def _set_status(self, command: SetStatus, record: Command | None) -> None:
        """Queue the status write with the record the core wrote with it, and go on at once: a slow
        Redis must not delay the commands after it (the backoff timer above all)."""
        self.writes.set_status(command.status, command.priority, at_s=self._ctx.clock(),
                               pending=record_of(record) if isinstance(record, RecordPending) else None,
                               clear_pending=isinstance(record, ClearPending))
        self._ctx.metrics.status_changed(self.status, command.status)
        self.status = command.status

    def _save_pending(self, command: RecordPending | MarkStarted | ClearPending, paired: Command | None) -> None:
        """The B5 record as the core says, in order with the other writes; an attempt's start rides
        in its validation's read (`paired`) unless writes are queued (then after them)."""
        if isinstance(paired, Validate) and not self.writes.has_unwritten:
            self._validation.start(paired.for_reconnect, record_of(command))
            return
        self.writes.save_pending(None if isinstance(command, ClearPending) else record_of(command))
        if isinstance(paired, Validate):
            self._validation.start(paired.for_reconnect)

    def _fenced(self, what: str, err: FencedWrite) -> None:
        """A write was refused: another process owns the session now (B9); the gateway lets it go."""
        self._ctx.metrics.fenced.labels(write=what).inc()
        self._log.warning("write_fenced", operation=what, fence=err.token, fence_now=err.token_now)
        if self._ctx.on_fenced is not None:
            self._ctx.on_fenced(self)

    @property
    def has_unwritten(self) -> bool:
        return self.writes.has_unwritten

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
        await self.writes.flush(self._ctx.close_timeout_s)
        self._timer.cancel()
        self._validation.cancel()
        await self._link.close()
        await self._tasks.cancel_all()
