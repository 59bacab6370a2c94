"""Small multi-run studies behind the explanatory charts: the herd and the cliff.

`herd` runs one mass outage per jitter kind and keeps attempts per second; `cliff`
runs a range of outage lengths per jitter kind and keeps the fraction of sessions
ending inactive. Both are plain runs of `sim.engine` with smaller populations. Must not
draw: `sim.charts` does.
"""

from __future__ import annotations

import math
from typing import Any

from service.core import Jitter, PolicyError
from sim import engine
from sim.params import ModelParams, ParamError
from sim.results import build

JITTERS = [j.value for j in Jitter]


def jitters_for(params: ModelParams) -> list[str]:
    """The jitter kinds the run's policy can take (decorrelated needs base_s > 0)."""
    kinds = []
    for jitter in JITTERS:
        try:
            params.with_(jitter=jitter)
        except (ParamError, PolicyError):
            continue
        kinds.append(jitter)
    return kinds


def herd(params: ModelParams, *, sessions: int = 2_000, outage_s: float | None = None,
         bin_s: float = 0.1) -> dict[str, Any]:
    """Attempts per bin after one mass outage, for each jitter kind (same seed, same capacities)."""
    base = params.with_(scenario="mass_outage", sessions=min(sessions, params.sessions), until_s=0.0, bin_s=bin_s,
                        outage_s=params.outage_s if outage_s is None else outage_s)
    series, peaks = {}, {}
    for jitter in jitters_for(base):
        results = build(engine.run(base.with_(jitter=jitter, engine="auto"), workers=1))
        series[jitter] = results["series"]["whatsapp_connects"]
        peaks[jitter] = results["peaks"]["whatsapp_attempts_per_s"]
    return {"sessions": base.sessions, "outage_s": base.outage_s, "bin_s": base.bin_s,
            "series": series, "peak_attempts_per_s": peaks}


def cliff(params: ModelParams, *, sessions: int = 100, outages_s: list[float] | None = None) -> dict[str, Any]:
    """Fraction of sessions ending inactive against mass-outage length, per jitter kind, for
    the run's policy and capacities; the lengths span 0 to 1.6× its un-jittered give-up time."""
    base = params.with_(scenario="mass_outage", sessions=min(sessions, params.sessions), until_s=0.0)
    outages_s = outages_s or cliff_outages_s(base.policy().backoff.give_up_after_s())
    fractions: dict[str, list[float]] = {}
    for jitter in jitters_for(base):
        fractions[jitter] = []
        for outage_s in outages_s:
            results = build(engine.run(base.with_(jitter=jitter, outage_s=outage_s, engine="auto"), workers=1))
            fractions[jitter].append(results["outcomes"]["inactive"] / results["sessions"])
    return {"sessions": base.sessions, "outages_s": outages_s, "inactive_fraction": fractions,
            "give_up_after_s": base.policy().backoff.give_up_after_s()}


def cliff_outages_s(give_up_s: float, points: int = 16) -> list[float]:
    """Outage lengths for the cliff: evenly to 1.6× the give-up time (135 s if it never gives
    up), plus one second either side of the give-up time, where the cliff is."""
    top_s = 1.6 * give_up_s if math.isfinite(give_up_s) and give_up_s > 0 else 135.0
    found = {round(top_s * i / (points - 1), 3) for i in range(points)}
    if math.isfinite(give_up_s) and give_up_s >= 1:
        found |= {give_up_s - 1.0, give_up_s + 1.0}
    return sorted(found)
