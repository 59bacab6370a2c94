"""The one timeline record every shell writes, as JSON lines.

A chaos run, the asyncio service and a simulation of the same scenario all emit these,
so their histories can be compared line by line. Must not do I/O beyond the file-like
objects it is handed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from service.core.errors import CoreError
from service.core.statuses import Priority, Status
from service.core.vocabulary import (
    CloseReason, Connection, DropReason, FailReason, GiveUpLimit, LogEvent, ReleaseReason, ScheduleReason,
)

_new = object.__new__
_FIELDS = ("t", "session_id", "event", "attempt", "status", "detail")
# types whose equal values render alike (the text enums render as their text); a zero float is keyed
# by its bits, as 0.0 == -0.0 (a NaN equals only itself: a record with one just misses a shell's table)
_KEYED_TYPES = frozenset({str, int, float, bool, type(None), Status, Priority, LogEvent, Connection, DropReason,
                          ReleaseReason, GiveUpLimit, ScheduleReason, CloseReason, FailReason})


class TimelineFormatError(CoreError, ValueError):
    """A timeline line is not a valid record; the message names the line and the field."""


@dataclass(frozen=True)
class TimelineRecord:
    """One step of one session: `t` seconds (the shell's clock), an event name, the attempt."""

    t: float
    session_id: str
    event: str
    attempt: int = 0
    status: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", dict(self.detail))  # a private copy; plain dict pickles

    @classmethod
    def trusted(cls, t: float, session_id: str, event: str, attempt: int, status: str | None,
                detail: dict[str, Any]) -> TimelineRecord:
        """The record of these values, `detail` a plain dict handed over (not copied): the core's
        constructor, a storm makes thousands a second (a frozen dataclass's `__init__` sets each
        field through `object.__setattr__` and copies `detail`: ~4x the time)."""
        record = _new(cls)
        fields = record.__dict__  # item by item: no keyword dict made and merged
        fields["t"] = t
        fields["session_id"] = session_id
        fields["event"] = event
        fields["attempt"] = attempt
        fields["status"] = status
        fields["detail"] = detail
        return record

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "session_id": self.session_id,
            "event": self.event,
            "attempt": self.attempt,
            "status": self.status,
            "detail": dict(self.detail),
        }

    def content_key(self) -> tuple | None:
        """Everything of the record but `t` and `session_id`, with each value's type, as a hashable
        value: two records with equal keys render alike but for those two fields (a shell renders
        a storm's records, which repeat a few contents, once per content). None when a value's type
        is not one whose equal values render alike (lists, dicts, objects)."""
        detail = self.detail
        types = (type(self.event), type(self.attempt), type(self.status), *map(type, detail.values()))
        if not _KEYED_TYPES.issuperset(types):
            return None
        if float in types:
            values = (self.attempt, self.status, *detail.values())
            if 0.0 in values:  # 0.0 == -0.0 (and 0 == False, 0 == 0.0): keyed by their bits, not their value
                values = tuple(v.hex() if type(v) is float else v for v in values)
            return (self.event, types, *detail, *values)
        return (self.event, self.attempt, self.status, types, *detail.items())

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), default=str)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TimelineRecord:
        missing = [name for name in ("t", "session_id", "event") if name not in raw]
        if missing:
            raise TimelineFormatError(f"timeline record lacks field(s) {missing}: {dict(raw)!r}")
        extra = sorted(set(raw) - set(_FIELDS))
        if extra:
            raise TimelineFormatError(f"timeline record has unknown field(s) {extra}")
        t = raw["t"]
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise TimelineFormatError(f"timeline field t must be a number, got {t!r}")
        attempt = raw.get("attempt", 0)
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise TimelineFormatError(f"timeline field attempt must be an integer, got {attempt!r}")
        detail = raw.get("detail") or {}
        if not isinstance(detail, Mapping):
            raise TimelineFormatError(f"timeline field detail must be an object, got {detail!r}")
        return cls(t=float(t), session_id=str(raw["session_id"]), event=str(raw["event"]),
                   attempt=attempt, status=raw.get("status"), detail=detail)

    @classmethod
    def from_json(cls, line: str) -> TimelineRecord:
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TimelineFormatError(f"timeline line is not JSON ({exc.msg}): {line[:80]!r}") from exc
        if not isinstance(raw, dict):
            raise TimelineFormatError(f"timeline line must be a JSON object, got {line[:80]!r}")
        return cls.from_dict(raw)

    def shifted(self, offset_s: float) -> TimelineRecord:
        """The same record with `t` moved by `offset_s` (to align two runs on one origin)."""
        return TimelineRecord(self.t + offset_s, self.session_id, self.event, self.attempt,
                              self.status, self.detail)


def write_jsonl(stream: IO[str], records: Iterable[TimelineRecord]) -> int:
    """Write records one per line; returns how many were written."""
    count = 0
    for record in records:
        stream.write(record.to_json() + "\n")
        count += 1
    return count


def read_jsonl(stream: Iterable[str]) -> Iterator[TimelineRecord]:
    """Read records, skipping blank lines; a bad line raises naming its line number."""
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            yield TimelineRecord.from_json(line)
        except TimelineFormatError as exc:
            raise TimelineFormatError(f"line {number}: {exc}") from exc
