"""Structured JSON-lines logs for the service (structlog), with secrets redacted.

Owns the log configuration and the redaction processor: any key that names a token,
credential, password, secret or Authorization value is masked wherever it sits in the
event dict (nested dicts and lists too), `Secret` values always render as ***, and
passwords in URLs or bearer tokens inside free text are masked as well. R8 step names
come from `service.core.machine.LogEvent`; this module must not invent reconnect steps.
Must not write anywhere but the stream it is given.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import json
import logging as std_logging
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

import orjson
import structlog

from service.core.timeline import TimelineRecord
from service.ports import Secret

MASK = "***"
_SECRET_KEY = re.compile(r"token|credential|passw(or)?d|passwd|secret|authori[sz]ation|api[_-]?key|cookie", re.I)
_TEXT_PATTERNS = (
    # The look-behind lets a scheme start only where a run of scheme characters starts: without
    # it a long run of letters is re-scanned from every position (64 KB took 33 s).
    # The password runs to the authority's last `@` (a raw `@` in it is how clients parse it);
    # every scan stops at the next `/`, so no text is scanned twice.
    (re.compile(r"(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^:@/\s]*):([^/\s]+)@", re.I), r"\1:***@"),
    (re.compile(r"(bearer|basic)\s+[A-Za-z0-9._~+/=-]+", re.I), r"\1 ***"),
    (re.compile(r"((?:authorization|token|password|credentials?)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+", re.I), r"\1***"),
)
_MAX_DEPTH = 6
_LEVELS = {"debug": std_logging.DEBUG, "info": std_logging.INFO,
           "warning": std_logging.WARNING, "error": std_logging.ERROR}


_TRIGGER = re.compile(r"@|bearer|basic|authori|token|passw|credential", re.I)


_SHORT_TEXT = 64
_redacted_short: dict[str, str] = {}  # short texts recur (statuses, reasons, event names): judged once


def redact_text(text: str) -> str:
    """Mask URL passwords, bearer tokens and `token=...`-style values inside free text."""
    short = len(text) <= _SHORT_TEXT
    if short:
        known = _redacted_short.get(text)
        if known is not None:
            return known
    result = text
    if _TRIGGER.search(text):  # else the common case: nothing that could carry a secret
        for pattern, replacement in _TEXT_PATTERNS:
            result = pattern.sub(replacement, result)
    if short and len(_redacted_short) < 8192:
        _redacted_short[text] = result
    return result


def redact_value(value: Any, depth: int = 0) -> Any:
    """A copy of `value` with every secret masked (keys by name, `Secret` by type, text by pattern)."""
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if depth >= _MAX_DEPTH:
        return value if isinstance(value, int | float | bool | type(None)) else MASK
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) and v not in (None, "")
                    else redact_value(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, depth + 1) for item in value]
    return value


_KEY_IS_SECRET: dict[str, bool] = {}  # verdicts of `_SECRET_KEY` by key name: log keys are few
_PLAIN = (int, float, bool, type(None))


def _secret_key(key: str) -> bool:
    verdict = _KEY_IS_SECRET.get(key)
    if verdict is None:
        verdict = _SECRET_KEY.search(key) is not None
        if len(_KEY_IS_SECRET) < 4096:
            _KEY_IS_SECRET[key] = verdict
    return verdict


def redact_processor(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: runs last before rendering, so nothing added earlier escapes it.
    The same result as `redact_value(event_dict)`, with the common flat event done inline."""
    out: dict[str, Any] = {}
    for key, value in event_dict.items():
        if isinstance(key, str) and _secret_key(key) and value not in (None, ""):
            out[key] = MASK
        elif type(value) is str:
            out[key] = redact_text(value)
        elif type(value) in _PLAIN:
            out[key] = value
        else:
            out[key] = redact_value(value, 1)
    return out


def _render_default(value: Any) -> str:
    return MASK if isinstance(value, Secret) else redact_text(str(value))


# datetimes and dataclasses go to `default` as they do with json (orjson would write their fields)
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
_SORTED_OPTIONS = _ORJSON_OPTIONS | orjson.OPT_SORT_KEYS


