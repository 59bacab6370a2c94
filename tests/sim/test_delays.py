"""The delay laws the histogram engine splits by: equal to the core's own draws, and split exactly."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pytest

from service.core import Backoff
from sim import delays


class Quantile(random.Random):
    """A random stream whose every uniform draw is quantile q of its interval."""

    def __init__(self, q: float) -> None:
        super().__init__(0)
        self.q = q

    def random(self) -> float:
        return self.q

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.q


SHAPES = [dict(), dict(cap_after_jitter=True, jitter_ratio=0.2, factor=1.6, base_s=1.0, cap_s=20.0),
          dict(jitter_from_attempt=3), dict(schedule="linear", step_s=2.0, cap_s=float("inf"))]


@pytest.mark.parametrize("jitter", sorted(j.value for j in delays.SUPPORTED))
@pytest.mark.parametrize("shape", SHAPES, ids=["note", "grpc-like", "jitter-from-3", "linear"])
@pytest.mark.parametrize("attempt", [1, 2, 5, 9])
@pytest.mark.parametrize("previous_s", [None, 0.5, 2.0, 7.3, 40.0])
def test_the_law_gives_the_cores_delay_at_every_quantile(jitter, shape, attempt, previous_s):
    backoff = Backoff(**{"base_s": 2.0, "factor": 2.0, "cap_s": 32.0, "max_attempts": 9, **shape}, jitter=jitter)
    law = delays.law(backoff, attempt, previous_s)
    for q in np.linspace(0.0, 1.0, 41):
        core_s = backoff.delay_s(attempt, Quantile(q), previous_s)
        assert law.quantile(q) == pytest.approx(core_s, rel=1e-12, abs=1e-12)


def test_a_jitter_without_a_law_is_refused():
    fake = SimpleNamespace(jitter=SimpleNamespace(value="socketio"), exponential_s=lambda n: 1.0,
                           jitter_from_attempt=1)
    with pytest.raises(delays.UnknownJitter, match="socketio"):
        delays.law(fake, 1)


def test_cell_probabilities_sum_to_one_and_hold_the_atom_at_the_cap():
    law = delays.DelayLaw(2.0, 60.0, 32.0)  # decorrelated after a 20 s delay: capped at 32 s
    first, p = law.cell_probabilities(now_s=1.0, grid_s=0.01)
    assert p.sum() == pytest.approx(1.0)
    assert first == 300 and len(p) == 3_001  # cells 3.00 s … 33.00 s
    assert p[-1] == pytest.approx((60 - 32) / 58)  # P(delay = cap) sits in the cap's cell
    assert p[1] == pytest.approx(0.01 / 58)


@pytest.mark.parametrize("n", [5, 500, 50_000])
def test_a_split_keeps_every_session_and_follows_the_law(n):
    law = delays.DelayLaw(0.0, 4.0)
    gen, rng = np.random.default_rng(1), random.Random(1)
    totals = np.zeros(401)
    for _ in range(max(1, 200_000 // n)):
        cells, counts = law.split(n, 0.0, 0.01, gen, rng)
        assert sum(counts) == n and min(counts) > 0 and len(set(cells)) == len(cells)
        np.add.at(totals, cells, counts)
    _, p = law.cell_probabilities(0.0, 0.01)
    expected = p * totals.sum()
    assert totals[expected == 0].sum() == 0
    used = expected > 0
    chi2 = float(((totals[used] - expected[used]) ** 2 / expected[used]).sum())
    assert chi2 < 400 + 5 * math.sqrt(2 * 400), chi2  # 399 degrees of freedom: far inside 5 sigma


def test_a_point_delay_lands_in_one_cell():
    cells, counts = delays.point(2.0).split(7, 1.0, 0.01, np.random.default_rng(0), random.Random(0))
    assert (cells, counts) == ([300], [7])

