"""`service.retry`: the one retry wait of the service (status writes, validation reads, outbox
batches) — capped exponential from the core's `Backoff`, starting over after a success."""

from __future__ import annotations

import pytest

from service.errors import ConfigError
from service.retry import RetryPolicy, Retrying


def test_waits_are_capped_exponential() -> None:
    assert [RetryPolicy(0.5, 4.0).delay_s(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [RetryPolicy(0.1, 1.0, factor=3.0).delay_s(n) for n in range(1, 4)] == pytest.approx([0.1, 0.3, 0.9])


def test_failures_in_a_row_grow_the_wait_and_a_success_starts_over() -> None:
    retry = Retrying(RetryPolicy(0.1, 0.3))
    assert [retry.failed() for _ in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])
    assert retry.failures == 4
    retry.succeeded()
    assert retry.failures == 0 and retry.failed() == pytest.approx(0.1)


async def test_wait_sleeps_the_last_wait() -> None:
    retry = Retrying(RetryPolicy(0.001, 0.001))
    retry.failed()
    await retry.wait()  # returns: a real sleep of 1 ms


@pytest.mark.parametrize("base_s, cap_s, match", [(0.0, 1.0, "base_s"), (-1.0, 1.0, "base_s"),
                                                   (1.0, 0.5, "cap_s"), (float("nan"), 1.0, "base_s")])
def test_bad_values_name_the_retry_and_the_value(base_s: float, cap_s: float, match: str) -> None:
    with pytest.raises(ConfigError, match=f"status write retry: .*{match}"):
        RetryPolicy(base_s, cap_s, what="status write retry")
