"""How long the event loop could not run anything: what makes reconnect timers late.

Owns two probes, both reporting to callbacks (the service feeds its metrics):
- `LoopLagProbe`: a plain loop timer every `interval_s`; how late it runs is the loop's lag
  (the time a callback waits behind others, or behind a pause of the whole process).
- `GcPauses`: every cyclic-GC collection's duration and generation (`gc.callbacks`), the
  one pause of the loop that no callback accounts for.
Must not: change GC settings (`gc_pacing` owns those) or do work beyond measuring.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any


class LoopLagProbe:
    """`start()` in the loop; `observe(lag_s)` is called every `interval_s`."""

    def __init__(self, observe: Callable[[float], None], *, interval_s: float = 0.05) -> None:
        if not interval_s > 0:
            raise ValueError(f"LoopLagProbe interval_s must be > 0 seconds, got {interval_s!r}")
        self.observe = observe
        self.interval_s = interval_s
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        if self._handle is None:
            self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self.interval_s
        self._handle = loop.call_at(self._due, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.observe(max(0.0, loop.time() - self._due))
        self._schedule(loop)


class GcPauses:
    """`start()` / `stop()`; `observe(generation, pause_s)` after every collection."""

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self.observe = observe
        self._started_at: float | None = None
        self._on = False

    def start(self) -> None:
        if not self._on:
            gc.callbacks.append(self._callback)
            self._on = True

    def stop(self) -> None:
        if self._on:
            gc.callbacks.remove(self._callback)
            self._on = False

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
        elif self._started_at is not None:
            pause_s, self._started_at = time.perf_counter() - self._started_at, None
            self.observe(int(info.get("generation", -1)), pause_s)
