"""When the cyclic garbage collector may pause the event loop.

Owns the process's GC settings while a service runs. In a reconnect storm CPython's default
GC paused the loop for 0.1–0.6 s at a time (full collections walking every session's objects),
and each pause lands on whichever reconnect timers are due then. So:
- what is alive after start-up (10^4 runners, machines, links) is frozen (`gc.freeze`): no
  collection walks it again;
- the young generation is collected automatically, but only every `young_threshold`
  allocations (a storm's short-lived tasks, futures and failed connects die young instead
  of being promoted and walked again);
- older generations are collected by `GcPacer` itself once `quiet_after` young collections
  have piled up and no session timer is due for a while (twice what this one should take,
  judged by the last one's time per young collection piled up, at least `min_quiet_s`), or
  regardless once `force_after` have, so memory stays
  bounded under endless churn; the oldest one every `full_every` of these (as CPython does).
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
    first found."""

    _running = 0
    _saved: tuple[int, int, int] | None = None

    def __init__(self, next_due_s: NextDue, *, young_threshold: int = 5_000, check_every_s: float = 0.5,
                 min_quiet_s: float = 0.25, quiet_after: int = 20, force_after: int = 400,
                 full_every: int = 10) -> None:
        if min(young_threshold, quiet_after, force_after, full_every) < 1 or check_every_s <= 0 or min_quiet_s < 0:
            raise ValueError("GcPacer: young_threshold, quiet_after, force_after and full_every must be >= 1, "
                             f"check_every_s > 0, min_quiet_s >= 0; got {young_threshold}, {quiet_after}, "
                             f"{force_after}, {full_every}, {check_every_s}, {min_quiet_s}")
        self.next_due_s = next_due_s
        self.young_threshold = young_threshold
        self.check_every_s = check_every_s
        self.min_quiet_s = min_quiet_s
        self.quiet_after = quiet_after
        self.force_after = force_after
        self.full_every = full_every
        self.last_pause_s = 0.0
        # the last middle collection's time per young one it followed; until one ran, a guess on
        # the safe side (~5 ms per 5,000 allocations' survivors at 10^4 sessions, measured)
        self._pause_per_young_s = 0.005 * young_threshold / 5_000
        self._last_full_s = 0.0  # the last collection of every generation took this long
        self.collections = {"quiet": 0, "forced": 0}
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is not None:
            return
        started = time.perf_counter()
        gc.collect()
        # until a full collection has run after this one, its time stands in for one's (an
        # overestimate: later ones do not walk what is frozen now), so a quiet window fits it
        self._last_full_s = max(self._last_full_s, time.perf_counter() - started)
        gc.freeze()
        if GcPacer._running == 0:
            GcPacer._saved = gc.get_threshold()
        GcPacer._running += 1
        # older generations never trigger on their own: `_check` collects them
        gc.set_threshold(self.young_threshold, 1 << 30, 1 << 30)
        self._schedule()

    def stop(self) -> None:
        if self._handle is None:
            return
        self._handle.cancel()
        self._handle = None
        GcPacer._running -= 1
        if GcPacer._running == 0 and GcPacer._saved is not None:
            gc.set_threshold(*GcPacer._saved)
            GcPacer._saved = None
            gc.unfreeze()

    def _schedule(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.check_every_s, self._check)

    def _check(self) -> None:
        self._schedule()
        _, young_collections, middle_collections = gc.get_count()  # since the last older / oldest one
        generation = 2 if middle_collections >= self.full_every else 1
        if young_collections >= self.force_after:
            self._collect("forced", generation)
        elif young_collections >= self.quiet_after and self._quiet_for(
                max(self.min_quiet_s, 2 * self._expected_s(generation, young_collections))):
            self._collect("quiet", generation)

    def _expected_s(self, generation: int, young_collections: int) -> float:
        middle_s = self._pause_per_young_s * young_collections
        return max(middle_s, self._last_full_s) if generation == 2 else middle_s

    def _quiet_for(self, window_s: float) -> bool:
        due = self.next_due_s()
        return due is None or due - asyncio.get_running_loop().time() > window_s

    def _collect(self, why: str, generation: int) -> None:
        young_collections = max(1, gc.get_count()[1])
        started = time.perf_counter()
        gc.collect(generation)
        self.last_pause_s = time.perf_counter() - started
        if generation == 2:
            self._last_full_s = self.last_pause_s
        else:
            self._pause_per_young_s = max(self._pause_per_young_s * 0.5, self.last_pause_s / young_collections)
        self.collections[why] += 1
