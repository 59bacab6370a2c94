"""Per-tick batching: what callers ask in one event-loop tick goes out together, once, as soon as
the tick's callbacks are done — the pattern written once (`TickBatch`), and Redis's use of it
(`TickBatcher`: one round trip per tick under the status store, `service.store`: one batch
script call, else one MULTI/EXEC, or a pipeline on a cluster). R4's
back-office questions use `TickBatch` too (`service.validity_batch.BatchedValidity`).

`TickBatch` owns: collecting requests, the one flush per tick (scheduled with `call_soon` on
the first request), splitting a large tick into chunks of at most `max_chunk`, running each
chunk's send in its own task (kept until done, awaited by `aclose`), and handing an outcome
to a caller's future (`settle`).
`TickBatcher` owns: sending a tick whose requests are all script calls (`scripted`) as one call
of `service.redis_scripts.BATCH_LUA` on a single Redis (`ScriptBatch`: one command packed, its
calls one MessagePack array, and one reply read for the whole tick; each call runs in its own
pcall, so it fails alone),
handing each request the results of its own commands, and the fallback
when Redis rejects a whole transaction or batch (each of its requests is then sent alone, so one bad
request cannot fail the others), and the one when Redis does not hold a script a request
named by SHA (`on_noscript` loads them, then those requests are sent again, once: a restart
or `SCRIPT FLUSH` costs a round trip, not a write). It yields the loop's attention: at most
`max_pipelines` pipelines are in flight, and `due_work` (`service.due_work`) is handed on as
each one starts (it then builds, packs and sends in one stretch) and as its reply has been
read, so whatever the caller must not keep waiting (due reconnect timers) runs between
pipelines. Measured in a 10^4-session storm: without the limit, dozens of pipelines queued
for a pooled connection and each resumed in the same loop pass to pack 200 requests (4-5 ms
each), 100-150 ms in all with nothing between them.
Must not: know what a request means (callers build the commands and read their results),
reorder requests (they run in the order they were made: one session's writes stay in
order), retry (callers do), or wait for more than one tick brings (no added delay).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.connection import Encoder
from redis.exceptions import ResponseError

from service.due_work import NO_DUE_WORK, DueWork
from service.redis_connect import is_cluster_client
from service.redis_scripts import BATCH_OPS, BATCH_SHA, is_noscript

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


# -- Redis: one round trip per tick -------------------------------------------------------

Build = Callable[[Any], None]  # queues one request's commands on a pipeline; must not raise


@dataclass(slots=True)
class _Request:
    build: Build
    future: asyncio.Future[list[Any]]
    scripted: bool


class ScriptBatch:
    """A pipeline stand-in that takes only `execute_command("EVALSHA", sha, ...)` of a script in
    `BATCH_OPS` and sends them all as one call of `BATCH_LUA` (`service.redis_scripts`), whose
    calls travel as one MessagePack array: packing it costs ~40 ns an item, against ~200 ns for
    each argument of a command (hiredis), and a fenced write has 22."""

    def __init__(self) -> None:
        self.items: list[Any] = []  # per call: its op, key count and argument count, its keys, its arguments
        self.calls = 0

    def __len__(self) -> int:
        return self.calls

    def execute_command(self, command: str, sha: str, numkeys: int, *keys_and_args: Any) -> None:
        op = BATCH_OPS.get(sha) if command == "EVALSHA" else None
        if op is None:
            raise ValueError(f"a scripted request may queue only EVALSHA of a batched script, got {command} {sha}")
        if not _AS_IS.issuperset(map(type, keys_and_args)):  # a number (a write's TTL), or worse
            keys_and_args = tuple([arg if type(arg) in _AS_IS else batch_arg(arg) for arg in keys_and_args])
        self.items += (op, numkeys, len(keys_and_args) - numkeys)
        self.items += keys_and_args
        self.calls += 1

    async def execute(self, redis: Any) -> list[Any]:
        """One reply per call (an error reply as its `ResponseError`), in order."""
        payload = msgpack.packb(self.items, use_bin_type=False)  # bytes as strings: Lua's cmsgpack has no bin
        replies = await redis.execute_command("EVALSHA", BATCH_SHA, 0, self.calls, payload)
        if not isinstance(replies, list) or len(replies) != self.calls:
            raise ResponseError(f"a batch of {self.calls} script calls answered {replies!r:.80}")
        return replies


_AS_IS = frozenset({str, bytes})  # what MessagePack carries as the bytes a command would
_ENCODER = Encoder("utf-8", "strict", False)  # redis-py's, as the service's clients use it


def batch_arg(value: Any) -> bytes:
    """An argument of a batched call as the bytes redis-py's encoder sends in a command (a
    number as its repr; a bool, None or a container raises its `DataError`)."""
    return bytes(_ENCODER.encode(value))


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

    async def run(self, build: Build, *, scripted: bool = False) -> list[Any]:
        """Queue `build` for this tick's pipeline and wait for its results. A command of this
        request that Redis rejected is raised (`ResponseError`); a failed round trip raises
        the `RedisError`/`OSError` that ended it, for every request it carried. `scripted`:
        `build` queues only EVALSHA of `BATCH_OPS` scripts (see `_send`)."""
        request = _Request(build, asyncio.get_running_loop().create_future(), scripted)
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
            if request.future.done():
                continue
            mine = results[start:end]
            error = None
            for result in mine:  # a loop, not next() over a generator: a tick settles hundreds
                if isinstance(result, Exception):
                    error = result
                    break
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
        """One round trip for `requests` once a slot is free: its results, and each request's span.
        On a single Redis, requests that are all `scripted` go as one `ScriptBatch` call (one
        command to pack and one reply to read, not a MULTI, EXEC and a reply per command); any
        other tick as one MULTI/EXEC. Either runs whole, alone, in order."""
        async with self._slots:
            self._due_work.run_due_now()
            cluster = is_cluster_client(self.redis)
            if not cluster and all(request.scripted for request in requests):
                batch = ScriptBatch()
                spans = self._build(requests, batch)
                results = await batch.execute(self.redis)
                self._due_work.run_due_now()
                return results, spans
            # a cluster runs no MULTI across slots: each request is one script or read, atomic alone,
            # and a node keeps the order of what it is sent (a session's requests all go to one node)
            async with self.redis.pipeline(transaction=not cluster) as pipe:
                spans = self._build(requests, pipe)
                results = await pipe.execute(raise_on_error=False)
                self._due_work.run_due_now()  # before the connection's release, which may suspend
        return results, spans

    def _build(self, requests: list[_Request], pipe: Any) -> list[tuple[int, int]]:
        """Queue every request on `pipe` (counted as one round trip); each request's span."""
        spans: list[tuple[int, int]] = []
        start = len(pipe)
        for request in requests:
            request.build(pipe)
            end = len(pipe)
            spans.append((start, end))
            start = end
        self.pipelines += 1
        self.requests += len(requests)
        self._on_round_trip()
        return spans

    async def aclose(self) -> None:
        """Wait for the pipelines in flight (nothing new is flushed after the loop stops)."""
        await self._batch.aclose()


