"""`RunnerContext`: what every session runner of one gateway shares — the store and validity ports, the
transport, the policy, metrics, timeline, log, the reconnect timers and the admission
slots that pace validations and socket opens (`Slots`).

Owns: those shared parts and the knobs of the runners' I/O (retries, timeouts, in-flight
caps). Must not: hold anything of one session, or decide anything.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.core import Policy
from service.metrics import ServiceMetrics
from service.ports import StatusStore, Transport, Validity
from service.retry import RetryPolicy
from service.runtime.timeline import TimelineWriter
from service.runtime.drivers import ReconnectTimers

if TYPE_CHECKING:
    from service.runtime.runner import SessionRunner


class Slots:
    """At most `limit` holders at once, served in the order they asked. `when_free(start)`
    leaves a plain callback in the queue, not a task or a future: in a storm thousands of
    attempts wait here at once, and every waiting task (its coroutine, frame, context and
    future) is more for the cyclic GC to walk. `async with` waits for a slot (a retry)."""

    def __init__(self, limit: int) -> None:
        self._limit = _checked_limit(limit)
        self._free = limit  # below 0 after a lower limit: that many holders give theirs back for good
        self._queue: deque[Callable[[], bool]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def limit(self) -> int:
        return self._limit

    def set_limit(self, limit: int) -> None:
        """A lower limit takes effect as holders release; a higher one hands the new slots to the
        first in line at once."""
        extra, self._limit = _checked_limit(limit) - self._limit, limit
        if extra <= 0:
            self._free += extra
            return
        try:
            while extra > 0 and self._queue:
                extra -= 1
                self.release()  # pays a lowered limit back first; if a start raises, `_hand` passed it on
        finally:
            self._free += extra

    def when_free(self, start: Callable[[], bool]) -> None:
        """Call `start()` holding a slot, now or once one is free. `start` returns False when it
        no longer wants the slot (it goes to the next in line); True: the caller releases it."""
        if self._free > 0 and not self._queue:
            self._free -= 1
            if not self._hand(start):
                self.release()
        else:
            self._queue.append(start)

    def release(self) -> None:
        """Give a held slot back: to the first in line that still wants it, else free (or gone,
        while more are held than a lowered limit allows)."""
        while self._free >= 0 and self._queue:
            if self._hand(self._queue.popleft()):
                return
        self._free += 1

    def _hand(self, start: Callable[[], bool]) -> bool:
        """`start()` with the slot held: whether it kept it. If it raises, the slot is passed on first."""
        try:
            return start()
        except BaseException:
            self.release()
            raise

    async def __aenter__(self) -> None:
        await self.acquire()

    async def acquire(self) -> None:
        """Wait for a slot (in line behind every `when_free` before it)."""
        if self._free > 0 and not self._queue:
            self._free -= 1
            return
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def start() -> bool:
            if handed.done():
                return False  # its waiter was cancelled
            handed.set_result(None)
            return True
        self._queue.append(start)
        try:
            await handed
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():
                self.release()  # handed to us as we were cancelled: pass it on
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.release()


def _checked_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"slots limit must be an int >= 1, got {limit!r}")
    return limit


class AdmissionLimit:
    """The validations' `Slots` limit, adapted to how fast validations answer (AIMD, like TCP's
    window) around one line, half of `budget_s` (R4's back-office budget): it starts at `floor`;
    each answer within that line adds one slot, so the limit about doubles per round of answers,
    up to `cap`; an answer past it multiplies the limit by `cut` (at most once per budget period:
    the answers admitted before a cut come back slow too), never below `floor`. One line, not a
    band: an answer between a quarter and half the budget used to leave the limit where it was,
    which held it at ~1,700 while 6,000 attempts of a 10,000-session storm waited for a slot."""

    def __init__(self, *, cap: int, budget_s: float, floor: int = 64, cut: float = 0.7,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 < cut < 1 or not budget_s > 0:
            raise ValueError(f"admission cut must be in (0, 1) and budget_s > 0, got {cut!r}, {budget_s!r}")
        self.cap, self.floor = _checked_limit(cap), min(_checked_limit(floor), cap)
        self.slow_s, self.budget_s, self.cut = budget_s / 2, budget_s, cut
        self.slots = Slots(self.floor)
        self.clock = clock
        self._cut_at_s = -float("inf")

    def answered(self, took_s: float) -> None:
        """A validation took `took_s` from its admission to its answer."""
        slots = self.slots
        if took_s <= self.slow_s:
            if slots.limit < self.cap:
                slots.set_limit(slots.limit + 1)
        elif slots.limit > self.floor:
            now_s = self.clock()
            if now_s - self._cut_at_s >= self.budget_s:
                self._cut_at_s = now_s
                slots.set_limit(max(self.floor, int(slots.limit * self.cut)))


class SlotHold:
    """One slot held of `slots`, given back once however often `release` is called (also as a
    task's done callback: a task cancelled before its first step never runs its `finally`)."""

    __slots__ = ("_slots",)

    def __init__(self, slots: Slots) -> None:
        self._slots: Slots | None = slots

    def release(self, *_: object) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots.release()


@dataclass
class RunnerContext:
    """What every runner of one gateway shares."""

    store: StatusStore
    validity: Validity
    transport: Transport
    policy: Policy
    metrics: ServiceMetrics
    timeline: TimelineWriter
    log: Any
    clock: Callable[[], float] = time.time  # the `now` the core sees: epoch seconds, comparable across processes
    on_drop: Callable[[SessionRunner, str], None] | None = None
    on_fenced: Callable[[SessionRunner], None] | None = None  # a write was refused: the lease moved (B9)
    lateness_s: list[float] | None = None  # raw samples, kept only when a benchmark asks
    io_retries: int = 3  # tries of one status write before it is logged as deferred
    # waits between tries while Redis is unreachable (settings redis_retry_base_s, redis_retry_cap_s, ...)
    validate_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(0.1, 5.0, what="validation retry"))
    write_retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(0.1, 1.0, what="status write retry"))
    close_timeout_s: float = 5.0
    rng_seed: int | None = None
    # admission control: at most this many validations / socket opens in flight at once. It paces
    # I/O (like a connection pool); when and whether to reconnect is still the core's decision.
    # The validations' limit adapts below it (`AdmissionLimit`) to how fast they answer within
    # R4's back-office budget (setting backoffice_validity_budget_s).
    max_inflight: int = 4096
    validity_budget_s: float = 1.0
    timers: ReconnectTimers = field(default_factory=ReconnectTimers)  # every runner's reconnect timer
    _admission: AdmissionLimit | None = None
    _opens: Slots | None = None

    def admission(self) -> AdmissionLimit:
        if self._admission is None:
            self._admission = AdmissionLimit(cap=self.max_inflight, budget_s=self.validity_budget_s)
        return self._admission

    def validation_slot(self) -> Slots:
        return self.admission().slots

    def open_slot(self) -> Slots:
        if self._opens is None:
            self._opens = Slots(self.max_inflight)
        return self._opens
