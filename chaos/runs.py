"""Where a chaos run's reports go: one new folder per run, never shared, and a `latest` link.

Owns `new_run_dir(base)` (`<base>/<UTC time>-<random>`, created atomically, so two runs
started in the same second, or at once, never share a folder), `unique_dir(parent, name)`
(a scenario's own folder inside a run, `name`, `name-2`, … when a run repeats a scenario)
`point_latest(base, run_dir)` (`<base>/latest` → the run folder, replaced atomically) and
`prune_runs(base, keep)` (only the newest `keep` run folders stay). Must not write reports
itself, or delete anything but run folders.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
from pathlib import Path

LATEST = "latest"
MAX_SAME_NAME = 1000  # scenario folders of one name within one run
DEFAULT_KEEP_RUNS = 20  # run folders kept under a report folder; older ones are deleted
RUN_NAME = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")  # what `new_run_dir` names a folder


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


def prune_runs(base: Path | str, keep: int, *, current: Path | None = None) -> list[Path]:
    """Delete all but the newest `keep` (>= 1) run folders under `base`, oldest first by their
    UTC-time names; never `current`, the folder `latest` points at, or anything not named as
    `new_run_dir` names a run. Returns the deleted folders."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    base = Path(base).resolve()
    spared = {p.resolve() for p in (current, base / LATEST) if p is not None and p.exists()}
    runs = sorted(p for p in base.iterdir()
                  if RUN_NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
    doomed = [p for p in runs[:max(len(runs) - keep, 0)] if p.resolve() not in spared]
    for run_dir in doomed:
        shutil.rmtree(run_dir, ignore_errors=True)  # a run pruned at once by another process is gone too
    return doomed
