"""Replies of the fenced-write script, read as hostile input: anything but the documented
shape is a `MalformedInput("redis", ...)`, never an unhandled TypeError or a guessed seq."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.errors import MalformedInput
from service.store import WriteReply, accepted_seq, parse_write_reply


@pytest.mark.parametrize("reply", [
    None, b"OK", 1, [], [2, 5], [True, 5], [1], [1, "7"], [1, b"7"], [1, None], [1, 2.5], [1, False],
    {"ok": 1}, "1",
])
def test_a_reply_of_any_other_shape_is_malformed(reply) -> None:
    with pytest.raises(MalformedInput, match="fenced write"):
        parse_write_reply(reply)


def test_accepted_refused_and_notes() -> None:
    assert parse_write_reply([1, 7]) == WriteReply(True, 7)
    assert parse_write_reply([1, 0, b"rl:seq:s was a hash", "x"]) == WriteReply(True, 0, notes=("rl:seq:s was a hash", "x"))
    assert parse_write_reply([0, b"12"]) == WriteReply(False, token_now="12")
    assert parse_write_reply([0]) == WriteReply(False, token_now="")
    assert parse_write_reply([1, 3, b"\xff"]).notes == ("\ufffd",)


REPLY_ITEMS = st.one_of(st.integers(-2, 2**63), st.booleans(), st.none(), st.binary(max_size=8), st.text(max_size=8),
                        st.floats(allow_nan=False))


SHAPED = st.builds(lambda head, seq, rest: [head, seq, *rest], st.sampled_from([1, 0, True, 1.0, "1", b"1", 2]),
                   st.one_of(st.integers(-2, 9), REPLY_ITEMS), st.lists(REPLY_ITEMS, max_size=1))


@settings(max_examples=500)
@given(st.one_of(SHAPED, st.lists(REPLY_ITEMS, max_size=4), REPLY_ITEMS))
def test_the_short_read_of_an_accepted_reply_agrees_with_the_checked_one(reply) -> None:
    """`accepted_seq` (the store's fast path) answers only for a reply `parse_write_reply` reads as
    accepted with nothing replaced, with the same seq (None: the store reads it the checked way)."""
    seq = accepted_seq(reply)
    try:
        parsed: WriteReply | None = parse_write_reply(reply)
    except MalformedInput:
        parsed = None
    if seq is not None:
        assert parsed == WriteReply(True, seq)


@pytest.mark.parametrize("reply", [[1, 7], [1, 0]])
def test_the_common_reply_is_read_short(reply) -> None:
    assert accepted_seq(reply) == reply[1]
    assert accepted_seq([True, reply[1]]) is None and accepted_seq([1, reply[1], b"note"]) is None
