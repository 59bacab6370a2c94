"""The outbox's dead letters: entries that must not be sent again, moved out of the way of
the rest and kept in `keys.OUTBOX_DEAD_KEY` for a person to read.

Owns: the checks an update must pass before it is sent (`update_problem`: the back
office's own rules for one update — non-empty ids, `seq` an integer >= 0, a finite
`at_s`), finding the entry the back office refuses in a batch it rejected as a whole
(`send_isolating`: the batch is split in halves, in order, until the refused entries stand
alone), and handing those to the queue's move (`move_dead`: for Redis, XADD to the dead stream
+ XDEL from the outbox in one MULTI).
Must not: dead-letter anything for a failure that is not the entry's own (a 5xx, a
timeout, a 401/403 for a wrong token, a 404 for a wrong URL, a 429: those are retried,
the whole batch kept), or send an entry out of append order.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from service.errors import BackOfficeError
from service.logging import get_logger
from service.ports import StatusUpdate

log = get_logger(component="outbox")

Entry = tuple[str, StatusUpdate]  # (stream id, decoded update)
Send = Callable[[list[StatusUpdate]], Awaitable[set[str]]]
Move = Callable[[list[tuple[Any, Any]], str, list[str]], Awaitable[None]]  # (entries, reason, why each)
REASON_CHARS = 500  # the back office's own words, kept with the entry (bounded)


def update_problem(update: StatusUpdate) -> str | None:
    """Why the back office would refuse this update, or None if it passes its rules."""
    if not update.update_id:
        return "update_id is empty"
    if not update.session_id:
        return "session_id is empty"
    if update.seq < 0:
        return f"seq is {update.seq}, must be >= 0"
    if not math.isfinite(update.at_s):
        return f"at_s is {update.at_s}, must be a finite number"
    return None


def update_fields(update: StatusUpdate) -> dict[str, str]:
    return {"update_id": update.update_id, "session_id": update.session_id, "status": str(update.status.value),
            "priority": str(update.priority.value), "seq": str(update.seq), "at_s": repr(update.at_s)}


def dead_fields(fields: dict[Any, Any], entry_id: str, reason: str, why: str) -> dict[Any, Any]:
    """A dead letter: the entry's own fields, where it was, and why (bounded)."""
    return {**fields, "outbox_id": entry_id, "reason": reason, "detail": why[:REASON_CHARS]}


class DeadLetters:
    """Moves entries out of the queue (`move`) and counts them by reason (`malformed`, `refused`)."""

    def __init__(self, move: Move) -> None:
        self._move = move
        self.counts = {"malformed": 0, "refused": 0}

    async def move(self, entries: list[tuple[Any, Any]], reason: str, detail: list[str]) -> None:
        """Move each (entry id, fields) to the dead letters with why, all or nothing."""
        if not entries:
            return
        await self._move(entries, reason, detail)
        self.counts[reason] = self.counts.get(reason, 0) + len(entries)

    async def refuse(self, entries: list[Entry], why: list[str]) -> None:
        for (entry_id, update), text in zip(entries, why):
            log.error("outbox_entry_refused", entry_id=entry_id, update_id=update.update_id,
                      session_id=update.session_id, seq=update.seq, detail=text[:REASON_CHARS])
        await self.move([(entry_id, update_fields(update)) for entry_id, update in entries], "refused", why)

    async def checked(self, entries: list[Entry]) -> list[Entry]:
        """`entries` without those the back office would refuse (moved to the dead stream)."""
        good, bad, why = [], [], []
        for entry in entries:
            problem = update_problem(entry[1])
            if problem is None:
                good.append(entry)
            else:
                bad.append(entry)
                why.append(f"refused before sending: {problem}")
        await self.refuse(bad, why)
        return good

    async def send_isolating(self, send: Send, entries: list[Entry]) -> tuple[set[str], set[str]]:
        """Send `entries` in order; when the back office rejects a batch (400/422), split it
        until each refused entry stands alone, and dead-letter those. Returns (acknowledged
        update ids, dead-lettered stream ids). Other failures raise `BackOfficeError`."""
        try:
            return await send([update for _, update in entries]), set()
        except BackOfficeError as err:
            if not err.rejected:
                raise
            if len(entries) == 1:
                await self.refuse(entries, [f"the back office refused it: {err}"])
                return set(), {entries[0][0]}
        middle = len(entries) // 2
        acked, dead = await self.send_isolating(send, entries[:middle])
        more_acked, more_dead = await self.send_isolating(send, entries[middle:])
        return acked | more_acked, dead | more_dead
