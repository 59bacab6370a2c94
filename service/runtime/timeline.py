"""The timeline writer: `TimelineRecord`s as JSON lines, one file per process.

Owns the file handle. Lines are buffered only until the end of the current event-loop
tick and then flushed, so a chaos runner tailing the file sees each step within
milliseconds while a storm of 10^4 sessions does not cost one syscall per line.
Must not interpret records; the core makes them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO

from service.core import TimelineRecord
from service.logging import json_line


class TimelineWriter:
    """Append-only JSON-lines writer; `path=None` makes a writer that drops everything."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.written = 0
        self._file: IO[str] | None = None
        self._pending: list[str] = []
        self._flush_scheduled = False
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")

    def write(self, record: TimelineRecord) -> None:
        if self._file is None:
            return
        # `record.to_json()`'s line, rendered by orjson (a line per session event in a storm)
        self._pending.append(json_line(record.to_dict(), str, sort_keys=True) + "\n")
        self.written += 1
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
        self._file.write("".join(lines))
        self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
