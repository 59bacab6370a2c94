"""Where a chaos run's reports go: one new folder per run, never shared, and a `latest` link.

Owns `new_run_dir(base)` (`<base>/<UTC time>-<random>`, created atomically, so two runs
started in the same second, or at once, never share a folder), `unique_dir(parent, name)`
(a scenario's own folder inside a run, `name`, `name-2`, … when a run repeats a scenario)
and `point_latest(base, run_dir)` (`<base>/latest` → the run folder, replaced atomically).
Must not write reports itself.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

LATEST = "latest"
MAX_SAME_NAME = 1000  # scenario folders of one name within one run


def new_run_dir(base: Path | str, *, now: dt.datetime | None = None) -> Path:
    """Create and return a fresh run folder under `base` (absolute)."""
    base = Path(base).resolve()
    base.mkdir(parents=True, exist_ok=True)
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    while True:
        candidate = base / f"{stamp}-{secrets.token_hex(3)}"
        try:
            candidate.mkdir()
        except FileExistsError:
            continue  # 1 in 16 million per same-second pair; draw again
        return candidate


def unique_dir(parent: Path, name: str) -> Path:
    """Create `parent/name`, or `name-2`, `name-3`, … if taken (atomic: safe for concurrent scenarios)."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, MAX_SAME_NAME + 1):
        candidate = parent / (name if n == 1 else f"{name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{parent}: {MAX_SAME_NAME} folders named {name!r} already: use a new run folder")


def point_latest(base: Path | str, run_dir: Path) -> Path:
    """Make `<base>/latest` a relative symlink to `run_dir` (atomically replaced); returns the link."""
    base = Path(base).resolve()
    link = base / LATEST
    temporary = base / f".{LATEST}-{secrets.token_hex(4)}"
    os.symlink(os.path.relpath(run_dir.resolve(), base), temporary, target_is_directory=True)
    os.replace(temporary, link)
    return link
