"""One session's Redis writes — its status (with the outbox record, B6) and its pending
reconnect record (B5) — kept in order and retried, so a slow or absent Redis never delays
the session's next command (the backoff timer above all) and no update is lost or reordered.

Owns: the queue and its one writer task. A write that fails is retried by the writer itself
(`service.retry`: capped exponential, `retry.cap_s` at most) until Redis takes it, so a
session's status catches up within about that cap once Redis is back; if the writer task is
cancelled (the session released), what is left stays queued for `repair()` (the gateway's
lease loop runs it). Must not: decide what to write (the runner turns the core's commands into
writes), or drop a write.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from service.due_work import NO_DUE_WORK, DueWork
from service.errors import FencedWrite, StoreError
from service.metrics import ServiceMetrics
from service.retry import RetryPolicy, Retrying

Write = Callable[[], Any]  # returns an awaitable; the same write each time (repeats are harmless)


class OrderedWrites:
    """`queue(what, write)`; `has_unwritten`, `needs_repair`, `repair()`, `flush(timeout_s)`."""

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]], log: Any,
                 metrics: ServiceMetrics, *, retries: int, retry: RetryPolicy,
                 due_work: DueWork = NO_DUE_WORK,
                 on_fenced: Callable[[str, FencedWrite], None] = lambda what, err: None) -> None:
        """`due_work` (due reconnect timers) is handed on before every write and as the writer
        resumes after one: a storm resumes thousands of writers in one pass.
        `on_fenced` is told of a write Redis refused because the session's lease moved (B9):
        every write still queued is dropped with it — none of them is this process's to make.
        A write that failed `retries` times in a row is logged as deferred (once) and counted."""
        self._on_fenced = on_fenced
        self._spawn = spawn
        self._due_work = due_work
        self._log = log
        self._metrics = metrics
        self._retries = retries
        self._retry = retry
        self._writes: deque[tuple[str, Write]] = deque()  # the head is being written (or failed)
        self._writer: asyncio.Task[bool] | None = None

    def queue(self, what: str, write: Write) -> None:
        self._writes.append((what, write))
        if self._writer is None or self._writer.done():
            self._writer = self._spawn(self._drain())

    @property
    def has_unwritten(self) -> bool:
        return bool(self._writes)

    @property
    def needs_repair(self) -> bool:
        return bool(self._writes) and (self._writer is None or self._writer.done())

    async def repair(self) -> bool:
        """Run the writer again over what failed; True once every queued write is done."""
        if not self.needs_repair:
            return not self._writes
        self._writer = self._spawn(self._drain())
        return await self._writer

    async def flush(self, timeout_s: float) -> bool:
        """Wait (bounded) for the writer; True if nothing is left."""
        if self._writer is not None and not self._writer.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), timeout_s)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        return not self._writes

    async def _drain(self) -> bool:
        """Write queued writes in order, each retried until it goes through; a write that
        failed `retries` times in a row (or failed with anything but `StoreError`) is logged
        once as deferred. True once the queue is empty."""
        retry, deferred = Retrying(self._retry), False
        while self._writes:
            what, write = self._writes[0]
            self._due_work.run_due_now()
            try:
                await write()
            except FencedWrite as err:
                self._writes.clear()
                self._on_fenced(what, err)
                return True
            except Exception as err:  # noqa: BLE001 - Redis down, or a bug: the write waits either way
                self._due_work.run_due_now()
                wait_s = retry.failed()
                if isinstance(err, StoreError) and retry.failures < self._retries:
                    self._log.warning("store_retry", operation=what, try_number=retry.failures, error=str(err),
                                      retry_in_s=wait_s)
                elif not deferred:
                    deferred = True
                    self._metrics.command_errors.labels(command="SetStatus").inc()
                    self._log.error("status_write_deferred", operation=what, queued=len(self._writes),
                                    error=str(err)[:300], error_type=type(err).__name__)
                await retry.wait()
                continue
            self._due_work.run_due_now()  # resumed: thousands of writers can resume in one loop pass
            if deferred:
                self._log.info("status_write_repaired", operation=what)
                deferred = False
            retry.succeeded()
            self._writes.popleft()
        return True
