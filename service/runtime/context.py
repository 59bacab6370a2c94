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
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"slots limit must be an int >= 1, got {limit!r}")
        self._free = limit
        self._queue: deque[Callable[[], bool]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

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
        """Give a held slot back: to the first in line that still wants it, else free."""
        while self._queue:
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
    max_inflight: int = 256
    timers: ReconnectTimers = field(default_factory=ReconnectTimers)  # every runner's reconnect timer
    _validations: Slots | None = None
    _opens: Slots | None = None

    def validation_slot(self) -> Slots:
        if self._validations is None:
            self._validations = Slots(self.max_inflight)
        return self._validations

    def open_slot(self) -> Slots:
        if self._opens is None:
            self._opens = Slots(self.max_inflight)
        return self._opens
