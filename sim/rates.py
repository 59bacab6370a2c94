"""Peak rates over a fixed 1 s sliding window, whatever the chart bins (`--bin-s`) are.

The model counts connects and Redis operations per 1 ms tick beside its per-bin series;
a peak per second is the largest count inside any window [t, t + 1 s) with t on a tick,
so a capacity verdict does not flip with a display setting. Must not run the model.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from sim.tally import TICKS_PER_S

WINDOW_S = 1.0


def peak_per_s(ticks: Mapping[int, int], window_s: float = WINDOW_S) -> float:
    """The largest count in any `window_s` window of `ticks` (tick → count), per second."""
    width = round(window_s * TICKS_PER_S)
    keys = sorted(k for k, v in ticks.items() if v)
    best = total = 0
    start = 0
    for end_key in keys:
        total += ticks[end_key]
        while keys[start] <= end_key - width:
            total -= ticks[keys[start]]
            start += 1
        best = max(best, total)
    return best / window_s


def ticks_of(instants_s: Mapping[float, int]) -> Counter:
    """Instants in seconds (s → count) as ticks."""
    ticks: Counter = Counter()
    for instant_s, count in instants_s.items():
        ticks[int(instant_s * TICKS_PER_S)] += count
    return ticks