def json_line(obj: Any, default: Callable[[Any], Any], *, sort_keys: bool = False) -> str:
    """`obj` as compact JSON, what `json.dumps(obj, default=default, sort_keys=sort_keys,
    separators=(",", ":"))` writes, rendered by orjson (5-10 times faster). Whatever orjson
    refuses (integers past 64 bits, keys that are not text, lone surrogates, nesting past
    255) or writes otherwise (text beyond ASCII and DEL, which json escapes) is rendered by json;
    orjson writes NaN and infinities as null, and exponents without a `+` or a leading 0."""
    line = ascii_json(obj, default, sort_keys=sort_keys)
    if line is not None:
        return line
    return json.dumps(obj, default=default, sort_keys=sort_keys, separators=(",", ":"))


def ascii_json(obj: Any, default: Callable[[Any], Any], *, sort_keys: bool = False) -> str | None:
    """`json_line(obj, ...)` when orjson renders it as json does (ASCII text but DEL), else None."""
    try:
        raw = orjson.dumps(obj, default=default, option=_SORTED_OPTIONS if sort_keys else _ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is one
        return None
    if raw.isascii() and b"\x7f" not in raw:  # json escapes DEL too
        return raw.decode("ascii")
    return None


def _dumps(obj: Any, **kwargs: Any) -> str:
    return json_line(obj, _render_default)


class TickFlushedStream:
    """The stream every line goes through. An R8 line (`hold`, from `EventLog`) goes out with
    the others of its event-loop tick, in one write and flush once the tick's callbacks are done
    (a storm logs thousands a tick: a write and flush each was ~2 % of its CPU); a line written
    and flushed (structlog's, stdlib's) goes out at once, behind what was held, so the lines
    keep their order. Outside a running loop (start-up, another thread) a held line goes out at
    once; what is held at exit is written then."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._held: list[str] = []
        self._lock = threading.Lock()  # stdlib handlers may write from other threads

    def hold(self, line: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.write(line)
            self.flush()
            return
        with self._lock:
            self._held.append(line)
            first = len(self._held) == 1
        if first:
            loop.call_soon(self.flush)

    def write(self, text: str) -> int:
        with self._lock:
            self._write_held()
            return self.stream.write(text)

    def flush(self) -> None:
        with self._lock:
            self._write_held()
        self.stream.flush()

    def _write_held(self) -> None:
        if self._held:
            held, self._held = self._held, []
            self.stream.write("".join(held))


# (stream, lowest level number written) once `configure_logging` ran; `EventLog` writes there
_configured: tuple[TickFlushedStream, int] | None = None


@atexit.register
def _flush_held() -> None:
    if _configured is not None:
        try:
            _configured[0].flush()
        except (OSError, ValueError):  # the stream is closed already: nothing to do
            pass


def configure_logging(stream: IO[str] | None = None, level: str = "info") -> None:
    """JSON lines to `stream` (default stderr), one event per line, secrets redacted."""
    global _configured
    dumps = _dumps
    _flush_held()  # the lines held for the stream before
    out = TickFlushedStream(stream if stream is not None else sys.stderr)
    _configured = (out, _LEVELS.get(level, std_logging.INFO))
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.processors.JSONRenderer(serializer=dumps)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, redact_processor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, std_logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # stdlib loggers (transports, aiohttp, websockets) go through the same redaction and JSON
    handler = std_logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, redact_processor, renderer],
    ))
    root = std_logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_reconnect_lab", False)]:
        root.removeHandler(old)
    handler._reconnect_lab = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(max(_LEVELS.get(level, std_logging.INFO), std_logging.INFO))


_second_text: tuple[int, str] = (-1, "")  # the last whole second rendered: lines come thousands a second


def utc_timestamp(now_s: float) -> str:
    """`now_s` (epoch seconds, > 0) in the form of structlog's ISO UTC timestamps
    (`datetime.isoformat()` with `Z`: no fraction when the microseconds are 0); its seconds are
    rendered once a second (a line took 1.4 us for its timestamp through `datetime`, now 0.3)."""
    global _second_text
    whole = int(now_s)
    micro = int((now_s - whole) * 1_000_000)  # truncated: `datetime` rounds, at most 1 us later
    second, text = _second_text
    if whole != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second_text = (whole, text)
    return f"{text}.{micro:06d}Z" if micro else f"{text}Z"


class EventLog:
    """The R8 step lines of one bound logger (one session), rendered once per line: the same
    JSON objects structlog writes (bound context, fields, event, level, timestamp; redacted by
    the same processor), without the processor chain. The bound part is redacted and encoded
    once; a line below the configured level costs one comparison. Before `configure_logging`
    ran, or for a field that shadows a bound key, the bound structlog logger writes it."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        try:
            context = dict(structlog.get_context(logger))
        except AttributeError:  # not a bound structlog logger: it writes every line itself
            context, self._own = {}, False
        else:
            self._own = True
        self._bound_keys = frozenset(context)
        self._keyed = self._own and self._bound_keys.isdisjoint(("attempt", "status"))  # log_record's table serves it
        inner = _dumps(redact_processor(None, "", context))[1:-1]
        self._prefix = "{" + inner + "," if inner else "{"

    def log_record(self, level: str, record: TimelineRecord, key: tuple | None) -> None:
        """`record`'s R8 line: `log(level, record.event, attempt=record.attempt, status=record.status,
        **detail)`, the detail without `session_id` and `event`. The line but its bound part and
        timestamp is rendered once per level and content (`key`: `record.content_key()`): a storm
        logs thousands of records of a few contents."""
        detail = record.detail
        configured = _configured
        if key is not None and configured is not None and self._keyed and self._bound_keys.isdisjoint(detail):
            bodies = _bodies.get(level)
            if bodies is None:
                bodies = _bodies[level] = {}
            body = bodies.get(key)
            if body is None and _UNKEYED_FIELDS.isdisjoint(detail):
                body = _render_body(level, record)
                if len(bodies) >= _MAX_BODIES:
                    bodies.clear()
                bodies[key] = body
            if body is not None:
                self.log_body(level, record, body)
                return
        self.log(level, record.event, attempt=record.attempt, status=record.status,
                 **{k: v for k, v in detail.items() if k not in ("session_id", "event")})

    def log_body(self, level: str, record: TimelineRecord, body: str) -> None:
        """`log_record(level, record, ...)` with `body`, `record_body(level, record)` kept for its content."""
        configured = _configured
        if configured is None or not self._keyed or not self._bound_keys.isdisjoint(record.detail):
            self.log_record(level, record, None)
            return
        stream, lowest = configured
        if _LEVELS[level] >= lowest:
            stream.hold(f'{self._prefix}{body},"timestamp":"{utc_timestamp(time.time())}"}}\n')

    def log(self, level: str, event: str, **fields: Any) -> None:
        configured = _configured
        if configured is None or not self._own or not self._bound_keys.isdisjoint(fields):
            getattr(self._logger, level)(event, **fields)
            return
        stream, lowest = configured
        if _LEVELS[level] < lowest:
            return
        fields["event"] = event
        line = redact_processor(None, level, fields)
        line["level"] = level  # made here, like the timestamp: nothing to redact in either
        line["timestamp"] = utc_timestamp(time.time())
        stream.hold(self._prefix + _dumps(line)[1:] + "\n")


_MAX_BODIES = 4096
_bodies: dict[str, dict[tuple, str]] = {}  # level → content key → a record's line between its bound part and timestamp
_UNKEYED_FIELDS = frozenset({"attempt", "status", "session_id", "event", "level", "timestamp"})  # detail keys `log` treats apart


def record_body(level: str, record: TimelineRecord) -> str | None:
    """What `EventLog.log_record` writes for `record` between a session's bound part and its
    timestamp, the same for records of equal `content_key()`; None for a detail that names a key
    a line makes itself (those go the long way)."""
    return _render_body(level, record) if _UNKEYED_FIELDS.isdisjoint(record.detail) else None


def _render_body(level: str, record: TimelineRecord) -> str:
    """What `EventLog.log` writes for `record` between the bound part and `,"timestamp":...}`."""
    fields: dict[str, Any] = {"attempt": record.attempt, "status": record.status, **record.detail}
    fields["event"] = record.event
    line = redact_processor(None, level, fields)
    line["level"] = level
    return _dumps(line)[1:-1]


def get_logger(**bound: Any) -> Any:
    """A structlog logger with `bound` context (e.g. component); lazy, so a module-level
    logger made before `configure_logging` still follows the configuration."""
    return structlog.get_logger("service", **bound)
