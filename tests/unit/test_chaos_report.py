"""Prediction comparison, the journal and the report, on simulated and hand-altered histories."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from chaos import catalog
from chaos.checkers import check_all
from chaos.history import FaultWindow, History, from_replay
from chaos.journal import Journal
from chaos.prediction import compare, predict, predict_and_compare
from chaos.report import ScenarioRun, status_intervals, summary_markdown, timeline_chart, write_summary
from sim.replay import Latencies, replay


def replayed(name: str, scale: float | None = None, latencies: Latencies | None = None) -> tuple[History, object]:
    """A history as if the service had done what the twin does (with these latencies), with the run's ids."""
    scenario = catalog.at_scale(name, scale)
    schedule = scenario.prediction_schedule()
    result = replay(schedule, scenario.policy(), sessions=scenario.sessions, latencies=latencies)
    history = from_replay(result, schedule)
    history.sessions = [f"{scenario.name}-{s}" for s in history.sessions]
    for attr in ("timeline", "link_events", "backoffice_updates"):
        setattr(history, attr, [replace(x, session_id=f"{scenario.name}-{x.session_id}")
                                for x in getattr(history, attr)])
    history.final_status = {f"{scenario.name}-{k}": v for k, v in history.final_status.items()}
    return history, scenario


def test_a_run_that_did_what_the_simulation_did_matches_its_prediction():
    history, scenario = replayed("long_outage")
    report = predict_and_compare(history, scenario)
    assert report.compared and report.ok, report.differences
    assert [round(t, 3) for t, _n, _o in report.sessions[0].predicted] == [2.0, 6.0, 14.0, 30.0, 62.0]


def test_a_late_attempt_and_a_wrong_outcome_are_reported_differences():
    history, scenario = replayed("flaky_wifi")
    late = [replace(r, t=r.t + 1.0) if r.t > 6.5 else r for r in history.timeline]
    report = compare(replace(history, timeline=late), scenario, predict(scenario))
    assert not report.ok and "attempt 2 at +7.000s, predicted attempt 2 at +6.000s" in report.differences[0]
    # the link stayed down one more time: attempt 2 fails, a third opens
    broken, _ = replayed("long_outage")
    report = compare(replace(broken, sessions=[s.replace("long_outage", "flaky_wifi") for s in broken.sessions],
                             timeline=[replace(r, session_id="flaky_wifi-s0") for r in broken.timeline],
                             final_status={"flaky_wifi-s0": "inactive"}), scenario, predict(scenario))
    assert not report.ok and any("failed, predicted open" in d for d in report.differences)


def test_a_different_outcome_on_a_faults_edge_is_a_divergence_not_a_failure():
    history, scenario = replayed("matrix_whatsapp_disable")  # attempt 2 at +0.6 s, the link back at +0.5 s
    tight = replace(scenario, overhead_s=0.1)
    # the same run, but the world put the link back later: attempt 2 failed, attempt 3 opened
    other = catalog.get("matrix_whatsapp_disable").scaled(0.1)
    slow = replace(other.schedule, faults=(replace(other.faults[0], end_s=0.72),))
    result = replay(slow, other.policy())
    observed = from_replay(result, slow, sessions=["s0"])
    observed.sessions = ["s0"]
    report = compare(observed, tight, predict(tight))
    assert report.ok and report.sessions[0].diverged_at == 1


def test_scenarios_the_simulation_cannot_model_are_not_compared():
    scenario = catalog.at_scale("matrix_redis_latency")
    report = compare(History(scenario.name, []), scenario, predict(scenario))
    assert not report.compared and report.ok and "not compared" in report.note


def test_the_journal_records_activities_with_status_and_survives_failures(tmp_path):
    ticks = iter(range(100))
    journal = Journal({"title": "x"}, clock=lambda: 1_700_000_000.0 + next(ticks))
    with journal.activity("all active", kind="probe", phase="before") as probe:
        probe.output = True
    with pytest.raises(RuntimeError):
        with journal.activity("disable proxy", at_s=1.0):
            raise RuntimeError("proxy gone")
    with journal.activity("reset toxiproxy", phase="rollbacks", reraise=False):
        raise ValueError("server down")
    with pytest.raises(KeyboardInterrupt):
        with journal.activity("wait", phase="method"):
            raise KeyboardInterrupt
    journal.finish("interrupted", deviated=True)
    data = json.loads(journal.save(tmp_path / "journal.json").read_text())
    assert data["status"] == "interrupted" and data["deviated"] is True
    assert data["steady_states"]["before"]["steady_state_met"] is True
    assert [a["status"] for a in data["run"]] == ["failed", "interrupted"]
    assert data["run"][0]["activity"] == {"type": "action", "name": "disable proxy", "scheduled_at_s": 1.0}
    assert "RuntimeError: proxy gone" in data["run"][0]["exception"]
    assert data["rollbacks"][0]["status"] == "failed" and data["run"][0]["duration"] == 1.0
    with pytest.raises(ValueError, match="run status"):
        journal.finish("fine")


def test_status_intervals_follow_the_timeline_and_end_in_the_final_status():
    history, _ = replayed("long_outage")
    spans = status_intervals(history, "long_outage-s0", 130.0)
    assert [s for _a, _b, s in spans] == ["connecting", "active", "connecting", "inactive"]
    assert spans[-1][1] == 130.0 and spans[-1][0] == pytest.approx(63.0)


def test_the_chart_and_summary_are_written(tmp_path):
    history, scenario = replayed("flaky_wifi")
    history.faults.append(FaultWindow("toxic_latency", "redis", 2.0, 4.0))
    chart = timeline_chart(history, tmp_path / "charts" / "flaky_wifi.png", title="S1", end_s=scenario.duration_s)
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    checks = check_all(history, scenario)
    bad = check_all(replace(history, final_status={"flaky_wifi-s0": "inactive"}), scenario)
    runs = [ScenarioRun("flaky_wifi", 1.0, "passed", checks, predict_and_compare(history, scenario),
                        chart=chart, journal=tmp_path / "flaky_wifi" / "journal.json", duration_s=12.3),
            ScenarioRun("broken", 0.1, "failed", bad, expected="final active")]
    text = summary_markdown(runs)
    assert "1 of 2 scenario(s) passed; 0 failed as intended" in text and "**1 real failure(s)**" in text
    assert "| flaky_wifi | 1 | **passed** | 8/8 | match; max error 0 ms, calibrated 0 ms |" in text
    assert "## Real failures" in text and "### broken: failed" in text and "**final status per session as expected** violated (black-box):" in text
    summary = write_summary(tmp_path, runs)
    assert "(charts/flaky_wifi.png)" in summary.read_text()
