"""When the cyclic garbage collector may pause the event loop.

Owns the process's GC settings while a service runs. In a reconnect storm CPython's default
GC paused the loop for 0.1–1.5 s at a time (collections walking every session's objects),
and each pause lands on whichever reconnect timers are due then. So:
- what is alive after start-up (10^4 runners, machines, links) is frozen (`gc.freeze`): no
  collection walks it again until a sweep;
- the young generation is collected automatically every `young_threshold` allocations
  (small, so pauses stay short), and by a clock every `young_every_s` when none ran since
  its last tick. Why the clock, measured: CPython counts allocations minus deallocations,
  and in a drop the links frozen at start-up die by the hundred thousand, so the count
  stands still while the young generation grows (35,000–76,000 objects at 10^4 sessions,
  10–100 ms a collection, landing on due timers); with the 20 ms clock the storm's young
  pauses stayed under 25 ms;
- what young collections let through piles up in the middle generation, and collecting it
  walks all of it (about 3.5 ms per young collection's survivors at 10^4 sessions, measured).
  `GcPacer` collects it itself once `quiet_after` young collections have piled up and no
  session timer is due for twice what that should take (at least `min_quiet_s`). When no
  such window comes (timers due back to back, as with jitter) and `defer_after` have piled
  up, it does not collect: it freezes the pile (`gc.freeze`, constant time), so no pause
  lands on the due timers and the pile waits for the next sweep;
- a sweep (unfreeze, collect everything, freeze the survivors) reclaims what was deferred
  or promoted since the last one. It walks every object in the process (over a second at
  10^4 sessions), so it runs once `sweep_after` allocations have piled up and no timer is
  due for twice what the last one took; regardless only after `sweep_force_after`, so
  memory stays bounded under endless churn. A young collection the clock ran adds what gc's
  count held then, not a full `young_threshold`: counted as full, an idle process's clock
  (50 a second) made a sweep every ~8 s, and a storm paid one (1–3 s of CPU) mid-way.
- in a storm (a session timer due within `freeze_within_s`, or `busy()`: attempts queued
  behind the process's CPU, which at 10^4 sessions outlast the timers by 10 s) the clock freezes the young
  generation instead of collecting it, and allocations trigger no collection: measured in a
  3,000-session storm, its collections walked the attempts in flight over and over (~12 % of
  its CPU) and found ~1,200 objects of garbage in all, a fraction of one per attempt. Freezing
  is constant time; what it freezes is counted like a deferred pile (a sweep reclaims it, in
  a quiet window or past `sweep_force_after`, which bounds it), so memory stays bounded.
Must not: know about sessions (it is given `next_due_s`), or run anything but `gc` calls.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

NextDue = Callable[[], float | None]  # loop time of the earliest session timer, None if none


class GcPacer:
    """`start()` after start-up, `stop()` at shutdown. Several pacers in one process (tests
    run services side by side) share the settings: the last to stop restores what the
    first found. `collections` counts what it did: `quiet` (middle generation collected),
    `deferred` (pile frozen instead), `sweep` and `forced_sweep`; `clock_young` the young
    collections its clock ran (`young_every_s=None` turns the clock off), `storm_freezes` the
    times it froze the young generation instead (`freeze_within_s=None` turns that off; `busy`
    says a storm is on whatever the timers say)."""

    _running = 0
    _saved: tuple[int, int, int] | None = None

    def __init__(self, next_due_s: NextDue, *, young_threshold: int = 5_000, check_every_s: float = 0.1,
                 min_quiet_s: float = 0.05, quiet_after: int = 20, defer_after: int = 60,
                 sweep_after: int = 2_000_000, sweep_force_after: int = 20_000_000,
                 young_every_s: float | None = 0.02, freeze_within_s: float | None = 2.5,
                 busy: Callable[[], bool] = lambda: False) -> None:
        counts = (young_threshold, quiet_after, defer_after, sweep_after, sweep_force_after)
        if young_every_s is not None and young_every_s <= 0:
            raise ValueError(f"GcPacer: young_every_s must be > 0 or None, got {young_every_s}")
        if freeze_within_s is not None and not freeze_within_s >= 0:
            raise ValueError(f"GcPacer: freeze_within_s must be >= 0 or None, got {freeze_within_s}")
        if min(counts) < 1 or check_every_s <= 0 or min_quiet_s < 0:
            raise ValueError("GcPacer: young_threshold, quiet_after, defer_after, sweep_after and "
                             f"sweep_force_after must be >= 1, check_every_s > 0, min_quiet_s >= 0; got {counts}, "
                             f"{check_every_s}, {min_quiet_s}")
        self.next_due_s = next_due_s
        self.young_threshold = young_threshold
        self.check_every_s = check_every_s
        self.min_quiet_s = min_quiet_s
        self.quiet_after = quiet_after
        self.defer_after = defer_after
        self.sweep_after = sweep_after  # allocations piled up since the last sweep
        self.sweep_force_after = sweep_force_after
        self.last_pause_s = 0.0
        # the last middle collection's time per young one it followed; until one ran, a guess on
        # the safe side (~3.5 ms per 5,000 allocations' survivors at 10^4 sessions, measured)
        self._pause_per_young_s = 0.005 * young_threshold / 5_000
        self._last_sweep_s = 0.0  # until one ran: the start-up collection's time (it walked everything)
        self._piled = 0  # allocations let through young collections since the last sweep
        self.collections = {"quiet": 0, "deferred": 0, "sweep": 0, "forced_sweep": 0}
        self._handle: asyncio.TimerHandle | None = None
        self.young_every_s = young_every_s
        self._young_handle: asyncio.TimerHandle | None = None
        self._young_seen = -1
        self.clock_young = 0  # young collections run by the clock
        # since the last middle collection: the clock's young collections and what gc's count
        # said each found (an idle clock finds a handful, not `young_threshold`)
        self._clock_since_middle = 0
        self._clock_found = 0
        self.freeze_within_s = freeze_within_s
        self.busy = busy  # attempts queued for the process (a storm's tail, its timers all fired)
        self._storm = False  # young objects frozen by the clock, not collected (a timer is due soon)
        self.storm_freezes = 0

    def start(self) -> None:
        if self._handle is not None:
            return
        started = time.perf_counter()
        gc.collect()
        self._last_sweep_s = max(self._last_sweep_s, time.perf_counter() - started)
        gc.freeze()
        if GcPacer._running == 0:
            GcPacer._saved = gc.get_threshold()
        GcPacer._running += 1
        # older generations never trigger on their own: `_check` collects them
        gc.set_threshold(self.young_threshold, 1 << 30, 1 << 30)
        self._schedule()
        if self.young_every_s is not None:
            self._young_handle = asyncio.get_running_loop().call_later(self.young_every_s, self._young_tick)

    def stop(self) -> None:
        if self._handle is None:
            return
        if self._storm:
            self._storm = False
            gc.set_threshold(self.young_threshold, 1 << 30, 1 << 30)
        self._handle.cancel()
        self._handle = None
        if self._young_handle is not None:
            self._young_handle.cancel()
            self._young_handle = None
        GcPacer._running -= 1
        if GcPacer._running == 0 and GcPacer._saved is not None:
            gc.set_threshold(*GcPacer._saved)
            GcPacer._saved = None
            gc.unfreeze()

    def _schedule(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.check_every_s, self._check)

    def _check(self) -> None:
        self._schedule()
        young_collections = gc.get_count()[1]  # since the last middle collection
        piled = self._piled + self._let_through(young_collections)
        if piled >= self.sweep_force_after:
            self._sweep("forced_sweep")
        elif piled >= self.sweep_after and self._quiet_for(max(self.min_quiet_s, 2 * self._last_sweep_s)):
            self._sweep("sweep")
        elif young_collections < self.quiet_after:
            return
        elif self._quiet_for(max(self.min_quiet_s, 2 * self._pause_per_young_s * young_collections)):
            self._collect_middle()
        elif young_collections >= self.defer_after:
            self._defer(young_collections)

    def _young_tick(self) -> None:
        assert self.young_every_s is not None
        self._young_handle = asyncio.get_running_loop().call_later(self.young_every_s, self._young_tick)
        if self.freeze_within_s is not None and (self.busy() or not self._quiet_for(self.freeze_within_s)):
            self._freeze_young()
            return
        if self._storm:
            self._storm = False
            gc.set_threshold(self.young_threshold, 1 << 30, 1 << 30)
        done = gc.get_stats()[0]["collections"]
        if done == self._young_seen:
            self._clock_found += gc.get_count()[0]
            self._clock_since_middle += 1
            gc.collect(0)
            self.clock_young += 1
            done += 1
        self._young_seen = done

    def _freeze_young(self) -> None:
        if not self._storm:
            self._storm = True
            gc.set_threshold(1 << 30, 1 << 30, 1 << 30)  # allocations trigger no collection either
        young, young_collections, _ = gc.get_count()
        self._moved_on(young_collections)
        self._piled += young
        gc.freeze()
        self.storm_freezes += 1

    def _let_through(self, young_collections: int) -> int:
        """Allocations the young collections since the last middle one let through: a full
        `young_threshold` for each the count triggered, what the count held for each the clock
        ran. Called by whoever moves them on (the clock's tallies start again)."""
        triggered = max(0, young_collections - self._clock_since_middle)
        return triggered * self.young_threshold + self._clock_found

    def _moved_on(self, young_collections: int) -> None:
        self._piled += self._let_through(young_collections)
        self._clock_since_middle = self._clock_found = 0

    def _quiet_for(self, window_s: float) -> bool:
        due = self.next_due_s()
        return due is None or due - asyncio.get_running_loop().time() > window_s

    def _collect_middle(self) -> None:
        young_collections = max(1, gc.get_count()[1])
        started = time.perf_counter()
        gc.collect(1)
        self.last_pause_s = time.perf_counter() - started
        self._pause_per_young_s = max(self._pause_per_young_s * 0.5, self.last_pause_s / young_collections)
        self._moved_on(young_collections)
        self.collections["quiet"] += 1

    def _defer(self, young_collections: int) -> None:
        gc.freeze()  # constant time: the pile leaves the collector's reach until the next sweep
        self._moved_on(young_collections)
        self.collections["deferred"] += 1

    def _sweep(self, why: str) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.last_pause_s = self._last_sweep_s = time.perf_counter() - started
        self._piled = self._clock_since_middle = self._clock_found = 0
        self.collections[why] += 1
