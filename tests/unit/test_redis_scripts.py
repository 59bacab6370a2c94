"""Replies of the fenced-write script, read as hostile input: anything but the documented
shape is a `MalformedInput("redis", ...)`, never an unhandled TypeError or a guessed seq."""

import pytest

from service.errors import MalformedInput
from service.store import WriteReply, parse_write_reply


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
