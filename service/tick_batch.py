"""`TickBatch`: what callers ask in one event-loop tick goes out together, once, as soon as the
tick's callbacks are done — the per-tick batching pattern, written once. Used by the Redis
store's pipelines (`service.redis_batch.TickBatcher`: one MULTI/EXEC per tick) and by R4's
back-office questions (`service.validity_batch.BatchedValidity`: one request per tick).

Owns: collecting requests, the one flush per tick (scheduled with `call_soon` on the first
request), splitting a large tick into chunks of at most `max_chunk`, running each chunk's send
in its own task (kept until done, awaited by `aclose`), and handing an outcome to a caller's
future (`settle`). Must not: know what a request means (the user's `prepare` and `send` do),
reorder requests, or wait for more than one tick brings (no added delay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

Q = TypeVar("Q")  # what a caller adds
U = TypeVar("U")  # what a chunk holds (after `prepare`)


class TickBatch(Generic[Q, U]):
    """`add(request)`; once per tick, `prepare(requests)` → units (e.g. without the requests
    whose callers gave up), sent `max_chunk` at a time by `send(chunk)`, each in a task.
    `send` settles every request of its chunk (`settle`); only a cancellation may escape it."""

    def __init__(self, send: Callable[[list[U]], Awaitable[None]], *, max_chunk: int,
                 prepare: Callable[[list[Q]], list[U]], what: str) -> None:
        if not isinstance(max_chunk, int) or isinstance(max_chunk, bool) or max_chunk < 1:
            raise ValueError(f"{what} must be an int >= 1, got {max_chunk!r}")
        self.max_chunk = max_chunk
        self._send = send
        self._prepare = prepare
        self._queue: list[Q] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, request: Q) -> None:
        self._queue.append(request)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        queue, self._queue = self._queue, []
        units = self._prepare(queue)
        for start in range(0, len(units), self.max_chunk):
            self.start(units[start:start + self.max_chunk])

    def start(self, chunk: list[U]) -> None:
        """Send `chunk` in a task of its own (also for a chunk resent piecewise)."""
        task = asyncio.get_running_loop().create_task(self._send(chunk))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self, *, cancel: bool = False) -> None:
        """Wait for the sends in flight (with `cancel`, cancel them first: callers see a cancellation)."""
        tasks = list(self._tasks)
        if cancel:
            for task in tasks:
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def settle(futures: list[asyncio.Future[Any]], outcome: Any) -> None:
    """Hand `outcome` to every future not yet done: a cancellation cancels, another exception
    is raised to the caller, anything else is its result."""
    for future in futures:
        if future.done():
            continue
        if isinstance(outcome, asyncio.CancelledError):
            future.cancel()
        elif isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def is_fatal(err: BaseException) -> bool:
    """An exception a send settles its callers with and then lets propagate."""
    return isinstance(err, (asyncio.CancelledError, KeyboardInterrupt, SystemExit))
