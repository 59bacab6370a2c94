"""`BatchedValidity`: the validity questions (R4) asked of the back office in one
event-loop tick go in one request (`POST /api/validity/batch`), so a storm of N
validations costs about one request per tick, not N.

Owns (collecting questions, the one flush per tick and the split into requests of at most
`max_batch` sessions are `service.tick_batch.TickBatch`'s, as for Redis's pipelines): one
question per session a request, and handing each caller its own answer or the error that
ended its request. Must not: cache answers (R4 asks fresh; the store keeps the
only cache), retry (the validation chain decides what an unreachable back office means),
or wait for more questions than one tick brings (no added delay).
Used when `backoffice_validity = "batch"` (the default); a back office without the batch
endpoint is asked one GET per question (`"single"`).
"""

from __future__ import annotations

import asyncio

from service.errors import BackOfficeError
from service.ports import BatchBackOffice, StatusUpdate
from service.tick_batch import TickBatch, is_fatal, settle


class BatchedValidity:
    """A `BackOffice` whose `is_valid` joins this tick's batch; `send_statuses` passes through."""

    def __init__(self, backoffice: BatchBackOffice, *, max_batch: int = 500) -> None:
        self.backoffice = backoffice
        self._batch: TickBatch[tuple[str, asyncio.Future[bool]], tuple[str, list[asyncio.Future[bool]]]] = TickBatch(
            self._ask, max_chunk=max_batch, prepare=_by_session, what="BatchedValidity max_batch")
        self.max_batch = max_batch
        self.requests = 0  # batch requests sent
        self.questions = 0  # questions they carried (a session asked twice in a tick counts once)

    def __repr__(self) -> str:
        return f"BatchedValidity({self.backoffice!r}, max_batch={self.max_batch})"

    async def is_valid(self, session_id: str) -> bool:
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"session_id must be a non-empty str, got {session_id!r}")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._batch.add((session_id, future))
        return await future

    async def send_statuses(self, updates: list[StatusUpdate]) -> set[str]:
        return await self.backoffice.send_statuses(updates)

    async def _ask(self, chunk: list[tuple[str, list[asyncio.Future[bool]]]]) -> None:
        self.requests += 1
        self.questions += len(chunk)
        try:
            answers = await self.backoffice.validities([sid for sid, _ in chunk])
        except BaseException as err:  # noqa: BLE001 - every caller learns why, then it propagates
            for _, futures in chunk:
                settle(futures, err)
            if is_fatal(err):
                raise
            return
        for sid, futures in chunk:
            answer = answers.get(sid)
            settle(futures, answer if isinstance(answer, bool)
                   else BackOfficeError(f"back office validity batch: no answer for session {sid!r}"))

    async def aclose(self) -> None:
        """Cancel the requests in flight (their callers see a cancellation)."""
        await self._batch.aclose(cancel=True)


def _by_session(asked: list[tuple[str, asyncio.Future[bool]]]) -> list[tuple[str, list[asyncio.Future[bool]]]]:
    """One unit per session, in the order first asked; callers cancelled meanwhile drop out."""
    waiting: dict[str, list[asyncio.Future[bool]]] = {}
    for session_id, future in asked:
        if not future.done():
            waiting.setdefault(session_id, []).append(future)
    return list(waiting.items())
