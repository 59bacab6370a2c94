"""What one block of the model counted: preallocated per-bin arrays and plain counters.

A `Tally` is filled by `sim.model` while it runs and merged across blocks (and worker
processes) by `merge`; it pickles. Must not interpret the numbers: `sim.results` turns
a merged tally into `results.json`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field


TICKS_PER_S = 1000  # resolution of the sliding-window rates, independent of --bin-s


@dataclass
class Tally:
    """Counts of one block; every per-bin list has `n_bins` entries, weights are session counts."""

    n_bins: int
    connects: list[int] = field(default_factory=list)  # connect attempts reaching WhatsApp
    attempts: list[int] = field(default_factory=list)  # counted reconnect attempts (attempt ≥ 1)
    rate_limited: list[int] = field(default_factory=list)  # connects refused by a rate limit
    redis_ops: list[int] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)  # connects that opened (useful work)
    timed_out: list[int] = field(default_factory=list)  # connects past the connect timeout (pushback)
    connect_ticks: Counter = field(default_factory=Counter)  # tick (1 ms) → connects, for 1 s windows
    redis_ticks: Counter = field(default_factory=Counter)  # tick (1 ms) → Redis ops
    normal_updates: Counter = field(default_factory=Counter)  # flush index → status updates
    high_updates: Counter = field(default_factory=Counter)  # instant (s) → status updates
    recovery_s: list[float] = field(default_factory=list)  # one entry per recovered episode …
    recovery_weight: list[int] = field(default_factory=list)  # … standing for this many sessions
    recovered_on_attempt: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    core_events: int = 0  # events handled by service.core, weighted by sessions
    handle_calls: int = 0  # SessionMachine.handle calls actually made
    timer_events: int = 0  # SimPy timeouts processed for session timers
    units: int = 0  # machines simulated (sessions, or cohorts standing for many)

    def __post_init__(self) -> None:
        for name in ("connects", "attempts", "rate_limited", "redis_ops", "opened", "timed_out"):
            if not getattr(self, name):
                setattr(self, name, [0] * self.n_bins)


def merge(tallies: list[Tally]) -> Tally:
    """Sum tallies in the order given (block order), so the result is deterministic."""
    if not tallies:
        raise ValueError("merge needs at least one tally")
    total = Tally(n_bins=tallies[0].n_bins)
    for part in tallies:
        if part.n_bins != total.n_bins:
            raise ValueError(f"cannot merge tallies of {part.n_bins} and {total.n_bins} bins")
        for name in ("connects", "attempts", "rate_limited", "redis_ops", "opened", "timed_out"):
            mine, theirs = getattr(total, name), getattr(part, name)
            for i, value in enumerate(theirs):
                if value:
                    mine[i] += value
        for name in ("normal_updates", "high_updates", "recovered_on_attempt", "outcomes", "connect_ticks",
                     "redis_ticks"):
            getattr(total, name).update(getattr(part, name))
        total.recovery_s.extend(part.recovery_s)
        total.recovery_weight.extend(part.recovery_weight)
        for name in ("core_events", "handle_calls", "timer_events", "units"):
            setattr(total, name, getattr(total, name) + getattr(part, name))
    return total


def bins_for(until_s: float, bin_s: float) -> int:
    return max(1, math.ceil(until_s / bin_s))
