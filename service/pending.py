"""The B5 reconnect record a session leaves in Redis (`keys.session_key`): which attempt is
due when, and whether it has started — what a restarted process resumes from.

Owns the record's Redis shape (a hash: `attempt`, `due_at_s`, `started_at_s` once the
attempt has started, `counted` "0" for an uncounted wait). The value is the core's
`PendingRecord`, written as the core's commands say (`RecordPending`, `MarkStarted`).
Must not: talk to Redis itself (the store queues these commands in its pipelines) or decide
what a restart does with the record (`service.core.recovery.first_event` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.core.events import MarkStarted, RecordPending
from service.core.recovery import PendingRecord
from service.errors import MalformedInput
from service.outbox import redis_text

PendingReconnect = PendingRecord  # times in epoch seconds: the `now` the runtime gives the core


def record_of(command: RecordPending | MarkStarted) -> PendingReconnect:
    """The record a bookkeeping command writes (a started record is due at its start)."""
    if isinstance(command, MarkStarted):
        return PendingReconnect(command.attempt, command.at_s, started_at_s=command.at_s)
    return PendingReconnect(command.attempt, command.due_at_s, counted=command.counted)


def pending_mapping(pending: PendingReconnect) -> dict[str, str]:
    if not isinstance(pending.attempt, int) or pending.attempt < 0:
        raise ValueError(f"pending attempt must be an int >= 0, got {pending.attempt!r}")
    mapping = {"attempt": str(pending.attempt), "due_at_s": repr(float(pending.due_at_s))}
    if pending.started_at_s is not None:
        mapping["started_at_s"] = repr(float(pending.started_at_s))
    if not pending.counted:
        mapping["counted"] = "0"
    return mapping


def parse_pending(raw: dict[Any, Any], session_id: str) -> PendingReconnect:
    """A non-empty HGETALL reply → the record; raises `MalformedInput("redis", ...)`."""
    try:
        fields = {redis_text(k, "pending field"): redis_text(v, "pending value") for k, v in raw.items()}
        started = fields.get("started_at_s")
        return PendingReconnect(int(fields["attempt"]), float(fields["due_at_s"]),
                                None if started is None else float(started), fields.get("counted") != "0")
    except (KeyError, ValueError) as err:
        raise MalformedInput("redis", f"pending reconnect of {session_id!r} is unusable: {err!r}") from err
