"""The timeline writer: `TimelineRecord`s as JSON lines, one file per process.

Owns the file handle. Lines are buffered only until the end of the current event-loop
tick and then flushed, so a chaos runner tailing the file sees each step within
milliseconds while a storm of 10^4 sessions does not cost one syscall per line.
A storm writes thousands of records that differ only in `t` and `session_id`: the rest of a
line is rendered once per `TimelineRecord.content_key` and kept (a bounded table), so a line
costs the rendering of those two values. Must not interpret records; the core makes them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO

import orjson

from service.core import TimelineRecord
from service.logging import ascii_json, json_line

_MAX_RENDERED = 4096
_MAX_SESSIONS = 65536
_session_text: dict[str, str | None] = {}  # a session id's JSON text (None: not orjson's ASCII)
# content key → the line's text before the session id and between it and `t` (keys sorted:
# attempt, detail, event, session_id, status, t); None when orjson does not render it as json does
_rendered: dict[tuple, tuple[str, str] | None] = {}
_dumps = orjson.dumps


def line_parts(record: TimelineRecord) -> tuple[str, str] | None:
    """`record`'s line but its session id and time, as the texts before and after the id (None:
    not orjson's ASCII); equal for records of equal `content_key()`."""
    attempt, detail = ascii_json(record.attempt, str), ascii_json(record.detail, str, sort_keys=True)
    event, status = ascii_json(record.event, str), ascii_json(record.status, str)
    if attempt is None or detail is None or event is None or status is None:
        return None
    return (f'{{"attempt":{attempt},"detail":{detail},"event":{event},"session_id":',
            f',"status":{status},"t":')


def session_json(session_id: object) -> str | None:
    """A session id's JSON text (None: not orjson's ASCII), kept for ids that are text."""
    if type(session_id) is not str:  # 1 and True would be one key of two texts
        return ascii_json(session_id, str)
    text = _session_text.get(session_id, "")
    if text == "":
        text = ascii_json(session_id, str)
        if len(_session_text) >= _MAX_SESSIONS:
            _session_text.clear()
        _session_text[session_id] = text
    return text


def render_line(record: TimelineRecord, key: tuple | None = None) -> str:
    """`record`'s line: `json_line(record.to_dict(), str, sort_keys=True)`, from its rendered
    parts when its content was rendered before (`key`: its `content_key()`, if known)."""
    if key is None:
        key = record.content_key()
    if key is not None:
        parts = _rendered.get(key, ())
        if parts == ():
            parts = line_parts(record)
            if len(_rendered) >= _MAX_RENDERED:
                _rendered.clear()
            _rendered[key] = parts
        if parts is not None:
            line = line_from_parts(parts, record)
            if line is not None:
                return line
    return json_line(record.to_dict(), str, sort_keys=True)


def line_from_parts(parts: tuple[str, str], record: TimelineRecord) -> str | None:
    """`record`'s line from its content's `line_parts` (None: its session id or time is not orjson's ASCII)."""
    session_id = session_json(record.session_id)
    t = record.t
    t = _dumps(t).decode() if type(t) is float else ascii_json(t, str)  # a float's is ASCII
    if session_id is None or t is None:
        return None
    return f"{parts[0]}{session_id}{parts[1]}{t}}}"


class TimelineWriter:
    """Append-only JSON-lines writer; `path=None` makes a writer that drops everything."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[str] | None = None
        self._pending: list[str] = []
        self._flush_scheduled = False
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def write(self, record: TimelineRecord, key: tuple | None = None) -> None:
        """Queue `record`'s line (`key`: its `content_key()`, when the caller has it)."""
        if self._file is not None:
            self.write_line(render_line(record, key))

    def write_line(self, line: str) -> None:
        """Queue a rendered line (`render_line`'s text; its newline comes with the tick's write)."""
        if self._file is None:
            return
        self._pending.append(line)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (tests, shutdown): write through
                self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        if self._file is None or not self._pending:
            return
        lines, self._pending = self._pending, []
        lines.append("")  # the last line's newline
        self._file.write("\n".join(lines))
        self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
