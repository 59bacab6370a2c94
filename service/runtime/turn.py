"""`Turn`: one session's mutual exclusion, like `asyncio.Lock` but with a non-blocking
`try_acquire`, so a due timer can hand its event to the machine inside its own callback
(no task, no extra loop iteration) whenever nothing else of that session is running.

Owns: who may hand the next event to a session's machine. Ownership is handed to the
first waiter on release (first come, first served; nobody can barge in between), and it
belongs to no task: a callback may take it and a task it starts may release it.
Must not: know about sessions, events or time.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Turn:
    """`try_acquire()` / `await acquire()` / `release()`; `async with turn:` for the usual case."""

    def __init__(self) -> None:
        self._held = False
        self._waiters: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        """Take the turn now if it is free and nobody waits for it; never blocks."""
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
        """Hand the turn to the first live waiter, or free it."""
        if not self._held:
            raise RuntimeError("Turn.release() while the turn is free")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # still held: ownership passes to that waiter
                return
        self._held = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()
