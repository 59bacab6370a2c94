"""Backoff numbers, jitter bounds, close-code tables and policy validation."""

import random

import pytest

from service.core import Action, Backoff, Jitter, PolicyError, build_policy, code_table
from service.core.codes import BAILEYS, ORIGINAL, TABLES, WHATSMEOW, build_code_table


def test_default_delays_are_the_notes():
    assert Backoff().schedule_s() == [2, 4, 8, 16, 32]
    assert Backoff().give_up_after_s() == 62


def test_cap_applies_past_the_fifth_attempt():
    backoff = Backoff(max_attempts=8)
    assert backoff.schedule_s() == [2, 4, 8, 16, 32, 32, 32, 32]


def test_huge_attempt_numbers_do_not_overflow():
    assert Backoff(factor=10).exponential_s(100_000) == 32


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"base_s": -1}, "base_s must be > 0"),
        ({"base_s": 0}, "base_s must be > 0"),
        ({"factor": 0.5}, "factor must be >= 1"),
        ({"cap_s": 1}, "cap_s (1) must be >= base_s"),
        ({"max_attempts": 0}, "max_attempts must be >= 1"),
        ({"max_attempts": 2.5}, "max_attempts must be a whole number"),
        ({"jitter": "sometimes"}, "unknown jitter 'sometimes'"),
        ({"codes": "telegram"}, "unknown close-code table 'telegram'"),
        ({"codes": {"codes": {"4000": "explode"}}}, "unknown action 'explode'"),
        ({"bsae_s": 2}, "unknown policy setting(s) ['bsae_s']"),
        ({"base_s": float("nan")}, "base_s must be finite"),
        ({"base_s": "2"}, "base_s must be a number"),
        ({"connect_timeout_s": 0}, "connect_timeout_s must be > 0"),
        ({"time_scale": 0}, "time_scale must be > 0"),
    ],
)
def test_invalid_settings_raise_a_clear_error(settings, fragment):
    with pytest.raises(PolicyError) as excinfo:
        build_policy(settings)
    assert fragment in str(excinfo.value)


def test_scaled_policy_scales_every_duration():
    policy = build_policy({"time_scale": 0.1})
    assert policy.backoff.schedule_s() == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2])
    assert policy.timeouts.connect_timeout_s == pytest.approx(2.0)
    assert policy.backoff.max_attempts == 5


def test_policy_round_trips_through_its_mapping():
    policy = build_policy({"base_s": 1, "jitter": "full", "codes": "baileys", "max_attempts": 7})
    assert build_policy(policy.to_mapping()) == policy


@pytest.mark.parametrize("jitter", list(Jitter))
def test_jittered_delays_stay_within_their_formula(jitter):
    backoff = Backoff(jitter=jitter)
    rng = random.Random(7)
    previous_s = None
    for attempt in range(1, 6):
        for _ in range(200):
            delay_s = backoff.delay_s(attempt, rng, previous_s)
            lo, hi = backoff.bounds_s(attempt, previous_s)
            assert lo <= delay_s <= hi
        previous_s = delay_s


def test_full_jitter_actually_varies():
    rng = random.Random(1)
    delays = {Backoff(jitter=Jitter.FULL).delay_s(3, rng) for _ in range(20)}
    assert len(delays) == 20


def test_original_table_is_the_default_and_keeps_the_notes_codes():
    assert build_policy().codes is ORIGINAL
    assert sorted(ORIGINAL.terminal_codes()) == [401, 405, 428]
    assert ORIGINAL.action_for(None) is Action.RECONNECT
    assert ORIGINAL.action_for(500) is Action.RECONNECT


def test_baileys_table_follows_disconnect_reason():
    assert sorted(BAILEYS.terminal_codes()) == [401, 403, 405, 411, 440]
    assert BAILEYS.action_for(428) is Action.RECONNECT  # connection closed, not logged out
    assert BAILEYS.action_for(515) is Action.RECONNECT_NOW
    for code in (408, 500, 503, None):
        assert BAILEYS.action_for(code) is Action.RECONNECT


def test_whatsmeow_table_maps_events_and_reasons():
    assert WHATSMEOW.action_for("StreamReplaced") is Action.TERMINAL
    assert WHATSMEOW.action_for("LoggedOut") is Action.TERMINAL
    assert WHATSMEOW.action_for("TemporaryBan") is Action.WAIT_UNTIL
    assert WHATSMEOW.action_for("ConnectFailure:503") is Action.RECONNECT
    assert WHATSMEOW.action_for("ConnectFailure:401") is Action.TERMINAL
    assert WHATSMEOW.action_for("Disconnected") is Action.RECONNECT


def test_custom_table_extends_a_base_and_parses_toml_style_keys():
    table = build_code_table({"name": "ours", "base": "baileys", "codes": {"4000": "terminal", "440": "reconnect"}})
    assert table.action_for(4000) is Action.TERMINAL
    assert table.action_for(440) is Action.RECONNECT
    assert table.action_for(401) is Action.TERMINAL


def test_unknown_table_name_lists_the_known_ones():
    with pytest.raises(PolicyError, match="baileys, baileys_readme, original, whatsmeow"):
        code_table("nope")
    assert set(TABLES) == {"original", "baileys", "whatsmeow", "baileys_readme"}
