"""Each named policy preset pinned against the definition its source gives (README table)."""

import math
import random

import pytest

from service.core import Action, PolicyError, SessionMachine, build_policy
from service.core.events import (
    BackoffElapsed, Drop, Emit, ScheduleReconnect, Start, StartFailed, Validated,
)
from service.core.presets import PRESETS


def drive(policy, failures: int, seed: int = 1) -> tuple[list[float], bool]:
    """Fail `failures` connects in a row, 0.001 s apart; (every counted delay, dropped?)."""
    machine = SessionMachine("s", policy, random.Random(seed))
    machine.handle(Start(), 0.0)
    delays, now = [], 0.0
    for _ in range(failures):
        commands = machine.handle(StartFailed(reason="refused"), now)
        if any(isinstance(c, Drop) for c in commands):
            return delays, True
        [scheduled] = [c for c in commands if isinstance(c, ScheduleReconnect)]
        delays.append(scheduled.delay_s)
        now += scheduled.delay_s
        machine.handle(BackoffElapsed(), now)
        machine.handle(Validated(ok=True), now)
    return delays, False


def test_note_is_the_default_2_4_8_16_32_then_inactive():
    policy = build_policy({"preset": "note"})
    assert policy == build_policy()
    assert drive(policy, 10) == ([2, 4, 8, 16, 32], True)


def test_whatsmeow_waits_errors_times_2_s_with_no_cap_and_never_gives_up():
    # client.go: autoReconnectDelay := AutoReconnectErrors * 2 s; AutoReconnectErrors++ afterwards
    delays, dropped = drive(build_policy({"preset": "whatsmeow"}), 200)
    assert not dropped
    assert delays == [2.0 * errors for errors in range(200)]
    assert build_policy({"preset": "whatsmeow"}).codes.name == "whatsmeow"


def test_baileys_readme_reconnects_at_once_on_every_close_but_401():
    policy = build_policy({"preset": "baileys_readme"})
    delays, dropped = drive(policy, 500)
    assert not dropped and delays == [0.0] * 500
    assert policy.codes.action_for(401) is Action.TERMINAL  # DisconnectReason.loggedOut
    for code in (None, 403, 405, 408, 411, 428, 440, 500, 503, 515):
        assert policy.codes.action_for(code) is Action.RECONNECT


def test_grpc_follows_connection_backoff_md():
    # current_backoff = 1 s; then min(current * 1.6, 120) ± UniformRandom(-0.2, 0.2) * current
    policy = build_policy({"preset": "grpc"})
    assert policy.timeouts.connect_timeout_s == 20.0  # MIN_CONNECT_TIMEOUT
    seen: dict[int, list[float]] = {}
    for seed in range(200):
        delays, dropped = drive(policy, 20, seed)
        assert not dropped
        for attempt, delay_s in enumerate(delays, start=1):
            seen.setdefault(attempt, []).append(delay_s)
    assert seen[1] == [1.0] * 200  # the first deadline is INITIAL_BACKOFF, un-jittered
    current_s = 1.0
    for attempt in range(2, 21):
        current_s = min(current_s * 1.6, 120.0)
        lo, hi = min(seen[attempt]), max(seen[attempt])
        assert current_s * 0.8 <= lo < current_s * 0.85 and current_s * 1.15 < hi <= current_s * 1.2


def test_socketio_follows_backo2_with_the_manager_defaults():
    # ms = 1000 * 2^attempts; ms ± floor(rand * 0.5 * ms); min(ms, 5000)
    policy = build_policy({"preset": "socketio"})
    seen: dict[int, list[float]] = {}
    for seed in range(300):
        delays, dropped = drive(policy, 8, seed)
        assert not dropped
        for attempt, delay_s in enumerate(delays, start=1):
            seen.setdefault(attempt, []).append(delay_s)
    for attempt in range(1, 9):
        ms = 1000 * 2 ** (attempt - 1)
        low_s, high_s = min(ms * 0.5, 5000) / 1000, min(ms * 1.5, 5000) / 1000
        assert all(low_s <= d <= high_s for d in seen[attempt])
        assert min(seen[attempt]) < low_s + 0.1 * (high_s - low_s) or low_s == high_s
    assert seen[3].count(5.0) > 0 and set(seen[5]) == {5.0}  # 4 s ± 2 s is capped at 5 s


def test_signalr_waits_0_2_10_30_then_stops():
    assert drive(build_policy({"preset": "signalr"}), 10) == ([0.0, 2.0, 10.0, 30.0], True)


def test_every_preset_is_pinned_here():
    tested = {"note", "whatsmeow", "baileys_readme", "grpc", "socketio", "signalr"}
    assert set(PRESETS) == tested


def test_keys_beside_a_preset_override_it():
    policy = build_policy({"preset": "grpc", "max_attempts": 6, "max_elapsed_s": 60})
    assert policy.backoff.max_attempts == 6 and policy.backoff.max_elapsed_s == 60
    assert policy.backoff.factor == 1.6


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_through_its_mapping(name):
    policy = build_policy({"preset": name})
    assert build_policy(policy.to_mapping()) == policy


def test_deadline_stops_before_an_attempt_that_would_start_past_it():
    policy = build_policy({"max_elapsed_s": 30})
    assert policy.backoff.schedule_s() == [2, 4, 8, 16]  # attempt 5 would start at 62 s
    assert policy.backoff.give_up_after_s() == 30
    assert drive(policy, 10) == ([2, 4, 8, 16], True)
    assert build_policy({"max_elapsed_s": 100, "max_attempts": 3}).backoff.schedule_s() == [2, 4, 8]


def test_give_up_by_deadline_says_which_limit_ran_out():
    machine = SessionMachine("s", build_policy({"preset": "whatsmeow", "max_elapsed_s": 5}))
    machine.handle(Start(), 0.0)
    records = [c.record for c in machine.handle(StartFailed(), 0.0) if isinstance(c, Emit)]
    assert [r.event for r in records][-1] == "reconnect_scheduled"
    for now in (0.0, 0.0):
        machine.handle(BackoffElapsed(), now)
        machine.handle(Validated(ok=True), now)
        commands = machine.handle(StartFailed(), now + 2.0)
    # attempt 2 starts at 2 + 2 = 4 s; attempt 3 would start at 2 + 4 = 6 s, past 5 s
    give_up = [c.record for c in commands if isinstance(c, Emit) and c.record.event == "max_attempts_reached"]
    assert give_up and give_up[0].detail["limit"] == "max_elapsed_s"
    assert math.isinf(build_policy({"preset": "whatsmeow"}).backoff.give_up_after_s())


@pytest.mark.parametrize(("settings", "fragment"), [
    ({"preset": "kafka"}, "unknown policy preset 'kafka'; choose one of: note, whatsmeow"),
    ({"max_elapsed_s": 0}, "max_elapsed_s must be > 0"),
    ({"max_attempts": "lots"}, "max_attempts must be a whole number (or 'unlimited')"),
    ({"schedule": "steps"}, "schedule 'steps' needs steps_s"),
    ({"schedule": "spiral"}, "unknown schedule 'spiral'"),
    ({"jitter_ratio": 1.5}, "jitter_ratio must be in (0, 1]"),
    ({"schedule": "steps", "steps_s": [0, -1]}, "steps_s entries must be >= 0"),
    ({"cap_s": float("nan")}, "cap_s must be finite"),
])
def test_bad_preset_settings_raise_a_clear_error(settings, fragment):
    with pytest.raises(PolicyError) as excinfo:
        build_policy(settings)
    assert fragment in str(excinfo.value)
