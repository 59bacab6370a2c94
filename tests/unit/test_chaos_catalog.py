"""The chaos scenario values and the named catalog: valid, complete, scalable, and what the
simulation predicts for them is what they state."""

from __future__ import annotations

import pytest

from chaos import catalog
from chaos.checkers import attempt_outcomes, check_all
from chaos.history import from_replay
from chaos.scenario import (UPSTREAMS, ChaosScenario, ChaosScenarioError, KillService, Outcome, ProxyDown,
                            RestartRedis, ToxicWindow, flapping_windows, replay_id, session_ids)
from service.core import Status
from sim.replay import replay
from sim.scenarios import FLAKY_WIFI, LinkDown, Scenario, Expected


def test_the_note_scenarios_are_the_simulations_values_at_real_timings():
    for alias, name in (("S1", "flaky_wifi"), ("S2", "long_outage"), ("S3", "deleted_mid_retry")):
        scenario = catalog.at_scale(alias)
        assert scenario.name == name and scenario.time_scale == 1.0
        assert catalog.default_scale(alias) == 1.0 and catalog.group_of(alias) == "note"
    assert catalog.get("S2").expected.attempt_offsets_s == (2.0, 6.0, 14.0, 30.0, 62.0)
    assert catalog.get("S1").policy().backoff.schedule_s() == [2.0, 4.0, 8.0, 16.0, 32.0]


def test_the_matrix_covers_every_upstream_and_fault_kind():
    names = catalog.names("matrix")
    assert len(names) == len(UPSTREAMS) * len(catalog.MATRIX_FAULTS) + len(catalog.STANDIN_FAULTS) == 20
    assert names[-2:] == ["matrix_whatsapp_refusing", "matrix_whatsapp_keepalive_silence"]
    for upstream in UPSTREAMS:
        for kind in catalog.MATRIX_FAULTS:
            scenario = catalog.get(f"matrix_{upstream}_{kind}")
            assert upstream in scenario.tags
            kinds = {getattr(a, "kind", "disable" if isinstance(a, ProxyDown) else None) for a in scenario.actions}
            targets = {a.upstream for a in scenario.actions}
            if (upstream, kind) == ("whatsapp", "disable"):
                assert isinstance(scenario.faults[0], LinkDown)  # the sim's own link-down
            else:
                assert kinds == {kind} and targets == {upstream}
            assert catalog.default_scale(scenario.name) == catalog.QUICK_SCALE


def test_every_catalog_scenario_states_its_outcome_and_is_serialisable():
    assert len(set(catalog.names())) == len(catalog.names()) == len(catalog.CATALOG)
    for name in catalog.names():
        scenario = catalog.at_scale(name)
        described = scenario.to_dict()
        assert described["expected"].startswith("final ") and described["description"]
        assert scenario.first_fault_s >= 0 and scenario.duration_s > scenario.first_fault_s
    assert {"herd", "flapping", "kill_mid_backoff", "redis_restart_mid_reconnect"} <= set(catalog.names("extra"))
    assert catalog.get("herd").sessions >= 500


def test_unknown_names_say_what_is_known():
    with pytest.raises(ChaosScenarioError, match="known: flaky_wifi, long_outage"):
        catalog.get("nope")
    with pytest.raises(ChaosScenarioError, match="unknown group"):
        catalog.names("nope")


def test_scaling_scales_times_durations_and_tolerance_but_not_sizes():
    latency = catalog.get("matrix_redis_latency").scaled(0.1)
    toxic = latency.actions[0]
    assert (toxic.start_s, toxic.end_s) == pytest.approx((0.05, 0.9))
    assert toxic.attrs == {"latency": 100, "jitter": 50}
    assert latency.faults[0] == LinkDown(0.1, 0.6) or latency.faults[0] == LinkDown(1.0 * 0.1, 6.0 * 0.1)
    assert latency.policy().backoff.base_s == pytest.approx(0.2)
    assert latency.policy().timeouts.keepalive_interval_s == pytest.approx(0.2)
    assert latency.allowed_error_s == pytest.approx(0.025 + 0.25)
    stall = catalog.get("matrix_whatsapp_bandwidth").scaled(0.1).actions[0]
    assert stall.attrs == {"rate": 0}
    slicer = catalog.get("matrix_whatsapp_slicer").scaled(0.1).actions[0]
    assert slicer.attrs == {"average_size": 8, "size_variation": 4, "delay": 1000}
    kill = catalog.get("kill_mid_backoff").scaled(0.5).actions[0]
    assert kill == KillService(1.0, 0.5)
    assert RestartRedis(2.0, 1.0).scaled(0.1) == RestartRedis(0.2, 0.1)


