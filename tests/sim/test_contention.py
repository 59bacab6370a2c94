"""The article's contention model reproduces its ordering of backoff kinds."""

from __future__ import annotations

import random

import pytest

from sim.cli import main
from sim.contention import KINDS, measure, simulate

pytestmark = pytest.mark.sim


@pytest.fixture(scope="module")
def rows():
    return {kind: measure(60, kind, runs=8, seed=3) for kind in KINDS}


def test_plain_exponential_takes_far_the_longest(rows):
    slowest_other = max(rows[k]["completion_ms"] for k in KINDS if k != "none")
    assert rows["none"]["completion_ms"] > 3 * slowest_other


def test_full_and_equal_jitter_make_the_fewest_calls(rows):
    fewest_two = sorted(KINDS, key=lambda k: rows[k]["calls"])[:2]
    assert set(fewest_two) == {"full", "equal"}


def test_no_backoff_makes_the_most_calls(rows):
    assert max(KINDS, key=lambda k: rows[k]["calls"]) == "no_backoff"


def test_one_client_writes_once():
    done_s, calls = simulate(1, "full", random.Random(0))
    assert calls == 1 and 0.02 < done_s < 0.08  # four one-way messages of ~10 ms


def test_every_client_succeeds_exactly_once_so_calls_are_at_least_clients():
    for kind in KINDS:
        _, calls = simulate(20, kind, random.Random(1))
        assert calls >= 20


def test_cli_prints_the_requested_kind(capsys):
    assert main(["contention", "--clients", "30", "--jitter", "full", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "full jitter" in out and "no backoff" not in out
