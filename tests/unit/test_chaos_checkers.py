"""Checkers over hand-built and simulated histories: a good run passes every checker, and each
broken history fails exactly the checker named after the invariant it breaks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chaos import checkers
from chaos.catalog import get
from chaos.checkers import (ATTEMPT_TIMES_MATCH_POLICY, ATTEMPTS_WITHIN_MAX, BACKOFFICE_COMPLETE_ORDERED,
                            FINAL_STATUS_AS_EXPECTED, NO_CONNECT_AFTER_END, NONE_LEFT_CONNECTING, ONE_LIVE_SOCKET,
                            RECONNECTS_AS_EXPECTED, check_all)
from chaos.history import BackOfficeUpdate, FaultWindow, History, LinkEvent, from_replay
from chaos.scenario import ChaosScenario, Outcome
from service.core import Status, TimelineRecord, build_policy
from service.core.events import Validated
from sim import model as model_module
from sim.replay import replay

S1 = get("flaky_wifi")
# S1's schedule and policy, but an outcome that only pins the final status: invariant
# tests change one thing and must not trip the scenario's own expectations.
LOOSE = replace(S1, outcome=Outcome(frozenset({Status.ACTIVE}), 0, None))
SID = "flaky_wifi-s0"


class Run:
    """Builds a history the way the service and the stand-ins record one session."""

    def __init__(self, session_id: str = SID) -> None:
        self.sid = session_id
        self.records: list[TimelineRecord] = []
        self.links: list[LinkEvent] = []
        self.status = "connecting"
        self.conns = 0

    def rec(self, t: float, event: str, attempt: int = 0, **detail: object) -> None:
        self.records.append(TimelineRecord(t, self.sid, event, attempt, self.status, detail))

    def link(self, t: float, kind: str, conn: int, code: int | None = None) -> None:
        self.links.append(LinkEvent(t, self.sid, kind, f"c{conn}", code))

    def start(self, t: float = 0.0) -> None:
        self.rec(t, "session_starting", 0)
        self.open(t + 0.02, attempt=0)

    def open(self, t: float, attempt: int) -> None:
        self.conns += 1
        self.link(t - 0.01, "connect", self.conns)
        self.link(t, "open", self.conns)
        self.rec(t, "connection_update", attempt, connection="open")
        self.status = "active"
        self.rec(t, "session_open", 0)

    def drop_link(self, t: float, close_socket: bool = True) -> None:
        if close_socket:
            self.link(t, "close", self.conns)
        self.rec(t, "connection_update", 0, connection="close")
        self.rec(t, "session_closed", 0)
        self.status = "connecting"

    def schedule(self, t: float, attempt: int, backoff_s: float) -> None:
        self.rec(t, "reconnect_scheduled", attempt, max_attempts=5, backoff_ms=backoff_s * 1000, reason="backoff")

    def fire(self, t: float, attempt: int) -> None:
        self.rec(t, "reconnect_running", attempt)
        self.rec(t, "session_starting", attempt)

    def refused(self, t: float, attempt: int) -> None:
        self.rec(t, "connection_update", attempt, connection="close")
        self.rec(t, "reconnect_failed", attempt, reason="refused")
        self.rec(t, "session_closed", attempt, reason="refused")

    def history(self, *, final: str | None = "active", faults: list[FaultWindow] | None = None) -> History:
        seqs, updates, last = 0, [], None
        for record in self.records:  # the back office gets each status change a moment later
            if record.status != last:
                seqs += 1
                last = record.status
                updates.append(BackOfficeUpdate(record.t + 0.05, self.sid, record.status, "normal", seqs,
                                                f"{self.sid}:{seqs}"))
        return History("flaky_wifi", [self.sid], list(self.records), list(self.links), updates,
                       faults if faults is not None else [FaultWindow("link_down", "whatsapp", 1.0, 6.0)],
                       {} if final is None else {self.sid: final})


def flaky_wifi_run(failures: int = 1, first_fail_s: float = 3.01) -> Run:
    """S1 by hand: drop at 1 s, `failures` refused attempts on the policy's schedule, then open."""
    backoff = build_policy().backoff
    run = Run()
    run.start()
    run.drop_link(1.0)
    run.schedule(1.0, 1, backoff.exponential_s(1))
    t = 1.0
    for attempt in range(1, failures + 1):
        t += backoff.exponential_s(attempt)
        run.fire(t, attempt)
        t = first_fail_s if attempt == 1 else t + 0.01
        run.refused(t, attempt)
        run.schedule(t, attempt + 1, backoff.exponential_s(attempt + 1))
    t += backoff.exponential_s(failures + 1)
    run.fire(t, failures + 1)
    run.open(t + 0.03, attempt=failures + 1)
    return run


