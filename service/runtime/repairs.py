"""`StatusRepairs`: status writes that failed (Redis down or saturated) written again by the
gateway's adoption sweep, so Redis and the back office converge (B6) — for running sessions
and for sessions dropped here before their last writes went through.

Owns: the dropped sessions whose writes are still queued, and which sessions a sweep
repairs. Must not: decide what to write (each session's `OrderedWrites` holds its writes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from service.runtime.runner import SessionRunner


class StatusRepairs:
    """`dropped(runner)` when a session is dropped; `await sweep(running, settled, bounded)`."""

    def __init__(self, log: Any) -> None:
        self._log = log
        self._dropped_unwritten: dict[str, SessionRunner] = {}  # dropped, last status not yet in Redis

    def dropped(self, runner: SessionRunner) -> None:
        if runner.has_unwritten:  # its last writes may still be queued: the sweep sees them through
            self._dropped_unwritten[runner.session_id] = runner

    async def sweep(self, running: Iterable[SessionRunner], settled: Iterable[str],
                    bounded: Callable[[list[SessionRunner], Callable[[SessionRunner], Awaitable[None]]],
                                      Awaitable[None]]) -> None:
        """Repair every running session whose writes failed, and every settled one dropped with
        writes still failing; `bounded(items, work)` runs the repairs with bounded concurrency."""
        dirty = [r for r in running if r.writes.needs_repair]
        settled_ids = set(settled)
        for sid, runner in list(self._dropped_unwritten.items()):
            if not runner.has_unwritten:  # its last writes went through by themselves: nothing to repair
                del self._dropped_unwritten[sid]
            elif sid in settled_ids and runner.writes.needs_repair:
                dirty.append(runner)
        if not dirty:
            return
        self._log.warning("status_repairs", count=len(dirty))
        await bounded(dirty, self._repair_one)

    async def _repair_one(self, runner: SessionRunner) -> None:
        needed = runner.writes.needs_repair
        if await runner.writes.repair():
            if needed:
                self._log.info("status_write_repaired", session_id=runner.session_id,
                               status=runner.status.value if runner.status else None)
            self._dropped_unwritten.pop(runner.session_id, None)
