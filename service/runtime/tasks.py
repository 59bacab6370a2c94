"""`SessionTasks`: every asyncio task one session starts (its link driver, its validation, its
ordered writer, an event waiting for the session's turn), so none outlives the session and
none ends unseen.

Owns: the set of live tasks, how a task that failed is counted and logged (a bug: each task
handles its own I/O errors), and cancelling them all when the session is released. Must not:
know what the tasks do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from service.metrics import ServiceMetrics


class SessionTasks:
    """`spawn(coro) -> task`; `await cancel_all()` at the end. Made in the loop its tasks run in."""

    def __init__(self, metrics: ServiceMetrics, log: Any) -> None:
        self._metrics = metrics
        self._log = log
        self._live: set[asyncio.Task[Any]] = set()
        self._create_task = asyncio.get_running_loop().create_task  # the session's loop, asked once

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self._create_task(coro)
        self._live.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        """Every task ends here: one that failed is counted and logged, never left as
        "exception never retrieved"."""
        self._live.discard(task)
        if task.cancelled():
            return
        err = task.exception()
        if err is not None:
            self._metrics.command_errors.labels(command="task").inc()
            self._log.error("session_task_failed", error=repr(err)[:300], error_type=type(err).__name__,
                            exc_info=err)

    async def cancel_all(self) -> None:
        """Cancel every live task but the caller's own, and wait for them to end."""
        current = asyncio.current_task()
        tasks = [t for t in self._live if t is not current and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
