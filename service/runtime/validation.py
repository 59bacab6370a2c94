"""`Validation`: one session's question "may it still (re)connect?" (R4), asked of the store
until the store can answer, and the answer handed back as an event (`Validated`, or
`ValidationFailed` for an error no check foresaw).

Owns: the validation task of the current attempt and its generation, so a stale answer is
never delivered (`cancel()` makes every answer in flight stale), and how an unreachable
store is retried (capped backoff) and counted. Must not: decide anything from the answer
(the core does), or let an error escape the session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from service.core.events import Event, Validated, ValidationFailed
from service.errors import FencedWrite, StoreError
from service.pending import PendingReconnect
from service.retry import Retrying
from service.runtime.context import RunnerContext, SlotHold

Deliver = Callable[[Event, Callable[[], bool]], Awaitable[None]]  # deliver(event, guard)
Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


class Validation:
    """`start(for_reconnect, mark)` asks; `cancel()` makes any answer in flight stale."""

    def __init__(self, session_id: str, ctx: RunnerContext, *, fence: int | None, log: Any,
                 deliver: Deliver, spawn: Spawn, on_fenced: Callable[[str, FencedWrite], None],
                 dropped: Callable[[], bool]) -> None:
        """`deliver(event, guard)` hands the answer to the session; `spawn` starts (and
        tracks) the task; `on_fenced` hears that the attempt's start could not be recorded
        because the lease moved (B9); `dropped` says the session is gone."""
        self._session_id = session_id
        self._ctx = ctx
        self._fence = fence
        self._log = log
        self._deliver = deliver
        self._spawn = spawn
        self._on_fenced = on_fenced
        self._dropped = dropped
        self._generation = 0

    def cancel(self) -> None:
        self._generation += 1

    def start(self, for_reconnect: bool, mark: PendingReconnect | None = None) -> None:
        """Ask once a validation slot is free (waiting as a queued callback, not a task); `mark`
        records, in the same round trip, that this counted attempt has started (B5)."""
        self._generation += 1
        generation = self._generation
        self._ctx.validation_slot().when_free(lambda: self._admitted(for_reconnect, generation, mark))

    def _admitted(self, for_reconnect: bool, generation: int, mark: PendingReconnect | None) -> bool:
        """A slot is ours: ask in a task, unless the question went stale while it waited."""
        if self._generation != generation or self._dropped():
            return False
        hold = SlotHold(self._ctx.validation_slot())
        self._spawn(self._ask(for_reconnect, generation, mark, hold)).add_done_callback(hold.release)
        return True

    async def _ask(self, for_reconnect: bool, generation: int, mark: PendingReconnect | None,
                   hold: SlotHold) -> None:
        """Ask the store until it can answer (the slot `hold` given back after each question); an
        unreachable Redis is not an answer. Any other exception is a failed validation the core
        is told of (`ValidationFailed`), counted and logged: this task never ends with the session
        left validating."""
        ctx, retry, admission = self._ctx, None, self._ctx.admission()

        def current() -> bool:
            return self._generation == generation
        while True:
            ctx.timers.run_due_now()
            try:
                asked_s = admission.clock()
                try:
                    ok = await ctx.validity.is_session_active(
                        self._session_id, for_reconnect=for_reconnect, mark_started=mark, fence=self._fence)
                finally:
                    hold.release()
                admission.answered(admission.clock() - asked_s)  # an answer paces the next admissions
            except FencedWrite as err:  # the attempt's start could not be recorded: not ours any more
                self._on_fenced("mark_started", err)
                return
            except StoreError as err:
                ctx.metrics.command_errors.labels(command="Validate").inc()
                retry = retry or Retrying(ctx.validate_retry)
                self._log.warning("validation_unavailable", error=str(err), retry_in_s=retry.failed())
                await retry.wait()
                if not current() or self._dropped():
                    return
                await ctx.validation_slot().acquire()
                hold = SlotHold(ctx.validation_slot())
                continue
            except Exception as err:  # noqa: BLE001 - a bug or an input no check foresaw
                ctx.metrics.command_errors.labels(command="Validate").inc()
                self._log.error("validation_failed", error=repr(err)[:300], error_type=type(err).__name__,
                                exc_info=True)
                await self._deliver(ValidationFailed(reason=type(err).__name__), current)
                return
            await self._deliver(Validated(ok=ok), current)
            return
