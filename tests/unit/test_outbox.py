"""The outbox's pure parts, no Redis: which entries an acknowledgement removes and parameters
checked at construction (B6; the retry waits: test_retry.py). The outbox against real Redis and the
back-office stand-in is tests/integration/test_outbox.py."""

from __future__ import annotations

import pytest

from service.ports import new_update
from service.core import Status
from service.errors import ConfigError
from service.outbox import removable_ids
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