def failing(history: History, scenario: ChaosScenario = LOOSE) -> list[str]:
    return [r.name for r in check_all(history, scenario) if not r.ok]


def test_the_good_hand_built_run_passes_every_checker_of_s1_and_of_the_loose_scenario():
    history = flaky_wifi_run().history()
    for scenario in (S1, LOOSE):
        results = check_all(history, scenario)
        assert [str(r) for r in results if not r.ok] == []
        assert len(results) == len(checkers.CHECKERS) == 8


def test_six_attempts_break_attempts_per_episode():
    history = flaky_wifi_run(failures=5).history()  # attempts 1–5 fail, a 6th succeeds
    assert failing(history) == [ATTEMPTS_WITHIN_MAX]
    result = checkers.attempts_per_episode_within_max(history, LOOSE)
    assert "[1, 2, 3, 4, 5, 6]" in result.violations[0] and "at most 5" in result.violations[0]


def test_a_short_backoff_breaks_attempt_times():
    run = flaky_wifi_run()
    # attempt 2 fires 2 s after its close instead of 4 s
    run.records = [replace(r, t=r.t - 2.0) if r.t > 7 else r for r in run.records]
    run.links = [replace(e, t=e.t - 2.0) if e.t > 7 else e for e in run.links]
    assert failing(run.history()) == [ATTEMPT_TIMES_MATCH_POLICY]


def test_a_scheduled_backoff_outside_the_policy_breaks_attempt_times():
    run = flaky_wifi_run()
    run.records = [replace(r, detail={**r.detail, "backoff_ms": 2500.0}) if r.event == "reconnect_scheduled"
                   and r.attempt == 1 else r for r in run.records]
    result = checkers.attempt_times_match_policy(run.history(), LOOSE)
    assert not result.ok and "2.500s of backoff" in result.violations[0]


def test_a_timer_that_never_fires_breaks_attempt_times():
    run = flaky_wifi_run()
    cut = next(i for i, r in enumerate(run.records) if r.event == "reconnect_running" and r.attempt == 2)
    run.records = run.records[:cut] + [TimelineRecord(20.0, SID, "connection_update", 0, "connecting")]
    result = checkers.attempt_times_match_policy(run.history(final="active"), LOOSE)
    assert not result.ok and "never fired" in result.violations[0]


def test_a_wrong_final_status_breaks_final_status():
    assert failing(flaky_wifi_run().history(final="inactive")) == [FINAL_STATUS_AS_EXPECTED]


def test_an_old_socket_left_open_breaks_one_live_socket():
    run = flaky_wifi_run()
    run.links = [e for e in run.links if not (e.kind == "close" and e.conn_id == "c1")]
    assert failing(run.history()) == [ONE_LIVE_SOCKET]
    assert "2 live sockets" in checkers.one_live_socket_per_session(run.history(), LOOSE).violations[0]


def test_a_connect_after_the_account_was_deleted_breaks_no_connect_after_deletion():
    faults = [FaultWindow("link_down", "whatsapp", 1.0, 6.0), FaultWindow("account_deleted", "backoffice", 2.0)]
    history = flaky_wifi_run().history(faults=faults)
    assert failing(history) == [NO_CONNECT_AFTER_END]
    violations = checkers.no_connect_after_terminal_or_deletion(history, LOOSE).violations
    assert any("connected at t=7.030s, after account deleted at t=2.000s" in v for v in violations)


