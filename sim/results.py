"""Turn a merged tally into the run's results: the dict written as results.json.

Everything here is a pure function of the run's parameters and tally, so the same seed
gives byte-identical JSON: no timestamps, no wall times, sorted keys. Wall-clock figures
belong in `timing.json` (see `sim.report`). Must not run the model.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from sim.engine import RunOutput
from sim.rates import WINDOW_S, peak_per_s, ticks_of
from sim.upstreams import backoffice_request_instants, backoffice_requests, fluid_queue

SCHEMA = "reconnect-lab/sim-results/1"


def build(output: RunOutput) -> dict[str, Any]:
    params, tally = output.params, output.tally
    bin_s = params.bin_s
    requests = backoffice_requests(tally.normal_updates, tally.high_updates,
                                   batch=params.backoffice_batch, flush_s=params.backoffice_flush_s,
                                   bin_s=bin_s, n_bins=tally.n_bins,
                                   capacity_per_s=params.backoffice_requests_per_s)
    peaks = _peaks(output, requests)
    upstreams = {
        "redis": {"capacity_per_s": params.redis_ops_per_s,
                  "over_capacity": 0 < params.redis_ops_per_s < peaks["redis_ops_per_s"],
                  **fluid_queue(tally.redis_ops, params.redis_ops_per_s * bin_s)},
        "backoffice": {"capacity_per_s": params.backoffice_requests_per_s,
                       "over_capacity": 0 < params.backoffice_requests_per_s < peaks["backoffice_requests_per_s"],
                       **fluid_queue(requests, params.backoffice_requests_per_s * bin_s)},
    }
    outcomes = {k: int(tally.outcomes.get(k, 0))
                for k in ("recovered", "inactive", "cancelled", "reconnecting", "undisturbed")}
    return {
        "schema": SCHEMA,
        "params": params.to_dict(),
        "scenario": {"name": output.scenario.name, "description": output.scenario.description},
        "engine": output.engine,
        "sessions": params.sessions,
        "outcomes": outcomes,
        "attempts": sum(tally.attempts),
        "connects": sum(tally.connects),
        "rate_limited": sum(tally.rate_limited),
        "recovered_on_attempt": {str(k): v for k, v in sorted(tally.recovered_on_attempt.items())},
        "peaks": peaks,
        "recovery_s": recovery_stats(tally.recovery_s, tally.recovery_weight),
        "upstreams": upstreams,
        "over_capacity": sorted(name for name, up in upstreams.items() if up["over_capacity"]),
        "connect_timeouts": sum(tally.timed_out),
        "series": {"bin_s": bin_s, "whatsapp_connects": tally.connects, "attempts": tally.attempts,
                   "opened": tally.opened, "connect_timeouts": tally.timed_out,
                   "rate_limited": tally.rate_limited, "redis_ops": tally.redis_ops,
                   "backoffice_requests": requests},
        "recovery_cdf": recovery_cdf(tally.recovery_s, tally.recovery_weight),
        "work": {"core_events": tally.core_events, "handle_calls": tally.handle_calls,
                 "timer_events": tally.timer_events, "units": tally.units, "blocks": output.blocks},
    }


def _peaks(output: RunOutput, requests: list[int]) -> dict[str, float]:
    """The busiest 1 s sliding window of each upstream, independent of bin_s."""
    params, tally = output.params, output.tally
    return {"window_s": WINDOW_S,
            "whatsapp_attempts_per_s": peak_per_s(tally.connect_ticks),
            "redis_ops_per_s": peak_per_s(tally.redis_ticks),
            "backoffice_requests_per_s": peak_per_s(ticks_of(backoffice_request_instants(
                tally.normal_updates, tally.high_updates, batch=params.backoffice_batch,
                flush_s=params.backoffice_flush_s, capacity_per_s=params.backoffice_requests_per_s)))}


def recovery_stats(values_s: list[float], weights: list[int]) -> dict[str, Any]:
    """Weighted p50 / p99 / max / mean of recovery times (None when nothing recovered)."""
    if not values_s:
        return {"episodes": 0, "p50": None, "p99": None, "max": None, "mean": None}
    values, counts = _sorted(values_s, weights)
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1])

    def quantile(q: float) -> float:
        return float(values[int(np.searchsorted(cumulative, q * total, side="left"))])

    return {"episodes": total, "p50": quantile(0.5), "p99": quantile(0.99),
            "max": float(values[-1]), "mean": float(np.dot(values, counts) / total)}


def recovery_cdf(values_s: list[float], weights: list[int], points: int = 200) -> list[list[float]]:
    """At most `points` (seconds, fraction recovered by then) pairs, for the CDF chart."""
    if not values_s:
        return []
    values, counts = _sorted(values_s, weights)
    unique, first = np.unique(values, return_index=True)
    cumulative = np.cumsum(counts)
    last = np.append(first[1:] - 1, len(values) - 1)
    fractions = cumulative[last] / cumulative[-1]
    step = max(1, len(unique) // points)
    picks = list(range(0, len(unique), step))
    if picks[-1] != len(unique) - 1:
        picks.append(len(unique) - 1)
    return [[round(float(unique[i]), 9), round(float(fractions[i]), 9)] for i in picks]


def _sorted(values_s: list[float], weights: list[int]) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values_s, dtype=float)
    counts = np.asarray(weights, dtype=np.int64)
    order = np.argsort(values, kind="stable")
    return values[order], counts[order]


def dumps(results: dict[str, Any]) -> str:
    """The canonical text of results.json."""
    return json.dumps(results, sort_keys=True, indent=1) + "\n"
