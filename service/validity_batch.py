"""`BatchedValidity`: the validity questions (R4) asked of the back office in one
event-loop tick go in one request (`POST /api/validity/batch`), so a storm of N
validations costs about one request per tick, not N.

Owns: collecting questions, one flush per tick (scheduled with `call_soon` on the first
question, as `service.redis_batch.TickBatcher` does for Redis), splitting a large tick into
requests of at most `max_batch` sessions, and handing each caller its own answer or the
error that ended its request. Must not: cache answers (R4 asks fresh; the store keeps the
only cache), retry (the validation chain decides what an unreachable back office means),
or wait for more questions than one tick brings (no added delay).
Used when `backoffice_validity = "batch"` (the default); a back office without the batch
endpoint is asked one GET per question (`"single"`).
"""

from __future__ import annotations

import asyncio

from service.errors import BackOfficeError
from service.ports import BatchBackOffice, StatusUpdate


class BatchedValidity:
    """A `BackOffice` whose `is_valid` joins this tick's batch; `send_statuses` passes through."""

    def __init__(self, backoffice: BatchBackOffice, *, max_batch: int = 500) -> None:
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 1:
            raise ValueError(f"BatchedValidity max_batch must be an int >= 1, got {max_batch!r}")
        self.backoffice = backoffice
        self.max_batch = max_batch
        self._waiting: dict[str, list[asyncio.Future[bool]]] = {}  # this tick's questions, in order
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.requests = 0  # batch requests sent
        self.questions = 0  # questions they carried (a session asked twice in a tick counts once)

    def __repr__(self) -> str:
        return f"BatchedValidity({self.backoffice!r}, max_batch={self.max_batch})"

    async def is_valid(self, session_id: str) -> bool:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.setdefault(session_id, []).append(future)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await future

    async def send_statuses(self, updates: list[StatusUpdate]) -> set[str]:
        return await self.backoffice.send_statuses(updates)

    def _flush(self) -> None:
        self._flush_scheduled = False
        waiting, self._waiting = self._waiting, {}
        asked = {sid: [f for f in futures if not f.done()] for sid, futures in waiting.items()}
        ids = [sid for sid, futures in asked.items() if futures]  # callers cancelled meanwhile drop out
        for start in range(0, len(ids), self.max_batch):
            chunk = {sid: asked[sid] for sid in ids[start:start + self.max_batch]}
            task = asyncio.get_running_loop().create_task(self._ask(chunk))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _ask(self, chunk: dict[str, list[asyncio.Future[bool]]]) -> None:
        self.requests += 1
        self.questions += len(chunk)
        try:
            answers = await self.backoffice.validities(list(chunk))
        except BaseException as err:  # noqa: BLE001 - every caller learns why, then it propagates
            for futures in chunk.values():
                _settle(futures, err)
            if isinstance(err, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            return
        for sid, futures in chunk.items():
            answer = answers.get(sid)
            _settle(futures, answer if isinstance(answer, bool)
                    else BackOfficeError(f"back office validity batch: no answer for session {sid!r}"))

    async def aclose(self) -> None:
        """Cancel the requests in flight (their callers see a cancellation)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _settle(futures: list[asyncio.Future[bool]], outcome: bool | BaseException) -> None:
    for future in futures:
        if future.done():
            continue
        if isinstance(outcome, asyncio.CancelledError):
            future.cancel()
        elif isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
