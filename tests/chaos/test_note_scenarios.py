"""The design note's S1–S3 against the real service at the note's real timings, run at once
(each with its own sessions and proxies), and again at 0.1 scale: same per-attempt outcomes;
at real timings the twin fed the run's latencies predicts every attempt within 100 ms."""

from __future__ import annotations

import pytest

from chaos import catalog
from chaos.checkers import attempt_outcomes
from chaos.history import History

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def per_attempt(result) -> list[list[tuple[int, str]]]:
    history = History.load(result.run_dir)
    return [[(attempt, outcome) for _t, attempt, outcome in attempt_outcomes(history.records_of(sid))]
            for sid in history.sessions]


@pytest.fixture(scope="module")
def note_runs(run_chaos):
    """S1–S3 at once at real timings (~2.3 min, S2 is the longest), then at once at 0.1."""
    names = catalog.names("note")
    real = run_chaos([catalog.at_scale(n) for n in names], concurrent=True)
    quick = run_chaos([catalog.at_scale(n, 0.1) for n in names], concurrent=True, subdir="scaled")
    return {r.name: r for r in real}, {r.name: r for r in quick}


@pytest.mark.parametrize("name", ["flaky_wifi", "long_outage", "deleted_mid_retry"])
def test_the_note_scenario_passes_at_real_timings(note_runs, name):
    result = note_runs[0][name]
    assert result.scale == 1.0
    assert result.status == "passed", result.explain()
    assert result.chart is not None and result.chart.exists() and result.journal.exists()
    assert result.prediction is not None and result.prediction.compared
    calibrated = result.prediction.calibrated_error_ms  # the twin fed the run's measured latencies
    assert calibrated or name == "deleted_mid_retry", "no reconnect attempt compared"  # S3 never reconnects
    assert all(e["max"] <= 100.0 for e in calibrated.values()), (calibrated, result.prediction.latencies)


@pytest.mark.parametrize("name", ["flaky_wifi", "long_outage", "deleted_mid_retry"])
def test_real_and_scaled_timings_give_the_same_per_attempt_outcomes(note_runs, name):
    real, quick = note_runs[0][name], note_runs[1][name]
    assert quick.status == "passed", quick.explain()
    assert per_attempt(real) == per_attempt(quick)
    expected = {"flaky_wifi": [[(1, "failed"), (2, "open")]],
                "long_outage": [[(n, "failed") for n in range(1, 6)]],
                "deleted_mid_retry": [[]]}[name]
    assert per_attempt(real) == expected
