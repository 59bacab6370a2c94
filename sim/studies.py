"""Small multi-run studies behind the explanatory charts: the herd and the cliff.

`herd` runs one mass outage per jitter kind and keeps attempts per second; `cliff`
runs a range of outage lengths per jitter kind and keeps the fraction of sessions
ending inactive. Both are plain runs of `sim.engine` with smaller populations. Must not
draw: `sim.charts` does.
"""

from __future__ import annotations

from typing import Any

from service.core import Jitter
from sim import engine
from sim.params import ModelParams
from sim.results import build

JITTERS = [j.value for j in Jitter]


def herd(params: ModelParams, *, sessions: int = 2_000, outage_s: float | None = None,
         bin_s: float = 0.1) -> dict[str, Any]:
    """Attempts per bin after one mass outage, for each jitter kind (same seed, same capacities)."""
    base = params.with_(scenario="mass_outage", sessions=min(sessions, params.sessions), until_s=0.0, bin_s=bin_s,
                        outage_s=params.outage_s if outage_s is None else outage_s)
    series, peaks = {}, {}
    for jitter in JITTERS:
        results = build(engine.run(base.with_(jitter=jitter, engine="auto"), workers=1))
        series[jitter] = results["series"]["whatsapp_connects"]
        peaks[jitter] = results["peaks"]["whatsapp_attempts_per_s"]
    return {"sessions": base.sessions, "outage_s": base.outage_s, "bin_s": base.bin_s,
            "series": series, "peak_attempts_per_s": peaks}


def cliff(params: ModelParams, *, sessions: int = 200, outages_s: list[float] | None = None) -> dict[str, Any]:
    """Fraction of sessions ending inactive against mass-outage length, per jitter kind."""
    outages_s = outages_s or sorted({float(d) for d in range(0, 136, 5)} | {61.0, 63.0})
    base = params.with_(scenario="mass_outage", sessions=min(sessions, params.sessions), until_s=0.0)
    fractions: dict[str, list[float]] = {}
    for jitter in JITTERS:
        fractions[jitter] = []
        for outage_s in outages_s:
            results = build(engine.run(base.with_(jitter=jitter, outage_s=outage_s, engine="auto"), workers=1))
            fractions[jitter].append(results["outcomes"]["inactive"] / results["sessions"])
    return {"sessions": base.sessions, "outages_s": outages_s, "inactive_fraction": fractions,
            "give_up_after_s": base.policy().backoff.give_up_after_s()}
