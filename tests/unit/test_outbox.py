"""The outbox's pure parts, no Redis: which entries an acknowledgement removes and parameters
checked at construction (B6; the retry waits: test_retry.py). The outbox against real Redis and the
back-office stand-in is tests/integration/test_outbox.py."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.ports import StatusUpdate, new_update
from service.core import Priority, Status
from service.errors import ConfigError, MalformedInput
from service.outbox import _decode_checked, decode_entry, removable_ids
from service.redis_outbox import RedisOutbox


def test_partial_ack_removes_only_each_sessions_acked_prefix() -> None:
    a1, a2, b1, a3, b2 = (new_update(s, Status.ACTIVE) for s in ("a", "a", "b", "a", "b"))
    entries = [("1-0", a1), ("2-0", a2), ("3-0", b1), ("4-0", a3), ("5-0", b2)]
    acked = {a1.update_id, a3.update_id, b1.update_id, b2.update_id}  # a2 not acknowledged
    assert removable_ids(entries, acked) == ["1-0", "3-0", "5-0"]  # a3 waits behind a2


@pytest.mark.parametrize("overrides, name", [
    ({"batch_size": 0}, "batch_size"), ({"flush_interval_s": 0}, "flush_interval_s"),
    ({"retry_base_s": -1}, "retry_base_s"), ({"retry_cap_s": 0.01}, "retry_cap_s"),
])
def test_bad_parameters_are_named(overrides: dict, name: str) -> None:
    options = {"batch_size": 10, "flush_interval_s": 1.0, "retry_base_s": 0.1, "retry_cap_s": 1.0, **overrides}
    with pytest.raises(ConfigError, match=name):
        RedisOutbox(None, None, **options)  # type: ignore[arg-type]


GOOD_FIELDS = {b"update_id": b"u" * 32, b"session_id": b"s1", b"status": b"active", b"priority": b"high",
               b"seq": b"12", b"at_s": b"1700000000.25"}
hostile_values = st.one_of(st.binary(max_size=8), st.text(max_size=8), st.integers(), st.floats(allow_nan=False),
                           st.none(), st.sampled_from([b"active", b"connecting", b"normal", b"\xff", b"7", b"1e3"]))


@given(replaced=st.dictionaries(st.sampled_from([*GOOD_FIELDS, "seq", b"extra", 1]), hostile_values, max_size=4),
       dropped=st.sets(st.sampled_from(list(GOOD_FIELDS)), max_size=2))
def test_an_entry_decodes_as_the_checked_decoding_does(replaced: dict, dropped: set) -> None:
    """The short path Redis's bytes take gives what the checked path gives, for any fields:
    the same update, or the same `MalformedInput` naming what is wrong."""
    fields = {k: v for k, v in {**GOOD_FIELDS, **replaced}.items() if k not in dropped}

    def outcome(decode) -> object:
        try:
            return decode(fields)
        except MalformedInput as err:
            return str(err)
    assert repr(outcome(decode_entry)) == repr(outcome(_decode_checked))  # repr: a NaN at_s equals itself


def test_an_entry_as_redis_returns_it_decodes() -> None:
    assert decode_entry(GOOD_FIELDS) == StatusUpdate("u" * 32, "s1", Status.ACTIVE, Priority.HIGH, 12, 1700000000.25)


def test_a_trusted_update_is_the_update_the_constructor_makes() -> None:
    """`StatusUpdate.trusted` (the decoder's and `new_update`'s fast constructor) makes a value
    equal to the dataclass's own, hashing alike and just as frozen."""
    made = StatusUpdate("u" * 32, "s1", Status.ACTIVE, Priority.HIGH, 12, 1700000000.25)
    trusted = StatusUpdate.trusted("u" * 32, "s1", Status.ACTIVE, Priority.HIGH, 12, 1700000000.25)
    assert trusted == made and hash(trusted) == hash(made) and repr(trusted) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        trusted.seq = 13  # type: ignore[misc]
