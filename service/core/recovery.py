"""Crash recovery (B5): what a process that takes a session over tells its new machine,
decided from what the previous owner left behind — the status and the pending record that
the machine's `RecordPending` / `MarkStarted` / `ClearPending` commands kept.

Owns: the record's meaning (`PendingRecord`) and `first_event`, the one rule that turns
status + record into `Start`, `Resumed` or "settled". Must not read storage or a clock: the
shell reads the record (its storage shape is the shell's) and passes `now`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from service.core.events import Resumed, Start
from service.core.statuses import Status


@dataclass(frozen=True)
class PendingRecord:
    """A session's pending reconnect as persisted: `attempt` due at `due_at_s`; started at
    `started_at_s` (None: not started). `counted` False: an uncounted wait after `attempt`
    counted attempts (`RecordPending.counted`)."""

    attempt: int
    due_at_s: float
    started_at_s: float | None = None
    counted: bool = True


def first_event(status: Status | None, pending: PendingRecord | None, now: float) -> Start | Resumed | None:
    """The first event for a session found with `status` and `pending` at `now`; None when it
    is settled (`inactive`: nothing to run). Anything but `connecting` starts afresh, and so does
    `connecting` without a record (the session was starting, not waiting to reconnect).

    - started: that counted attempt was spent (its socket died with the process, if not
      before), so the next one is due, after a delay the machine draws;
    - not started: the same attempt (or uncounted wait) is due at the recorded time — at
      once if that has passed. A due time that is not a finite number is not a due time:
      the machine draws a delay for a counted attempt, an uncounted wait ends at once.
    """
    if status is Status.INACTIVE:
        return None
    if status is not Status.CONNECTING or pending is None:
        return Start()
    attempt = max(0, pending.attempt)
    if pending.started_at_s is not None:
        return Resumed(attempt=attempt + 1, remaining_s=None)
    remaining_s = pending.due_at_s - now if math.isfinite(pending.due_at_s) else None
    if remaining_s is not None:
        remaining_s = max(0.0, remaining_s)
    if not pending.counted:
        return Resumed(attempt=attempt, remaining_s=remaining_s or 0.0, counted=False)
    return Resumed(attempt=max(1, attempt), remaining_s=remaining_s)
