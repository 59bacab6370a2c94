"""The neonize transport's worker processes: which one hosts a new client, how many are
kept warm, when one is replaced.

Owns the set of `WorkerProcess`es (each hosting up to `clients_per_worker` neonize
clients): `take` attaches a client to the least-loaded ready worker with a free slot
(spreading a storm's starts over every worker's gate) or starts one; at most one worker
is started at a time (a burst of neonize imports would compete with live dials for the
CPU), and enough are kept started ahead for `spare_workers` workers' worth of free slots.
A worker that has taken `max_connects` clients takes no more (neonize leaks a file and
memory per connect) and is shut down once its last client is released; a fresh one
takes its place. Must not: talk to a client (the link does) or decide about reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from service.errors import LinkFailed
from service.transports.neonize_worker.supervisor import Route, WorkerProcess

log = logging.getLogger("service.transports.neonize_transport")


class Fleet:
    """Worker processes for many clients each; see the module doc."""

    def __init__(self, *, python: str, worker_args: tuple[str, ...], secrets: tuple[str, ...],
                 clients_per_worker: int, spare_workers: int, max_connects: int, stop_grace_s: float,
                 on_message: Callable[[], None] | None = None) -> None:
        self.clients_per_worker = clients_per_worker
        self.spare_workers = spare_workers
        self.max_connects = max_connects
        self.workers_started = 0
        self._python = python
        self._worker_args = worker_args
        self._secrets = secrets
        self._stop_grace_s = stop_grace_s
        self._on_message = on_message
        self._workers: list[WorkerProcess] = []
        self._spawning: asyncio.Future[WorkerProcess] | None = None
        self._refill: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Future[None]] = set()
        self._closed = False

    @property
    def workers(self) -> list[WorkerProcess]:
        """Every worker process still running (retiring ones too)."""
        return [worker for worker in self._workers if worker.running]

    def free_slots(self) -> int:
        """Slots of running workers that still take clients (ready or starting)."""
        return sum(self.clients_per_worker - w.clients for w in self._open_workers())

    async def take(self, client_id: str) -> tuple[WorkerProcess, Route]:
        """A worker with a free slot, and `client_id`'s route on it (the slot is held until `release`)."""
        while True:
            if self._closed:
                raise LinkFailed("transport_closed")
            candidates = [w for w in self._open_workers() if w.clients < self.clients_per_worker]
            if candidates:
                worker = min(candidates, key=lambda w: (not w.is_ready, w.clients))
                route = worker.attach(client_id)
                if worker.connects >= self.max_connects:
                    worker.retiring = True
                self._keep_warm()
                return worker, route
            if not await self._spawn_one():
                raise LinkFailed("worker_start_failed")

    def release(self, worker: WorkerProcess, client_id: str) -> None:
        """`client_id`'s slot is free again (its client stopped, or the worker is gone)."""
        worker.detach(client_id)
        if worker.retiring and worker.clients == 0 and worker.running:
            stopping = worker.begin_stop(self._stop_grace_s)
            self._retired.add(stopping)
            stopping.add_done_callback(self._retired.discard)
        self._keep_warm()

    async def warm_up(self, timeout_s: float) -> int:
        """Start the warm workers now; how many workers are ready within `timeout_s`."""
        while not self._closed and self.free_slots() < self._warm_slots():
            await self._spawn_one(wait_ready=False)
        workers = self._open_workers()
        try:
            async with asyncio.timeout(timeout_s):
                return sum(await asyncio.gather(*(worker.wait_ready() for worker in workers)))
        except TimeoutError:
            return sum(worker.is_ready for worker in workers)

    async def aclose(self) -> None:
        """Shut every worker down (killed after the grace period); idempotent."""
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        workers, self._workers = self._workers, []
        await asyncio.gather(*(worker.stop(self._stop_grace_s) for worker in workers), *self._retired,
                             return_exceptions=True)
        for worker in workers:
            worker.kill()
            await worker.wait_exited()

    def _open_workers(self) -> list[WorkerProcess]:
        self._workers = [worker for worker in self._workers if worker.running]
        return [worker for worker in self._workers if not worker.retiring]

    def _warm_slots(self) -> int:
        return self.spare_workers * self.clients_per_worker

    def _keep_warm(self) -> None:
        if self._closed or self.free_slots() >= self._warm_slots():
            return
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        while not self._closed and self.free_slots() < self._warm_slots():
            if not await self._spawn_one():
                return  # a worker that cannot start: the next take tries (and fails) again

    async def _spawn_one(self, wait_ready: bool = True) -> bool:
        """Start one worker, or wait for the one being started (one at a time); False if
        it failed to start."""
        if self._spawning is None:
            self._spawning = asyncio.ensure_future(self._spawn())
            self._spawning.add_done_callback(lambda _: setattr(self, "_spawning", None))
        worker = await asyncio.shield(self._spawning)
        return await worker.wait_ready() if wait_ready else True

    async def _spawn(self) -> WorkerProcess:
        self.workers_started += 1
        try:
            worker = await WorkerProcess.spawn(self._python, self._secrets, self._worker_args, self._on_message)
        except OSError as err:
            raise LinkFailed("worker_start_failed") from err
        self._workers.append(worker)
        return worker
