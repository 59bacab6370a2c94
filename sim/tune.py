"""`python -m sim tune`: which backoff meets your constraints, found by simulating a grid.

Constraints and objectives are on the model's outputs over a set of mass-outage lengths:
the worst share of sessions ending inactive, the peak connects per second at WhatsApp
(busiest 1 s window), the worst p99 recovery time and the upstream load (peak / capacity
of Redis and the back office). Every candidate of the search space (an exhaustive grid,
see the README for why not Optuna) is screened on a sample population (`--eval-sessions`,
rates scaled up to `--sessions`), longest outage first, and dropped at the first broken
constraint. The feasible candidates on the Pareto front are ranked (p99 recovery to the
second, then peak connects, then load, then inactive share) and re-simulated at the full
population until one meets every constraint: that is the recommendation, written as a policy file
both `python -m sim` and `python -m service` read. Exit 1 when none does.
Must not draw (`sim.tune_report` does).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sim import engine
from sim.params import ModelParams, ParamError, coerce
from sim.results import build

DEFAULT_SPACE: dict[str, list[Any]] = {
    "jitter": ["full", "equal", "decorrelated", "none"],
    "base_s": [1.0, 2.0, 5.0, 10.0],
    "cap_s": [30.0, 60.0, 120.0],
    "max_attempts": [6, 10],
    "max_elapsed_s": [0.0, 180.0],
}
OBJECTIVES = ("inactive_share", "peak_connects_per_s", "p99_recovery_s", "upstream_load")
VERIFY_AT_MOST = 3  # full-population re-simulations before giving up on the ranked front


@dataclass(frozen=True)
class Constraints:
    """Upper bounds on the objectives; None: not constrained (still minimised)."""

    max_inactive: float = 0.01
    max_connects_per_s: float | None = None
    max_p99_recovery_s: float | None = None
    max_upstream_load: float | None = None

    def broken(self, metrics: dict[str, float]) -> str | None:
        """The first objective over its bound, or None."""
        bounds = (("inactive_share", self.max_inactive), ("peak_connects_per_s", self.max_connects_per_s),
                  ("p99_recovery_s", self.max_p99_recovery_s), ("upstream_load", self.max_upstream_load))
        for name, bound in bounds:
            if bound is not None and metrics.get(name, 0.0) > bound:
                return name
        return None


@dataclass
class Candidate:
    """One point of the search space and what the model said about it."""

    values: dict[str, Any]
    params: ModelParams
    metrics: dict[str, float] = field(default_factory=dict)
    rejected: str | None = None  # the constraint it broke while screened
    pareto: bool = False
    verified: bool | None = None  # re-simulated at the full population: met every constraint?


def parse_space(items: list[str]) -> dict[str, list[Any]]:
    """The default space with each `NAME=V1,V2` replacing (or adding) one dimension."""
    space = dict(DEFAULT_SPACE)
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        values = [v.strip() for v in raw.split(",") if v.strip()] if sep else []
        if not values:
            raise ParamError(f"--space takes NAME=V1,V2,…, got {item!r}")
        space[key] = [coerce(key, value) for value in values]
    return space


def candidates(base: ModelParams, space: dict[str, list[Any]]) -> list[Candidate]:
    """Every valid combination (a cap below the base is skipped), in a fixed order."""
    found = []
    for combo in itertools.product(*space.values()):
        values = dict(zip(space, combo))
        try:
            params = base.with_(**values)
        except ParamError:
            continue
        if not params.policy().backoff.gives_up:
            continue  # a policy must end somewhere (R2); never-giving-up wins "inactive" trivially
        found.append(Candidate(values, params))
    if not found:
        raise ParamError("the search space has no valid policy (check --space values)")
    return found


def measure(params: ModelParams, outages_s: list[float], sessions: int, constraints: Constraints,
            *, stop_early: bool) -> tuple[dict[str, float], str | None]:
    """Worst objectives over the outages at `params.sessions`, rates scaled to `sessions`."""
    scale = sessions / params.sessions
    worst = {name: 0.0 for name in OBJECTIVES}
    for outage_s in sorted(outages_s, reverse=True):
        results = build(engine.run(params.with_(outage_s=outage_s, until_s=0.0), workers=1))
        one = _objectives(results, scale)
        worst = {name: max(worst[name], one[name]) for name in OBJECTIVES}
        broken = constraints.broken(worst)
        if broken and stop_early:
            return worst, broken
    return worst, constraints.broken(worst)


def _objectives(results: dict[str, Any], scale: float) -> dict[str, float]:
    peaks, up = results["peaks"], results["upstreams"]
    p99_s = results["recovery_s"]["p99"]
    loads = [peaks[key] * scale / up[name]["capacity_per_s"]
             for key, name in (("redis_ops_per_s", "redis"), ("backoffice_requests_per_s", "backoffice"))
             if up[name]["capacity_per_s"] > 0]
    return {"inactive_share": results["outcomes"]["inactive"] / results["sessions"],
            "peak_connects_per_s": peaks["whatsapp_attempts_per_s"] * scale,
            "p99_recovery_s": math.inf if p99_s is None else p99_s,
            "upstream_load": max(loads, default=0.0)}


def pareto(found: list[Candidate]) -> list[Candidate]:
    """Mark and return the non-dominated candidates among those fully measured."""
    full = [c for c in found if c.rejected is None]
    for cand in full:
        cand.pareto = not any(_dominates(other.metrics, cand.metrics) for other in full if other is not cand)
    return [c for c in full if c.pareto]


def _dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    return all(a[k] <= b[k] for k in OBJECTIVES) and any(a[k] < b[k] for k in OBJECTIVES)


RANK_P99_STEP_S = 1.0  # p99 recoveries this close rank alike: a fraction of a second buys no connects


def rank_key(cand: Candidate) -> tuple:
    m = cand.metrics
    return (round(m["p99_recovery_s"] / RANK_P99_STEP_S), m["peak_connects_per_s"], m["upstream_load"],
            m["inactive_share"],
            sorted(cand.values.items(), key=str))


def search(base: ModelParams, space: dict[str, list[Any]], outages_s: list[float], constraints: Constraints,
           eval_sessions: int, progress: Callable[[], None] | None = None) -> tuple[list[Candidate], Candidate | None]:
    """Screen every candidate, mark the Pareto front, verify the best at full size.

    Returns (every candidate, the recommendation or None).
    """
    if not outages_s or any(o <= 0 for o in outages_s):
        raise ParamError(f"--outage-s needs positive lengths in seconds, got {outages_s}")
    sample = min(eval_sessions, base.sessions)
    found = candidates(base.with_(sessions=sample, scenario="mass_outage"), space)
    for cand in found:
        cand.metrics, cand.rejected = measure(cand.params, outages_s, base.sessions, constraints, stop_early=True)
        if progress:
            progress()
    front = sorted(pareto(found), key=rank_key)
    for cand in front[:VERIFY_AT_MOST]:
        full = cand.params.with_(sessions=base.sessions)
        metrics, broken = measure(full, outages_s, base.sessions, constraints, stop_early=False)
        cand.verified = broken is None
        if cand.verified:
            cand.metrics = metrics
            return found, cand
    return found, None
