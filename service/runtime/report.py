"""`SessionReport`: what one session's `Emit` commands leave behind — the timeline record
(R8, compared line by line with the simulation), the metrics an event moves (give-ups,
cancellations, closes by code, terminal codes) and the structured log line.

Owns: the level of each event's log line and which event moves which metric. Must not:
decide anything, or write to Redis (a report is never on the path to Redis).
"""

from __future__ import annotations

from typing import Any

from service.core import LogEvent
from service.core.timeline import TimelineRecord
from service.logging import EventLog
from service.metrics import ServiceMetrics
from service.runtime.timeline import TimelineWriter

_WARN_EVENTS = frozenset({LogEvent.MAX_ATTEMPTS_REACHED, LogEvent.SESSION_TERMINAL, LogEvent.RECONNECT_CANCELLED,
                          LogEvent.RECONNECT_FAILED})
_LEVEL = {event: "warning" if event in _WARN_EVENTS else "info" for event in LogEvent}  # by name: text or member
_COUNTED = frozenset({LogEvent.MAX_ATTEMPTS_REACHED, LogEvent.RECONNECT_CANCELLED, LogEvent.SESSION_CLOSED,
                      LogEvent.SESSION_TERMINAL})


class SessionReport:
    """`emit(record)`: timeline, metrics and log line of one session's event."""

    def __init__(self, timeline: TimelineWriter, metrics: ServiceMetrics, log: Any) -> None:
        self._timeline = timeline
        self._metrics = metrics
        self._events = EventLog(log)  # R8 step lines, rendered without the processor chain

    def emit(self, record: TimelineRecord) -> None:
        key = record.content_key()  # the timeline's and the log's rendering of this content, once
        self._timeline.write(record, key)
        event = record.event
        if event in _COUNTED:
            self._count(event, record.detail)
        self._events.log_record(_LEVEL.get(event, "info"), record, key)

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
