"""`DueTimers`: every session's reconnect timer in one heap, so a timer that has fallen due
is handed to its session by whichever session event runs first, not only when the event
loop reaches the timer's own callback.

Why: asyncio runs a due timer's callback only after every callback queued before it in the
current pass, and in a storm one pass holds thousands (every link that closed, every
validation answered). `SessionRunner.deliver` calls `run_due` first, so a due timer waits at
most for the event being handled, not for the whole pass. The loop's own timer stays as the
fallback when no event runs.
Owns: the heap and the order of firing (earliest due first). Must not: decide anything, or
fire a timer before it is due; stale entries (cancelled or already fired timers) are the
caller's to ignore (the runner checks its timer generation).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections.abc import Callable


log = logging.getLogger(__name__)


class DueTimers:
    """`add(due_s, fire)` with loop times; `run_due(now_s)` fires what is due, earliest first."""

    def __init__(self, on_error: Callable[[Exception], None] | None = None) -> None:
        """`on_error` hears what a fired timer raised in `run_due_now` (default: logged here)."""
        self._on_error = on_error
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # equal due times fire in the order they were added
        self._running = False
        self.fired_early = 0  # timers fired by `run_due` (before the loop reached their callback)

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due_s: float, fire: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (due_s, next(self._order), fire))

    def next_due_s(self) -> float | None:
        """The earliest entry's due time (loop time), None if none. Entries of cancelled
        timers stay until their time passes, so this may be early, never late."""
        return self._heap[0][0] if self._heap else None

    def run_due_now(self) -> None:
        """`run_due` at the running loop's time; what a fired timer raises is logged, never
        raised (it is called from I/O callbacks that must not fail for it)."""
        try:
            self.run_due(asyncio.get_running_loop().time())
        except Exception as err:  # noqa: BLE001 - a timer's bug must not break whoever called
            if self._on_error is None:
                log.exception("due timers failed")
            else:
                self._on_error(err)

    def run_due(self, now_s: float) -> None:
        """Fire every entry due at `now_s`. Not re-entrant: a `fire` that leads back here
        (a timer's event delivered at once) returns at once, the outer call goes on."""
        heap = self._heap
        if self._running or not heap or heap[0][0] > now_s:
            return
        self._running = True
        try:
            while heap and heap[0][0] <= now_s:
                _, _, fire = heapq.heappop(heap)
                self.fired_early += 1
                fire()
        finally:
            self._running = False
