"""The SimPy model against bare SimPy, measured in one run (never an assertion on time).

`make bench` times these; in the ordinary suite they run once, small. The full-scale
figures (1,000,000 sessions) come from `python -m sim bench` → reports/sim/bench/bench.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim import engine
from sim.bench import bare_callbacks, bare_processes
from sim.cli import main
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


def test_model_histogram_mass_outage_full_jitter(benchmark):
    params = ModelParams(sessions=200_000, jitter="full", **OUTAGE)
    output = benchmark(engine.run, params, workers=1)
    assert output.engine == "histogram" and output.tally.outcomes["inactive"] == 200_000
    assert output.tally.handle_calls < 200_000  # lumps: far fewer machine calls than sessions


def test_sim_bench_writes_every_figure_and_times_a_baseline_checkout(tmp_path, capsys):
    here = Path(__file__).resolve().parents[2]
    assert main(["bench", "--sessions", "2000", "--big-sessions", "20000", "--speed-sessions", "500",
                 "--workers", "2", "--baseline", str(here), "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["scale_histogram_full_jitter_big"]["peak_rss_mb"] > 0
    assert report["scale_histogram_full_jitter_big"]["engine"] == "histogram"
    assert report["per_session_against_baseline"]["wall_s_here / wall_s_before"] > 0
    assert set(report["target"]) >= {"histogram_met", "histogram_big_met", "histogram_big_memory_met"}
