"""What drives a session from outside its machine: its link and its reconnect timer. Each
hands its event in with a guard that goes false once the source has moved on (a newer link, a
timer cancelled or started again), so a stale event never reaches the machine.

`LinkDriver`: one session's WhatsApp link — open it, wait for its end, close it (R7, B3) — each
outcome handed back as the event the machine is given (`Opened`, `StartFailed`, `Closed`,
`KeepaliveMissed`). Owns the current link, the task driving it and its generation (`close()`
makes the old link's outcomes stale before the next link opens), the link's malformed-frame
counter, and how a failed open or an ended link is reported and counted.

`ReconnectTimers`: the one owner of every session's reconnect timer. One sorted index of (due time, order)
handles, ONE loop `TimerHandle` armed for the earliest entry only, real cancellation (a cancelled timer
leaves nothing behind), and the hand-on of due timers (`run_due_now`, the `service.due_work.DueWork`
interface): any session event or socket callback that runs first fires what has fallen due, so in a storm a
due timer waits for one step of work, not for a whole pass of the loop. Owns the firing order (earliest due
first; equal due times in the order scheduled) and the containment of a timer's exception (counted by
`on_error`, the next timer still fires). `SessionTimer` is one session's timer on it.

Must not: decide anything (the core does, from the events), let an I/O error escape the
session, or fire a timer before it is due.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, NamedTuple

from sortedcontainers import SortedList

from service.core import CloseReason, FailReason
from service.core.events import Closed, Event, KeepaliveMissed, Opened, StartFailed
from service.deadlines import deadline
from service.errors import LinkFailed, MalformedInput
from service.ports import Link, LinkClosed, Secret

if TYPE_CHECKING:  # the context holds the timers: imported for its type only
    from service.runtime.context import RunnerContext

log = logging.getLogger(__name__)

Deliver = Callable[[Event, Callable[[], bool]], Awaitable[None]]  # deliver(event, guard)
Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


class LinkDriver:
    """`open(attempt)` starts a link in a task (or `open_here`'s); `await close()` ends it (R7)."""

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
        self._task: asyncio.Task[Any] | None = None
        self._malformed_seen = 0
        self._claim: asyncio.Task[Any] | None = None  # the task in `open_here`
        self._handed: tuple[Link, int, int] | None = None  # a link opened for it to drive

    def open(self, attempt: int) -> None:
        """Open a new link for `attempt` (0: the first connect, not a counted attempt)."""
        self._generation += 1
        generation = self._generation
        link = self._ctx.transport.new_link(self._session_id, self._credentials)
        self.sync_counters()
        self._link, self._malformed_seen = link, 0
        task = asyncio.current_task()
        if task is not None and task is self._claim:  # `open_here`'s caller drives it, no task of its own
            self._handed, self._task = (link, attempt, generation), task
        else:
            self._task = self._spawn(self._drive(link, attempt, generation))

    async def open_here(self, delivering: Awaitable[None]) -> None:
        """Await `delivering` (an event's delivery); a link it opens is driven in this task."""
        self._claim = asyncio.current_task()
        try:
            await delivering
        finally:
            self._claim = None
        handed, self._handed = self._handed, None
        if handed is not None and handed[2] == self._generation:
            await self._drive(*handed)

    async def _drive(self, link: Link, attempt: int, generation: int) -> None:
        def current() -> bool:
            return self._generation == generation

        timeout_s = self._ctx.policy.timeouts.connect_timeout_s
        try:
            async with self._ctx.open_slot():  # the connect timeout starts once a slot is ours
                # the transport enforces timeout_s; this deadline (no task, no loop timer) only guards a transport bug
                async with deadline(timeout_s + 1.0):
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
                async with deadline(self._ctx.close_timeout_s):
                    await link.close()
            except Exception as err:  # noqa: BLE001 - R7: errors while closing are ignored
                self._log.info("close_socket_error", error=repr(err))


# -- the reconnect timers ------------------------------------------------------------------

class TimerHandle(NamedTuple):
    """What `schedule` returns and `cancel` takes; sorts by due time, then by order."""

    due_s: float  # loop time
    order: int


class ReconnectTimers:
    """`schedule(due_s, fire) -> handle`, `cancel(handle)`, `run_due_now()`; loop times."""

    def __init__(self, on_error: Callable[[Exception], None] | None = None) -> None:
        """`on_error` hears what a fired timer raised (default: logged here)."""
        self._on_error = on_error
        self._index: SortedList = SortedList()  # of TimerHandle, earliest first
        self._fires: dict[TimerHandle, Callable[[], None]] = {}
        self._order = itertools.count()
        self._running = False
        self._armed: asyncio.TimerHandle | None = None
        self._armed_due_s: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the armed timer's: `run_due_now` reads its clock
        self.fired_early = 0  # timers fired by a hand-on before the loop's timer came

    def __len__(self) -> int:
        return len(self._fires)

    def schedule(self, due_s: float, fire: Callable[[], None]) -> TimerHandle:
        """Call `fire()` once at loop time `due_s` (or as soon after as anything runs)."""
        handle = TimerHandle(due_s, next(self._order))
        self._index.add(handle)
        self._fires[handle] = fire
        if not self._running and (self._armed_due_s is None or due_s < self._armed_due_s):
            self._arm()
        return handle

    def cancel(self, handle: TimerHandle) -> None:
        """Forget `handle`; nothing if it fired or was cancelled already. The loop timer is
        re-armed (or disarmed) when the earliest entry goes."""
        if self._fires.pop(handle, None) is None:
            return
        self._index.remove(handle)
        if not self._running and handle.due_s == self._armed_due_s:
            self._arm()

    def next_due_s(self) -> float | None:
        """The earliest timer's due time (loop time), None if none."""
        return self._index[0].due_s if self._index else None

    def run_due_now(self) -> None:
        """Fire every timer due at the running loop's time (`DueWork`). Never raises. One
        comparison when nothing is due: the armed time is the earliest entry's."""
        due_s = self._armed_due_s
        if due_s is not None and not self._running:
            now_s = self._loop.time()  # type: ignore[union-attr]  # armed: not None
            if due_s <= now_s:
                self.run_due(now_s, by_hand_on=True)

    def run_due(self, now_s: float, *, by_hand_on: bool = False) -> None:
        """Fire every timer due at `now_s`, earliest first. Not re-entrant: a `fire` that
        leads back here (its event delivered at once) returns at once; the outer call goes on
        and takes any timer that fire scheduled, if due."""
        if self._running:
            return
        self._running = True
        try:
            self._fire_due(now_s, by_hand_on)
        finally:
            self._running = False
            self._arm()

    def _fire_due(self, now_s: float, by_hand_on: bool) -> None:
        index, fires = self._index, self._fires
        while index and index[0].due_s <= now_s:
            fire = fires.pop(index.pop(0))
            self.fired_early += by_hand_on
            try:
                fire()
            except Exception as err:  # noqa: BLE001 - one timer's bug must not stop the others
                self._failed(err)

    def _failed(self, err: Exception) -> None:
        if self._on_error is None:
            log.error("reconnect timer failed", exc_info=err)
        else:
            self._on_error(err)

    def _arm(self) -> None:
        """One loop timer, for the earliest entry only (none when there is none)."""
        due_s = self._index[0].due_s if self._index else None
        if due_s == self._armed_due_s:
            return
        if self._armed is not None:
            self._armed.cancel()
        self._armed, self._armed_due_s = None, due_s
        if due_s is not None:
            self._loop = asyncio.get_running_loop()
            self._armed = self._loop.call_at(due_s, self._on_loop_timer, due_s)

    def _on_loop_timer(self, due_s: float) -> None:
        """The loop reached the armed time (asyncio may call up to its clock resolution early)."""
        self._armed, self._armed_due_s = None, None
        self.run_due(max(self._loop.time(), due_s))  # type: ignore[union-attr]  # armed: not None


class SessionTimer:
    """One session's reconnect timer on the shared `ReconnectTimers`: `start(due_s)` (replacing
    any pending one), `cancel()`, `due_s`. When it fires, `fire(guard)` is called; `guard()`
    stays true only until the timer is cancelled or started again, so an event that waits for
    the session's turn is dropped if its timer has since been cancelled."""

    def __init__(self, timers: ReconnectTimers, fire: Callable[[Callable[[], bool]], None]) -> None:
        self._timers = timers
        self._fire = fire
        self._generation = 0
        self._handle: TimerHandle | None = None
        self.due_s: float | None = None  # loop time; None when none is pending (or it was handled)

    def start(self, due_s: float) -> None:
        self.cancel()  # the core never stacks timers; this makes it impossible here too
        self.due_s = due_s
        self._handle = self._timers.schedule(due_s, functools.partial(self._fired, self._generation))

    def _fired(self, generation: int) -> None:
        self._handle = None
        self._fire(lambda: self._generation == generation)

    def cancel(self) -> None:
        self._generation += 1  # a timer already fired and waiting for the turn is now stale
        self.due_s = None
        if self._handle is not None:
            self._timers.cancel(self._handle)
            self._handle = None

    def lateness_s(self, now_s: float) -> float | None:
        """How late the timer's event is handled at `now_s` (once: then None)."""
        if self.due_s is None:
            return None
        lateness_s, self.due_s = now_s - self.due_s, None
        return lateness_s