def test_a_connect_after_a_terminal_code_breaks_no_connect_after_terminal():
    run = flaky_wifi_run()
    run.links = [replace(e, code=401) if e.kind == "close" and e.conn_id == "c1" else e for e in run.links]
    assert failing(run.history()) == [NO_CONNECT_AFTER_END]


def test_a_deletion_of_other_sessions_does_not_count():
    faults = [FaultWindow("link_down", "whatsapp", 1.0, 6.0),
              FaultWindow("account_deleted", "backoffice", 2.0, None, {"sessions": ["someone-else"]})]
    assert failing(flaky_wifi_run().history(faults=faults)) == []


@pytest.mark.parametrize("breakage", ["reordered", "lost", "stale_end", "changed_duplicate"])
def test_a_broken_back_office_history_breaks_completeness_and_order(breakage):
    history = flaky_wifi_run().history()
    updates = history.backoffice_updates
    if breakage == "reordered":
        updates[-2], updates[-1] = updates[-1], updates[-2]
    elif breakage == "lost":
        del updates[-2]
    elif breakage == "stale_end":
        del updates[-1]
    else:
        updates.append(replace(updates[0], status="inactive", t=99.0))
    assert failing(history) == [BACKOFFICE_COMPLETE_ORDERED]


def test_a_duplicate_delivery_of_the_same_update_is_fine():
    history = flaky_wifi_run().history()
    history.backoffice_updates.append(replace(history.backoffice_updates[1], t=50.0))
    assert failing(history) == []


def test_a_session_left_connecting_breaks_none_left_connecting():
    tolerant = replace(S1, outcome=Outcome(frozenset({Status.ACTIVE, Status.CONNECTING}), 0, None))
    history = flaky_wifi_run().history(final="connecting")
    assert failing(history, tolerant) == [NONE_LEFT_CONNECTING]
    assert "still connecting" in checkers.no_session_left_connecting(history, tolerant).violations[0]


def test_one_slow_attempt_does_not_fail_the_later_ones_and_the_drift_is_reported():
    history = flaky_wifi_run(first_fail_s=3.6).history()  # attempt 1 hung 0.6 s: attempt 2 at +6.6 s
    assert failing(history, S1) == []
    result = checkers.reconnects_as_expected(history, S1)
    assert result.evidence == checkers.WHITE_BOX
    assert any("reconnect 2 at +6.600s, +0.600s from the expected +6.000s" in n for n in result.notes), result.notes


def test_a_step_slowed_by_its_measured_validation_passes():
    run = flaky_wifi_run()
    slow = [r for r in run.records if r.event == "session_starting" and r.attempt == 2][0]
    run.records = [replace(r, t=r.t + 0.46) if r.t >= slow.t and r.event != "reconnect_running" else r
                   for r in run.records]  # validation of attempt 2 took 0.46 s
    run.links = [replace(e, t=e.t + 0.46) if e.t >= slow.t else e for e in run.links]
    assert failing(run.history(), S1) == []


def test_a_step_late_by_itself_breaks_the_scenarios_stated_reconnects():
    run = flaky_wifi_run()
    late = min(r.t for r in run.records if r.event == "reconnect_running" and r.attempt == 2)
    run.records = [replace(r, t=r.t + 0.6) if r.t >= late else r for r in run.records]
    run.links = [replace(e, t=e.t + 0.6) if e.t >= late else e for e in run.links]
    assert RECONNECTS_AS_EXPECTED in failing(run.history(), S1)
    assert "reconnect 2 at +6.610s started 4.600s after" in checkers.reconnects_as_expected(
        run.history(), S1).violations[0]


# ---- histories from the simulation (the core on a virtual clock) ------------------------------


