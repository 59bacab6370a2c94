"""The /healthz verdicts as pure functions: bounds derived from the policy, stuck and stalled."""

from types import SimpleNamespace

from service.core import State, build_policy
from service.runtime.health import HealthBounds, derive_bounds, judge, stuck_sessions


def test_bounds_are_twice_the_sum_of_each_steps_own_bounds_unless_given():
    policy = build_policy({"connect_timeout_s": 20.0})
    bounds = derive_bounds(policy, redis_timeout_s=5, backoffice_budget_s=1, validate_retry_cap_s=5,
                           close_timeout_s=5, backoffice_timeout_s=5, outbox_retry_cap_s=30,
                           outbox_flush_interval_s=0.5)
    assert bounds == HealthBounds(stuck_after_s=2 * (5 + 1 + 5 + 20 + 1 + 5), outbox_stall_s=2 * (30 + 0.5 + 5))
    given = derive_bounds(policy, redis_timeout_s=5, backoffice_budget_s=1, validate_retry_cap_s=5,
                          close_timeout_s=5, backoffice_timeout_s=5, outbox_retry_cap_s=30,
                          outbox_flush_interval_s=0.5, stuck_after_s=3, outbox_stall_s=4)
    assert given == HealthBounds(3.0, 4.0)


def runner(sid, state, since):
    return SimpleNamespace(session_id=sid, machine=SimpleNamespace(state=state), state_since=since)


def test_only_bounded_states_past_the_bound_are_stuck():
    runners = [runner("a", State.VALIDATING, 0.0), runner("b", State.CONNECTING, 9.5),
               runner("c", State.BACKOFF, 0.0), runner("d", State.OPEN, 0.0), runner("e", State.CONNECTING, 4.0)]
    assert stuck_sessions(runners, now_s=10.0, bound_s=5.0) == ["a", "e"]


def test_stalled_only_while_the_back_office_answers():
    bounds = HealthBounds(60.0, 10.0)
    assert judge({"ok": True}, stuck=[], bounds=bounds, outbox_age_s=11.0, status_reply_age_s=1.0)["ok"] is False
    assert judge({"ok": True}, stuck=[], bounds=bounds, outbox_age_s=11.0, status_reply_age_s=None)["ok"] is True
    assert judge({"ok": True}, stuck=[], bounds=bounds, outbox_age_s=11.0, status_reply_age_s=30.0)["ok"] is True
    assert judge({"ok": True}, stuck=[], bounds=bounds, outbox_age_s=9.0, status_reply_age_s=1.0)["ok"] is True
    report = judge({"ok": True}, stuck=["x", "y"], bounds=bounds, outbox_age_s=0.0, status_reply_age_s=None)
    assert report["ok"] is False and report["stuck"] == 2 and report["stuck_sample"] == ["x", "y"]
    assert len(report["reasons"]) == 1
