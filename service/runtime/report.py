"""`SessionReport`: what one session's `Emit` commands leave behind — the timeline record
(R8, compared line by line with the simulation), the metrics an event moves (give-ups,
cancellations, closes by code, terminal codes) and the structured log line.

Owns: the level of each event's log line, which event moves which metric, and the table of
what a content renders to (a storm's records repeat a few contents: one lookup a record finds
both its timeline line's parts and its log line's body). Must not: decide anything, or write
to Redis (a report is never on the path to Redis).
"""

from __future__ import annotations

from typing import Any

from service.core import LogEvent
from service.core.timeline import TimelineRecord
from service.logging import EventLog, record_body
from service.metrics import ServiceMetrics
from service.runtime.timeline import TimelineWriter, line_from_parts, line_parts

_WARN_EVENTS = frozenset({LogEvent.MAX_ATTEMPTS_REACHED, LogEvent.SESSION_TERMINAL, LogEvent.RECONNECT_CANCELLED,
                          LogEvent.RECONNECT_FAILED})
_LEVEL = {event: "warning" if event in _WARN_EVENTS else "info" for event in LogEvent}  # by name: text or member
_COUNTED = frozenset({LogEvent.MAX_ATTEMPTS_REACHED, LogEvent.RECONNECT_CANCELLED, LogEvent.SESSION_CLOSED,
                      LogEvent.SESSION_TERMINAL})
_MAX_KEPT = 4096
# content key → its timeline line's parts (`line_parts`) and its log line's body (`record_body`)
_kept: dict[tuple, tuple[tuple[str, str] | None, str | None]] = {}


class SessionReport:
    """`emit(record)`: timeline, metrics and log line of one session's event."""

    def __init__(self, timeline: TimelineWriter, metrics: ServiceMetrics, log: Any) -> None:
        self._timeline = timeline
        self._metrics = metrics
        self._events = EventLog(log)  # R8 step lines, rendered without the processor chain

    def emit(self, record: TimelineRecord) -> None:
        key = record.content_key()  # the timeline's and the log's rendering of this content, once
        event = record.event
        level = _LEVEL.get(event, "info")
        body = None
        if key is None:
            self._timeline.write(record)
        else:
            kept = _kept.get(key)
            if kept is None:
                if len(_kept) >= _MAX_KEPT:
                    _kept.clear()
                kept = _kept[key] = (line_parts(record), record_body(level, record))
            parts, body = kept
            if self._timeline.path is not None:
                line = None if parts is None else line_from_parts(parts, record)
                if line is None:
                    self._timeline.write(record, key)
                else:
                    self._timeline.write_line(line)
        if event in _COUNTED:
            self._count(event, record.detail)
        if body is not None:
            self._events.log_body(level, record, body)
        else:
            self._events.log_record(level, record, key)

    def _count(self, event: str, detail: Any) -> None:
        metrics = self._metrics
        if event == LogEvent.MAX_ATTEMPTS_REACHED:
            metrics.give_ups.inc()
        elif event == LogEvent.RECONNECT_CANCELLED:
            metrics.cancelled.inc()
        elif event == LogEvent.SESSION_CLOSED:
            metrics.count_close(detail.get("code"))
        elif event == LogEvent.SESSION_TERMINAL:
            metrics.terminal.labels(code=str(detail.get("code"))).inc()
