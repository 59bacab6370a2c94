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


class SessionReport:
    """`emit(record)`: timeline, metrics and log line of one session's event."""

    def __init__(self, timeline: TimelineWriter, metrics: ServiceMetrics, log: Any) -> None:
        self._timeline = timeline
        self._metrics = metrics
        self._events = EventLog(log)  # R8 step lines, rendered without the processor chain

    def emit(self, record: TimelineRecord) -> None:
        self._timeline.write(record)
        metrics, detail = self._metrics, record.detail
        if record.event == LogEvent.MAX_ATTEMPTS_REACHED:
            metrics.give_ups.inc()
        elif record.event == LogEvent.RECONNECT_CANCELLED:
            metrics.cancelled.inc()
        elif record.event == LogEvent.SESSION_CLOSED:
            metrics.count_close(detail.get("code"))
        elif record.event == LogEvent.SESSION_TERMINAL:
            metrics.terminal.labels(code=str(detail.get("code"))).inc()
        level = "warning" if record.event in _WARN_EVENTS else "info"
        self._events.log(level, record.event, attempt=record.attempt, status=record.status,
                         **{k: v for k, v in detail.items() if k not in ("session_id", "event")})
