"""Checkers refuse a history in which an event kind they count never appears: a renamed event
(in the gateway or in the core's vocabulary) fails them instead of leaving nothing to judge."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chaos import checkers
from chaos.checkers import ATTEMPT_TIMES_MATCH_POLICY, ATTEMPTS_WITHIN_MAX, RECONNECTS_AS_EXPECTED, check_all
from chaos.history import History
from service.core import LogEvent
from tests.unit.test_chaos_checkers import LOOSE, S1, flaky_wifi_run


def renamed(history: History, old: str, new: str) -> History:
    return replace(history, timeline=[replace(r, event=new) if r.event == old else r for r in history.timeline])


def failed(history: History, scenario=S1) -> dict[str, list[str]]:
    return {r.name: r.violations for r in check_all(history, scenario) if not r.ok}


def test_the_hand_built_run_in_wire_strings_holds_every_kind_the_checkers_count():
    # the records are spelled as the contract spells them, not through LogEvent: if a member's
    # value changed, this run would lack the renamed kind and every white-box check would refuse it
    assert failed(flaky_wifi_run().history()) == {}


@pytest.mark.parametrize("kind", ["reconnect_scheduled", "reconnect_running"])
def test_a_renamed_timer_event_fails_the_checks_that_used_to_pass_on_nothing(kind):
    found = failed(renamed(flaky_wifi_run().history(), kind, "reconnect_planned"))
    # attempt times used to pass: with no `reconnect_scheduled` it judged no backoff at all
    assert ATTEMPT_TIMES_MATCH_POLICY in found and ATTEMPTS_WITHIN_MAX in found
    message = found[ATTEMPT_TIMES_MATCH_POLICY][0]
    assert f"no `{kind}` record at all" in message and "kinds no checker knows: reconnect_planned" in message


def test_a_renamed_start_fails_every_white_box_check():
    found = failed(renamed(flaky_wifi_run().history(), "session_starting", "session_dialling"))
    assert {ATTEMPTS_WITHIN_MAX, ATTEMPT_TIMES_MATCH_POLICY, RECONNECTS_AS_EXPECTED,
            checkers.NO_CONNECT_AFTER_END, checkers.BACKOFFICE_COMPLETE_ORDERED} <= set(found)
    assert any("`session_starting`" in v for v in found[checkers.NO_CONNECT_AFTER_END])


def test_an_episode_needs_a_close_or_a_resume():
    history = renamed(flaky_wifi_run().history(), "session_closed", "session_shut")
    violations = checkers.attempts_per_episode_within_max(history, S1).violations
    assert violations == ["the timeline has no `session_closed` or `session_resumed` record at all, so this check "
                          "would judge nothing (an event renamed or never written?; it holds kinds no checker "
                          "knows: session_shut)"]


def test_a_run_without_an_expected_reconnect_needs_no_reconnect_events():
    run = flaky_wifi_run()
    run.records = [r for r in run.records if r.t < 1.0]  # started and opened; nothing went wrong
    history = run.history(faults=[])
    assert LOOSE.expected.reconnects_min == 0
    assert failed(history, LOOSE) == {}
    assert RECONNECTS_AS_EXPECTED in failed(history, S1)  # S1 expects reconnects: their events must be there


def test_a_history_without_a_timeline_is_not_refused():
    history = replace(flaky_wifi_run().history(), timeline=[])
    assert failed(history) == {}


def test_every_kind_the_checkers_require_is_a_core_event():
    from chaos.verdicts import RECONNECTS, STARTS

    assert set().union(*STARTS, *RECONNECTS) <= set(LogEvent)
