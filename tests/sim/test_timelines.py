"""The note's timelines S1–S3, pinned through `python -m sim replay` and through the population model."""

from __future__ import annotations

import json

import pytest

from service.core import Status, TimelineRecord
from sim import engine
from sim.cli import main
from sim.params import ModelParams
from sim.replay import replay
from sim.results import build
from sim.scenarios import SCENARIOS
from sim.timeline import model_timeline, predict

pytestmark = pytest.mark.sim


def _cli_timeline(capsys, *argv: str) -> list[TimelineRecord]:
    assert main(["replay", *argv]) == 0
    out = capsys.readouterr().out
    return [TimelineRecord.from_json(line) for line in out.splitlines() if line.strip()]


def _attempt_offsets_s(records: list[TimelineRecord], origin_s: float) -> list[float]:
    return [round(r.t - origin_s, 9) for r in records if r.event == "session_starting" and r.attempt >= 1]


@pytest.mark.parametrize("via", ["replay", "model"])
def test_s1_flaky_wifi_attempts_at_2_and_6_then_active(capsys, via):
    records = _cli_timeline(capsys, "flaky_wifi", "--via", via)
    assert _attempt_offsets_s(records, SCENARIOS["flaky_wifi"].first_fault_s) == [2.0, 6.0]
    assert records[-1].event == "session_open" and records[-1].status == "active"


@pytest.mark.parametrize("via", ["replay", "model"])
def test_s2_long_outage_five_attempts_then_inactive_and_nothing_after(capsys, via):
    records = _cli_timeline(capsys, "long_outage", "--via", via)
    assert _attempt_offsets_s(records, 1.0) == [2.0, 6.0, 14.0, 30.0, 62.0]
    last_attempt_s = max(r.t for r in records if r.event == "session_starting")
    give_up = [r for r in records if r.event == "max_attempts_reached"]
    assert len(give_up) == 1 and give_up[0].t == last_attempt_s == 63.0
    assert all(r.t <= give_up[0].t for r in records)
    assert records[-1].event == "max_attempts_reached"


@pytest.mark.parametrize("via", ["replay", "model"])
def test_s3_deleted_mid_retry_opens_no_socket(capsys, via):
    records = _cli_timeline(capsys, "deleted_mid_retry", "--via", via)
    assert _attempt_offsets_s(records, 1.0) == []
    cancelled = [r for r in records if r.event == "reconnect_cancelled"]
    assert [r.t for r in cancelled] == [3.0]
    assert records[-1].event == "reconnect_cancelled"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
@pytest.mark.parametrize("time_scale", [1.0, 0.1])
def test_the_population_model_gives_the_replays_timeline(name, time_scale):
    params = ModelParams(sessions=3)
    replayed = predict(name, params, time_scale=time_scale, sessions=3, via="replay")
    modelled = model_timeline(name, params, time_scale=time_scale, sessions=3)
    assert [r.to_json() for r in modelled] == [r.to_json() for r in replayed]


def test_replay_of_an_unknown_scenario_is_a_usage_error(capsys):
    assert main(["replay", "no_such_scenario"]) == 2
    assert "no_such_scenario" in capsys.readouterr().err


def test_replay_lines_are_the_shared_timeline_format(capsys):
    records = _cli_timeline(capsys, "terminal_401", "--time-scale", "0.5")
    assert records and all(json.loads(r.to_json())["session_id"] == "s0" for r in records)
    terminal = [r for r in records if r.event == "session_terminal"]
    assert [r.t for r in terminal] == [0.5]


@pytest.mark.parametrize("name, outcome", [("flaky_wifi", "recovered"), ("long_outage", "inactive"),
                                           ("deleted_mid_retry", "cancelled"), ("terminal_401", "inactive")])
def test_final_status_of_the_note_scenarios_in_replay_and_model(name, outcome):
    replayed = replay(SCENARIOS[name], ModelParams().policy())
    expected_status = {"recovered": Status.ACTIVE}.get(outcome, Status.INACTIVE)
    assert replayed.final_status["s0"] is expected_status
    results = build(engine.run(ModelParams(sessions=40, scenario=name, engine="session")))
    assert results["outcomes"][outcome] == 40
