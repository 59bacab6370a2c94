"""Deadlines of many waits on one loop timer: `async with deadline(delay_s):` is
`asyncio.timeout(delay_s)` (the same TimeoutError, the same handling of a task also cancelled
from outside), at about a third of its CPU.

Why: a storm's every attempt bounds four or five waits (the connect, the open's guard, the R4
budget, the close, the aborted socket's end), and each `asyncio.timeout` makes a loop timer and
cancels it again — on uvloop a libuv timer each. Almost none of them ever fires. Here a wait's
deadline is an entry of one heap per event loop, forgotten in O(1) when the wait ends; the one
loop timer is armed for the earliest entry still waited on.

Owns: the heap, its timer and the expiry of what is due (earliest first; a callback's error is
logged, the others still run). Must not: import anything of the project, or fire an entry before
its time (the loop's clock resolution aside, as for any loop timer).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import weakref
from collections.abc import Callable
from types import TracebackType

log = logging.getLogger(__name__)

_COMPACT_MIN = 256  # forgotten entries are dropped from the heap once they outnumber live ones


class Deadlines:
    """One loop's deadlines: `call_at(due_s, expire) -> key`, `forget(key)`. Use `of(loop)`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int]] = []  # (due_s, key); a forgotten key stays until popped
        self._live: dict[int, Callable[[], None]] = {}
        self._keys = itertools.count()
        self._armed: asyncio.TimerHandle | None = None
        self._armed_due_s = float("inf")

    def __len__(self) -> int:
        return len(self._live)

    def call_at(self, due_s: float, expire: Callable[[], None]) -> int:
        """Call `expire()` at loop time `due_s` unless `forget(key)` comes first."""
        key = next(self._keys)
        heapq.heappush(self._heap, (due_s, key))
        self._live[key] = expire
        if due_s < self._armed_due_s:
            self._arm(due_s)
        return key

    def forget(self, key: int) -> None:
        """The wait ended: its deadline will not fire (nothing if it has fired already)."""
        live = self._live
        if live.pop(key, None) is not None and len(self._heap) > 2 * len(live) + _COMPACT_MIN:
            self._heap[:] = [entry for entry in self._heap if entry[1] in live]  # in place: `_fire` may hold it
            heapq.heapify(self._heap)

    def _arm(self, due_s: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        self._armed_due_s = due_s
        self._armed = self._loop.call_at(due_s, self._fire)

    def _fire(self) -> None:
        # asyncio may call a timer up to its clock resolution early: what was armed is due
        now_s = max(self._loop.time(), self._armed_due_s)
        self._armed, self._armed_due_s = None, float("inf")
        heap, live = self._heap, self._live
        while heap and (heap[0][0] <= now_s or heap[0][1] not in live):
            expire = live.pop(heapq.heappop(heap)[1], None)
            if expire is not None:
                try:
                    expire()
                except Exception:  # noqa: BLE001 - one wait's bug must not stop the others' deadlines
                    log.exception("deadline expiry failed")
        if heap:
            self._arm(heap[0][0])

    @staticmethod
    def of(loop: asyncio.AbstractEventLoop) -> Deadlines:
        """The deadlines of `loop` (made on first use, gone with the loop)."""
        global _last
        if _last[0] is loop:
            return _last[1]
        deadlines = _by_loop.get(loop)
        if deadlines is None:
            deadlines = _by_loop[loop] = Deadlines(loop)
        _last = (loop, deadlines)
        return deadlines


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = weakref.WeakKeyDictionary()
_last: tuple[object, Deadlines | None] = (None, None)


class deadline:  # noqa: N801 - used like asyncio.timeout, named like it
    """`async with deadline(delay_s):` cancels the running task after `delay_s` and raises
    `TimeoutError` out of the block — unless the task was also cancelled from outside, whose
    `CancelledError` then propagates (as `asyncio.timeout` does)."""

    __slots__ = ("_delay_s", "_task", "_cancelling", "_deadlines", "_key", "expired")

    def __init__(self, delay_s: float) -> None:
        self._delay_s = delay_s
        self.expired = False

    async def __aenter__(self) -> deadline:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("deadline() must be used inside a task")
        self._task, self._cancelling = task, task.cancelling()
        self._deadlines = deadlines = Deadlines.of(loop)
        self._key = deadlines.call_at(loop.time() + self._delay_s, self._expire)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._deadlines.forget(self._key)
        if self.expired and self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()