@pytest.mark.parametrize("name", ["flaky_wifi", "long_outage", "deleted_mid_retry", "terminal_401",
                                  "matrix_whatsapp_disable", "flapping", "deactivated_mid_retry"])
def test_replayed_runs_of_the_spec_policy_pass_every_checker(name):
    scenario = get(name)
    schedule = scenario.prediction_schedule()
    history = from_replay(replay(schedule, scenario.policy()), schedule)
    assert [str(r) for r in check_all(history, scenario) if not r.ok] == []


def test_a_replay_with_six_attempts_fails_attempts_per_episode():
    scenario = get("long_outage")
    history = from_replay(replay(scenario.schedule, build_policy({"max_attempts": 6})), scenario.schedule)
    names = failing(history, scenario)
    assert ATTEMPTS_WITHIN_MAX in names
    assert set(names) <= {ATTEMPTS_WITHIN_MAX, RECONNECTS_AS_EXPECTED}


def test_a_replay_with_a_different_base_fails_attempt_times():
    scenario = get("long_outage")
    history = from_replay(replay(scenario.schedule, build_policy({"base_s": 3.0, "cap_s": 48.0})),
                          scenario.schedule)
    assert ATTEMPT_TIMES_MATCH_POLICY in failing(history, scenario)


def test_a_replay_without_validation_fails_no_connect_after_deletion(monkeypatch):
    scenario = get("deleted_mid_retry")
    # a shell that reconnects without asking: every validation answers "valid"
    monkeypatch.setattr(model_module.BlockModel, "_validate", lambda self, unit, command: Validated(ok=True))
    history = from_replay(replay(scenario.schedule, scenario.policy()), scenario.schedule)
    assert NO_CONNECT_AFTER_END in failing(history, scenario)


def test_checker_results_read_well():
    result = checkers.one_live_socket_per_session(flaky_wifi_run().history(), LOOSE)
    assert str(result) == f"PASS {ONE_LIVE_SOCKET}"
    bad = checkers.CheckResult("x", False, ["a", "b"])
    assert str(bad) == "FAIL x\n  - a\n  - b"


def test_violations_are_capped_with_a_count():
    many = [f"v{i}" for i in range(40)]
    result = checkers._result("x", many)
    assert len(result.violations) == checkers.MAX_LISTED + 1 and result.violations[-1] == "… and 15 more"


def test_updates_out_of_seq_order_within_one_request_are_fine_across_requests_not():
    history = flaky_wifi_run().history()
    first, *rest = history.backoffice_updates
    history.backoffice_updates = [replace(first, batch=1)] + [replace(u, batch=2, t=9.0) for u in reversed(rest)]
    assert failing(history) == []
    # request 2 carries seq 3 and 4, request 3 the older seq 2
    history.backoffice_updates = [replace(first, batch=1), *[replace(u, batch=2) for u in rest[1:]],
                                  replace(rest[0], batch=3, t=20.0)]
    assert failing(history) == [BACKOFFICE_COMPLETE_ORDERED]


@pytest.mark.parametrize("policy", [{"preset": "whatsmeow"}, {"max_attempts": "unlimited", "max_elapsed_s": 200.0}])
def test_an_uncapped_policy_is_judged_not_crashed_on(policy):
    # max_attempts is None for a policy without an attempt cap: the checkers compare no count with it
    scenario = replace(get("long_outage"), policy_settings=policy,
                       outcome=Outcome(frozenset({Status.ACTIVE, Status.CONNECTING}), 0, None))
    schedule = scenario.prediction_schedule()
    history = from_replay(replay(schedule, scenario.policy()), schedule)
    results = {r.name: r for r in check_all(history, scenario)}
    assert results[ATTEMPTS_WITHIN_MAX].ok, str(results[ATTEMPTS_WITHIN_MAX])
    assert results[ATTEMPT_TIMES_MATCH_POLICY].ok, str(results[ATTEMPT_TIMES_MATCH_POLICY])