def predictable() -> list[str]:
    return [n for n in catalog.names() if catalog.get(n).prediction_schedule() is not None]


@pytest.mark.parametrize("name", predictable())
def test_the_replay_meets_each_predictable_scenarios_stated_outcome(name):
    scenario = catalog.at_scale(name)
    schedule = scenario.prediction_schedule()
    sessions = min(scenario.sessions, 20)
    ids = session_ids(scenario.name, sessions)
    result = replay(schedule, scenario.policy(), sessions=sessions)
    history = from_replay(result, schedule)
    assert sorted(replay_id(s) for s in ids) == history.sessions
    assert [str(r) for r in check_all(history, scenario) if not r.ok] == []


@pytest.mark.parametrize("name", predictable())
def test_real_and_scaled_timings_give_the_same_per_attempt_outcomes(name):
    real, quick = catalog.get(name), catalog.get(name).scaled(0.1)
    outcomes = []
    for scenario in (real, quick):
        schedule = scenario.prediction_schedule()
        result = replay(schedule, scenario.policy())
        records = sorted((r for r in result.timeline if r.session_id == "s0"), key=lambda r: r.t)
        outcomes.append([(attempt, outcome) for _t, attempt, outcome in attempt_outcomes(records)])
        outcomes.append(result.final_status)
    assert outcomes[0] == outcomes[2] and outcomes[1] == outcomes[3]


def test_flapping_windows_are_seeded_bounded_and_alternate():
    windows = flapping_windows(7, 1.0, 60.0)
    assert windows == flapping_windows(7, 1.0, 60.0) != flapping_windows(8, 1.0, 60.0)
    assert windows[0].start_s == 1.0 and windows[-1].end_s <= 61.0
    for before, after in zip(windows, windows[1:]):
        assert 1.0 - 1e-3 <= after.start_s - before.end_s <= 3.0 + 1e-3
    assert all(w.end_s - w.start_s <= 3.0 + 1e-3 for w in windows)
    with pytest.raises(ChaosScenarioError, match="min_s"):
        flapping_windows(1, 0.0, 10.0, min_s=3.0, max_s=1.0)


@pytest.mark.parametrize("build, message", [
    (lambda: ProxyDown("kafka", 1.0, 2.0), "unknown upstream 'kafka'"),
    (lambda: ProxyDown("redis", 2.0, 1.0), "empty or negative"),
    (lambda: ToxicWindow("redis", "lag", 1.0, 2.0), "unknown toxic kind 'lag'"),
    (lambda: ToxicWindow("redis", "latency", 1.0, 2.0, {"rate": 1}), "not \\['rate'\\]"),
    (lambda: ToxicWindow("redis", "latency", 1.0, 2.0, {"latency": -1}), "non-negative int"),
    (lambda: ChaosScenario(FLAKY_WIFI, sessions=0), "sessions must be"),
    (lambda: ChaosScenario(FLAKY_WIFI, prediction="maybe"), "prediction must be"),
    (lambda: ChaosScenario(FLAKY_WIFI, policy_settings={"base_s": -1}), "bad policy_settings: base_s"),
    (lambda: ChaosScenario(FLAKY_WIFI, policy_settings={"time_scale": 0.1}), "give time_scale with scaled"),
    (lambda: ChaosScenario(FLAKY_WIFI, actions=(ProxyDown("redis", 1.0, 99.0),)), "ends after duration_s"),
    (lambda: ChaosScenario(Scenario("x", "x", (), 5.0, Expected(None))), "no fault and no action"),
    (lambda: Outcome(frozenset()), "at least one allowed final status"),
    (lambda: Outcome(frozenset({Status.ACTIVE}), 3, 1), "reconnects_max 1 < reconnects_min 3"),
    (lambda: catalog.get("S1").scaled(0), "scale must be"),
])
def test_bad_scenarios_get_clear_errors(build, message):
    with pytest.raises(ChaosScenarioError, match=message):
        build()


