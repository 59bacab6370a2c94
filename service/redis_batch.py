"""Per-tick Redis pipelines: what many sessions ask of Redis in one event-loop tick goes in
one MULTI/EXEC, so a storm of N sessions costs about one round trip per tick, not N.

Owns (collecting requests, the one flush per tick and the split into pipelines of at most
`max_requests` requests are `service.tick_batch.TickBatch`'s): handing each request the
results of its own commands, and the fallback when Redis rejects a whole transaction (each of its
requests is then sent alone, so one bad request cannot fail the others), and the one when
Redis does not hold a script a request named by SHA (`on_noscript` loads them, then those
requests are sent again, once: a restart or `SCRIPT FLUSH` costs a round trip, not a write).
Yields the loop's attention: at most `max_pipelines` pipelines are in flight, and `due_work`
(`service.due_work`) is handed on as each one starts (it then builds, packs and sends in one stretch) and as its
reply has been read, so whatever the caller must not keep waiting (due reconnect timers) runs
between pipelines. Measured in a 10^4-session storm: without the limit, dozens of pipelines
queued for a pooled connection and each resumed in the same loop pass to pack 200 requests
(4-5 ms each), 100-150 ms in all with nothing between them.
Must not: know what the commands mean (the caller builds them and reads their results),
reorder requests (they run in the order they were made: one session's writes stay in
order), retry (callers do), or wait for more requests than one tick brings (no added delay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from service.due_work import NO_DUE_WORK, DueWork
from service.redis_scripts import is_noscript
from service.tick_batch import TickBatch, is_fatal, settle

Build = Callable[[Any], None]  # queues one request's commands on a pipeline; must not raise


@dataclass
class _Request:
    build: Build
    future: asyncio.Future[list[Any]]


class TickBatcher:
    """`await run(build)` → the results of the commands `build` queued, sent with every other
    request of the same tick in one transaction. `on_round_trip` is called once per pipeline;
    `due_work.run_due_now()` as each pipeline starts and as its reply has been read;
    `on_noscript` when a reply says Redis does not hold a script (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, *, on_round_trip: Callable[[], None],
                 max_requests: int = 500, max_pipelines: int = 4,
                 due_work: DueWork = NO_DUE_WORK,
                 on_noscript: Callable[[], Awaitable[None]] | None = None) -> None:
        if not isinstance(max_pipelines, int) or isinstance(max_pipelines, bool) or max_pipelines < 1:
            raise ValueError(f"TickBatcher max_pipelines must be an int >= 1, got {max_pipelines!r}")
        self.redis = redis
        self._batch: TickBatch[_Request, _Request] = TickBatch(
            self._execute, max_chunk=max_requests, what="TickBatcher max_requests",
            prepare=lambda queue: [r for r in queue if not r.future.done()])  # callers cancelled meanwhile drop out
        self.max_requests = max_requests
        self._slots = asyncio.Semaphore(max_pipelines)
        self._on_round_trip = on_round_trip
        self._due_work = due_work
        self._on_noscript = on_noscript
        self.pipelines = 0  # pipelines sent (each one round trip)
        self.requests = 0  # requests carried by them
        self.split_batches = 0  # whole transactions Redis rejected, resent request by request
        self.script_reloads = 0  # times Redis did not hold a script and `on_noscript` loaded them

    async def run(self, build: Build) -> list[Any]:
        """Queue `build` for this tick's pipeline and wait for its results. A command of this
        request that Redis rejected is raised (`ResponseError`); a failed round trip raises
        the `RedisError`/`OSError` that ended it, for every request it carried."""
        request = _Request(build, asyncio.get_running_loop().create_future())
        self._batch.add(request)
        return await request.future

    async def _execute(self, requests: list[_Request], reload: bool = True) -> None:
        try:
            results, spans = await self._send(requests)
        except ResponseError as err:  # the transaction as a whole was refused (EXECABORT)
            if reload and self._on_noscript is not None and is_noscript(err):
                await self._reload_and_resend(requests)
            elif len(requests) > 1:
                self.split_batches += 1
                await asyncio.gather(*(self._execute([r], reload) for r in requests))
            else:
                settle([requests[0].future], err)
            return
        except BaseException as err:  # noqa: BLE001 - every waiter learns why, then it propagates
            settle([r.future for r in requests], err)
            if is_fatal(err):
                raise
            return
        unscripted: list[_Request] = []
        for request, (start, end) in zip(requests, spans):
            mine = results[start:end]
            error = next((r for r in mine if isinstance(r, Exception)), None)
            if request.future.done():
                continue
            if error is not None and reload and self._on_noscript is not None and is_noscript(error):
                unscripted.append(request)  # sent again whole: scripted writes repeat harmlessly
            elif error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(mine)
        if unscripted:
            await self._reload_and_resend(unscripted)

    async def _reload_and_resend(self, requests: list[_Request]) -> None:
        assert self._on_noscript is not None
        self.script_reloads += 1
        self._on_round_trip()
        try:
            await self._on_noscript()
        except BaseException as err:  # noqa: BLE001 - every waiter learns why, then it propagates
            settle([r.future for r in requests], err)
            if is_fatal(err):
                raise
            return
        await self._execute(requests, reload=False)

    async def _send(self, requests: list[_Request]) -> tuple[list[Any], list[tuple[int, int]]]:
        """One pipeline for `requests` once a slot is free: its results, and each request's span."""
        spans: list[tuple[int, int]] = []
        async with self._slots:
            self._due_work.run_due_now()
            async with self.redis.pipeline(transaction=True) as pipe:
                for request in requests:
                    start = len(pipe)
                    request.build(pipe)
                    spans.append((start, len(pipe)))
                self.pipelines += 1
                self.requests += len(requests)
                self._on_round_trip()
                results = await pipe.execute(raise_on_error=False)
                self._due_work.run_due_now()  # before the connection's release, which may suspend
        return results, spans

    async def aclose(self) -> None:
        """Wait for the pipelines in flight (nothing new is flushed after the loop stops)."""
        await self._batch.aclose()


