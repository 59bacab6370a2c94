"""The exact distribution of one backoff delay, for an engine that splits sessions instead of drawing.

Every jitter kind of `service.core.Backoff.delay_s` is one uniform draw, scaled, shifted and
capped: delay = min(ceiling_s, U(low_s, high_s)) — `none` (and attempts before
`jitter_from_attempt`) is the point low_s = high_s. `law` states
that distribution for an attempt (and, for decorrelated jitter, the previous delay); a test
holds it equal to the core's own `delay_s` at every quantile by handing the core a random
stream that returns the chosen quantile, so the two cannot drift apart unnoticed. A jitter
kind this module does not know makes `law` raise `UnknownJitter`, and the histogram engine
does not apply. `DelayLaw.split` turns the law into cells of a time grid: which cell each of
n sessions lands in, drawn exactly (a multinomial over the cells, or n draws when n is
smaller than the number of cells). Pure: numpy only, no clock, no SimPy.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

from service.core import Backoff, Jitter


class UnknownJitter(ValueError):
    """The histogram engine has no exact law for this jitter kind."""


FEW = 24  # below this many sessions, Python's own draws beat numpy's call overhead
SUPPORTED = frozenset({Jitter.NONE, Jitter.FULL, Jitter.EQUAL, Jitter.PROPORTIONAL, Jitter.DECORRELATED})


@dataclass(frozen=True)
class DelayLaw:
    """delay = min(ceiling_s, U(low_s, high_s)); a point mass when low_s == high_s."""

    low_s: float
    high_s: float
    ceiling_s: float = math.inf

    @property
    def is_point(self) -> bool:
        return self.high_s <= self.low_s or self.ceiling_s <= self.low_s

    def quantile(self, q: float) -> float:
        """The delay at quantile q in [0, 1] (what `Backoff.delay_s` gives when its draw is q)."""
        return min(self.ceiling_s, self.low_s + q * (self.high_s - self.low_s))

    def cell_probabilities(self, now_s: float, grid_s: float) -> tuple[int, np.ndarray]:
        """(first cell, p): p[k] = P(now_s + delay in cell first + k), cell j = [j·grid_s, (j+1)·grid_s)."""
        top_s = min(self.high_s, self.ceiling_s)
        first = math.floor((now_s + self.low_s) / grid_s)
        last = math.floor((now_s + top_s) / grid_s)  # the cell of the top delay (and of the cap's atom)
        edges_s = np.arange(first, last + 2, dtype=np.float64) * grid_s - now_s  # delay at each cell edge
        spread = (top_s - self.low_s) / (self.high_s - self.low_s)  # the uncapped part's probability
        cdf = np.clip((edges_s - self.low_s) / (self.high_s - self.low_s), 0.0, spread)
        cdf[0], cdf[-1] = 0.0, spread  # the outer edges enclose the range whatever the rounding
        p = np.diff(cdf)
        p[-1] += 1.0 - spread  # the atom at the cap (decorrelated jitter), in the cap's own cell
        return first, p / p.sum()

    def split(self, n: int, now_s: float, grid_s: float, gen: np.random.Generator, rng: random.Random,
              cells: tuple[int, np.ndarray] | None = None) -> tuple[list[int], list[int]]:
        """(cells, counts) of n sessions drawing a delay at `now_s`; counts > 0, summing to n.

        Exact every way: a multinomial over the law's cells (numpy) when n is at least their
        number, else n uniform draws binned — numpy's for many, `rng`'s for a few (cost
        min(n, cells)). `cells` may pass a cached `cell_probabilities(now_s, grid_s)`.
        """
        if self.is_point:
            return [math.floor((now_s + self.quantile(0.0)) / grid_s)], [n]
        if n <= FEW:
            drawn = Counter(math.floor((now_s + self.quantile(rng.random())) / grid_s) for _ in range(n))
            return list(drawn), list(drawn.values())
        first, p = cells if cells is not None else self.cell_probabilities(now_s, grid_s)
        if n >= len(p):
            counts = gen.multinomial(n, p)
            where = np.flatnonzero(counts)
            return (where + first).tolist(), counts[where].tolist()
        delays_s = np.minimum(self.ceiling_s, self.low_s + gen.random(n) * (self.high_s - self.low_s))
        found, counts = np.unique(np.floor((now_s + delays_s) / grid_s).astype(np.int64), return_counts=True)
        return found.tolist(), counts.tolist()


def law(backoff: Backoff, attempt: int, previous_s: float | None = None) -> DelayLaw:
    """The distribution `backoff.delay_s(attempt, rng, previous_s)` draws from."""
    exp_s = backoff.exponential_s(attempt)
    kind = backoff.jitter
    if kind is Jitter.NONE or attempt < backoff.jitter_from_attempt:
        return DelayLaw(exp_s, exp_s)
    if kind is Jitter.FULL:
        return DelayLaw(0.0, exp_s)
    if kind is Jitter.EQUAL:
        return DelayLaw(exp_s / 2, exp_s)
    if kind is Jitter.PROPORTIONAL:
        centre_s = _uncapped(backoff).exponential_s(attempt) if backoff.cap_after_jitter else exp_s
        if not math.isfinite(centre_s):
            return point(backoff.cap_s)
        ceiling_s = backoff.cap_s if backoff.cap_after_jitter else math.inf
        return DelayLaw(centre_s * (1 - backoff.jitter_ratio), centre_s * (1 + backoff.jitter_ratio), ceiling_s)
    if kind is Jitter.DECORRELATED:
        prev_s = backoff.base_s if previous_s is None else previous_s
        return DelayLaw(backoff.base_s, max(backoff.base_s, prev_s * 3), backoff.cap_s)
    raise UnknownJitter(f"no exact delay law for jitter {kind.value!r}")


@functools.lru_cache(maxsize=64)
def _uncapped(backoff: Backoff) -> Backoff:
    """The same schedule without its cap (proportional jitter capped after the draw centres on it)."""
    return dataclasses.replace(backoff, cap_s=math.inf)


def point(delay_s: float) -> DelayLaw:
    """A delay that is not drawn (reconnect at once, a ban's wait, a resumed timer's time left)."""
    return DelayLaw(delay_s, delay_s)
