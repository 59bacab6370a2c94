"""Modelled upstreams: WhatsApp's connect limits, and Redis / back-office load against capacity.

WhatsApp changes outcomes: a connect over the per-IP token bucket, or from an account
that connected too often in its window, is refused with a rate-limit error (close code
429, which the close-code table decides about) and a refused account is locked out for
longer. Redis and the back office are load meters: the model counts their operations
and requests per bin and runs them through a fluid queue of the given capacity (peak,
seconds over capacity, backlog, drain time); they do not delay sessions. Must not do I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sim.params import ModelParams

if TYPE_CHECKING:
    from sim.model import Unit


class WhatsApp:
    """Connect admission for one block: per-IP token buckets and per-account lock-outs."""

    def __init__(self, params: ModelParams) -> None:
        self.rate_per_s = params.ip_connects_per_s
        self.burst = params.ip_burst
        self.account_limit = params.account_connects
        self.window_s = params.account_window_s
        self.lockout_s = params.account_lockout_s
        self._tokens: dict[int, float] = {}
        self._last_s: dict[int, float] = {}

    def admit(self, unit: Unit, now: float) -> int:
        """How many of the unit's sessions get through at `now` (all members share one history)."""
        if self.account_limit and not self._account_ok(unit, now):
            return 0
        if self.rate_per_s <= 0:
            return unit.count
        ip = unit.ip
        tokens = self._tokens.get(ip, self.burst)
        last_s = self._last_s.get(ip, now)
        tokens = min(self.burst, tokens + (now - last_s) * self.rate_per_s)
        admitted = min(unit.count, int(tokens))
        self._tokens[ip] = tokens - admitted
        self._last_s[ip] = now
        return admitted

    def admitted(self, unit: Unit, now: float) -> None:
        """Record an admitted connect in the account's window (after any split)."""
        if self.account_limit:
            unit.acct_times.append(now)

    def _account_ok(self, unit: Unit, now: float) -> bool:
        if now < unit.acct_locked_until_s:
            unit.acct_locked_until_s = now + self.lockout_s  # hammering a lock-out extends it
            return False
        times, cutoff_s = unit.acct_times, now - self.window_s
        while times and times[0] <= cutoff_s:
            times.pop(0)
        if len(times) >= self.account_limit:
            unit.acct_locked_until_s = now + self.lockout_s
            return False
        return True


def fluid_queue(arrivals: Sequence[int], capacity_per_bin: float) -> dict[str, Any]:
    """Run per-bin arrivals through a server of `capacity_per_bin`; 0 capacity = unlimited."""
    backlog, max_backlog, over_bins, last_busy = 0.0, 0.0, 0, -1
    for index, arriving in enumerate(arrivals):
        if capacity_per_bin > 0 and arriving > capacity_per_bin:
            over_bins += 1
        backlog = max(0.0, backlog + arriving - capacity_per_bin) if capacity_per_bin > 0 else 0.0
        max_backlog = max(max_backlog, backlog)
        if backlog > 0:
            last_busy = index
    left = backlog
    drain_bins = math.ceil(left / capacity_per_bin) if capacity_per_bin > 0 and left > 0 else 0
    return {"bins_over_capacity": over_bins, "max_backlog": round(max_backlog, 6),
            "backlog_at_end": round(left, 6), "last_backlogged_bin": last_busy,
            "bins_to_drain_after_end": drain_bins}


def backoffice_requests(normal: Counter, high: Counter, *, batch: int, flush_s: float,
                        bin_s: float, n_bins: int, capacity_per_s: float = 0.0) -> list[int]:
    """Back-office requests per bin (see `backoffice_request_instants`)."""
    requests = [0] * n_bins
    for instant_s, count in sorted(backoffice_request_instants(
            normal, high, batch=batch, flush_s=flush_s, capacity_per_s=capacity_per_s).items()):
        _add(requests, instant_s / bin_s, count)
    return requests


def backoffice_request_instants(normal: Counter, high: Counter, *, batch: int, flush_s: float,
                                capacity_per_s: float = 0.0) -> Counter:
    """When back-office requests go out (s → requests): normal updates at the next periodic
    flush, high-priority ones at once, each flush in batches of `batch` updates.

    High-priority updates arriving while a request is in flight (1 / capacity seconds)
    share the next one, as an outbox that flushes at once but one request at a time would.
    """
    instants: Counter = Counter()
    for flush_index, updates in sorted(normal.items()):
        instants[flush_index * flush_s] += math.ceil(updates / batch)
    windows: Counter = Counter()
    for instant_s, updates in sorted(high.items()):
        windows[math.floor(instant_s * capacity_per_s) / capacity_per_s if capacity_per_s > 0 else instant_s] += updates
    for start_s, updates in sorted(windows.items()):
        instants[start_s] += math.ceil(updates / batch)
    return instants


def _add(series: list[int], position: float, amount: int) -> None:
    index = min(int(position), len(series) - 1)
    series[index] += amount