def test_registering_adds_a_scenario_once_at_real_timings():
    mine = ChaosScenario(Scenario("unit_test_only", "a team's own", (LinkDown(1.0, 3.0),), 8.0,
                                  Expected(Status.ACTIVE, (2.0,), 1)))
    try:
        catalog.register(mine, group="team", default_scale=0.5)
        assert catalog.get("unit_test_only") is mine and catalog.names("team") == ["unit_test_only"]
        assert catalog.at_scale("unit_test_only").time_scale == 0.5
        with pytest.raises(ChaosScenarioError, match="already in the catalog"):
            catalog.register(mine)
        with pytest.raises(ChaosScenarioError, match="real timings"):
            catalog.register(FLAKY_WIFI_SCALED)
    finally:
        catalog._REGISTRY.pop("unit_test_only", None)
        catalog._GROUPS.pop("team", None)
        catalog._DEFAULT_SCALES.pop("unit_test_only", None)


FLAKY_WIFI_SCALED = ChaosScenario(Scenario("scaled_one", "x", (LinkDown(1.0, 3.0),), 8.0,
                                           Expected(Status.ACTIVE))).scaled(0.5)


# ---- bindings: scenario → timed steps (no servers: recording stand-ins for the actions) ----


class _Recorder:
    """Records calls in order; stands in for a proxy or an admin client in pure tests."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def __getattr__(self, action: str):
        return lambda *args, **kwargs: self.log.append(f"{self.name}.{action}{args}{sorted(kwargs.items())}")


def _targets(log: list[str]):
    from chaos.bindings import Targets

    proxies = {u: _Recorder(log, u) for u in UPSTREAMS}
    return Targets(proxies, _Recorder(log, "whatsapp_admin"), _Recorder(log, "backoffice_admin"), ["a", "b"],
                   kill_service=lambda: log.append("kill"), start_service=lambda: log.append("start"),
                   stop_redis=lambda: log.append("redis stop"), start_redis=lambda: log.append("redis start"),
                   stop_redis_saving=lambda: log.append("redis stop saving"))


def test_each_fault_binds_to_its_real_action_in_time_order():
    from chaos.bindings import steps_for

    log: list[str] = []
    steps = steps_for(catalog.get("matrix_whatsapp_reset_peer"), _targets(log))
    assert [(s.at_s, s.edge, s.window) for s in steps] == [
        (1.0, "start", ("toxic_reset_peer", "whatsapp")),  # the toxic is in place before the close
        (1.0, "instant", ("close_with", "whatsapp")),
        (6.0, "end", ("toxic_reset_peer", "whatsapp"))]
    for step in steps:
        step.run()
    assert log == ["whatsapp.add_toxic('reset_peer',)[('name', 'chaos_reset_peer_1'), ('stream', 'downstream'), "
                   "('timeout', 0)]",
                   "whatsapp_admin.close('a', 408)[]", "whatsapp_admin.close('b', 408)[]",
                   "whatsapp.remove_toxic('chaos_reset_peer_1',)[]"]


def test_processes_accounts_and_proxies_bind_to_the_runners_controls():
    from chaos.bindings import steps_for

    log: list[str] = []
    for name in ("kill_mid_backoff", "redis_restart_mid_reconnect", "deleted_mid_retry", "deactivated_mid_retry",
                 "matrix_backoffice_disable"):
        for step in steps_for(catalog.get(name), _targets(log)):
            step.run()
    assert "kill" in log and "start" in log and log.index("redis stop saving") < log.index("redis start")
    assert "redis stop" not in log  # the catalog's restart keeps the data
    assert "backoffice_admin.delete_account('a',)[]" in log and "backoffice_admin.deactivate('b',)[]" in log
    assert "backoffice.disable()[]" in log and "whatsapp.enable()[]" in log


def test_the_cli_lists_the_catalog_and_rejects_bad_usage(capsys):
    from chaos.cli import main

    assert main(["list", "--group", "note"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["flaky_wifi", "long_outage", "deleted_mid_retry"]
    assert main(["run", "nope"]) == 2 and "unknown chaos scenario 'nope'" in capsys.readouterr().err
    assert main(["run"]) == 2 and "name at least one scenario" in capsys.readouterr().err
    assert main(["run", "S1", "--all"]) == 2
    assert main(["run", "S1", "--scale", "0"]) == 2
