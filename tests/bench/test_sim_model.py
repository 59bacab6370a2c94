"""The SimPy model against bare SimPy, measured in one run (never an assertion on time).

`make bench` times these; in the ordinary suite they run once, small. The full-scale
figures (1,000,000 sessions) come from `python -m sim bench` → reports/sim/bench/bench.json.
"""

from __future__ import annotations

import pytest

from sim import engine
from sim.bench import bare_callbacks, bare_processes
from sim.params import ModelParams

pytestmark = pytest.mark.benchmark

OUTAGE = dict(scenario="mass_outage", outage_s=120.0, ip_connects_per_s=0.0, account_connects=0)


def test_bare_simpy_timeout_callbacks(benchmark):
    result = benchmark(bare_callbacks, 5_000)
    assert result["events"] == 5 * 5_000


def test_bare_simpy_processes(benchmark):
    result = benchmark(bare_processes, 5_000)
    assert result["events"] == 5 * 5_000


@pytest.mark.parametrize("jitter", ["none", "full"])
def test_model_per_session_mass_outage(benchmark, jitter):
    params = ModelParams(sessions=5_000, engine="session", jitter=jitter, **OUTAGE)
    output = benchmark(engine.run, params, workers=1)
    assert output.tally.outcomes["inactive"] == 5_000  # 120 s outlives every policy here
    assert output.tally.timer_events == 5 * 5_000


def test_model_cohort_mass_outage(benchmark):
    params = ModelParams(sessions=100_000, **OUTAGE)
    output = benchmark(engine.run, params, workers=1)
    assert output.engine == "cohort" and output.tally.outcomes["inactive"] == 100_000
