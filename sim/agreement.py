"""Do two runs agree within sampling error? The checks that hold the engines equal.

`ks_two_sample` is the two-sample Kolmogorov–Smirnov test on weighted samples (a run's
recovery times come as values with session counts): the statistic D = sup |F_a − F_b| over
both samples' values, exact for ties, and its asymptotic p-value (the Kolmogorov
distribution with Stephens' small-sample correction, as Numerical Recipes' `probks`).
Weights are session counts, so the sample sizes are their sums. scipy's `ks_2samp` takes
no weights, hence this small implementation; a test checks it against scipy where scipy
is installed. `share_within` compares two proportions in standard errors. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KsResult:
    statistic: float  # D = sup |F_a - F_b|
    p_value: float
    n_a: int
    n_b: int

    def critical(self, alpha: float) -> float:
        """The D above which the test rejects equality at significance `alpha` (asymptotic)."""
        return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((self.n_a + self.n_b) / (self.n_a * self.n_b))


def ks_two_sample(a_values: Sequence[float], a_weights: Sequence[int] | None,
                  b_values: Sequence[float], b_weights: Sequence[int] | None) -> KsResult:
    """Two-sample KS test of weighted samples (weights None: each value counts once)."""
    a_cdf, n_a = _cdf(a_values, a_weights)
    b_cdf, n_b = _cdf(b_values, b_weights)
    if n_a == 0 or n_b == 0:
        raise ValueError("the KS test needs two non-empty samples")
    grid = np.union1d(a_cdf[0], b_cdf[0])
    gap = np.abs(_at(a_cdf, grid) - _at(b_cdf, grid))
    statistic = float(gap.max())
    return KsResult(statistic, kolmogorov_p(statistic, n_a, n_b), n_a, n_b)


def kolmogorov_p(statistic: float, n_a: int, n_b: int) -> float:
    """P(D ≥ statistic) under equal distributions, asymptotically (Stephens' correction)."""
    n_eff = n_a * n_b / (n_a + n_b)
    root = math.sqrt(n_eff)
    lam = (root + 0.12 + 0.11 / root) * statistic
    if lam < 0.2:
        return 1.0
    total, sign = 0.0, 1.0
    for j in range(1, 101):
        term = sign * 2.0 * math.exp(-2.0 * j * j * lam * lam)
        total += term
        if abs(term) < 1e-12 * max(total, 1e-300):
            break
        sign = -sign
    return min(1.0, max(0.0, total))


def share_within(a_count: int, n_a: int, b_count: int, n_b: int, *, errors: float = 3.0) -> tuple[bool, float, float]:
    """(agree, difference, allowed): |p_a − p_b| ≤ errors × standard error of the difference.

    The pooled share's variance has a floor of one session in the larger sample, so two runs
    that both say 0 % (or 100 %) agree, and one that says 0.001 % against 0 % does too.
    """
    pooled = (a_count + b_count) / (n_a + n_b)
    variance = max(pooled * (1 - pooled), 1.0 / max(n_a, n_b))
    allowed = errors * math.sqrt(variance * (1 / n_a + 1 / n_b))
    difference = abs(a_count / n_a - b_count / n_b)
    return difference <= allowed, difference, allowed


def _cdf(values: Sequence[float], weights: Sequence[int] | None) -> tuple[tuple[np.ndarray, np.ndarray], int]:
    x = np.asarray(values, dtype=float)
    w = np.ones(len(x), dtype=np.int64) if weights is None else np.asarray(weights, dtype=np.int64)
    order = np.argsort(x, kind="stable")
    x, w = x[order], w[order]
    unique, first = np.unique(x, return_index=True)
    cumulative = np.cumsum(w)
    total = int(cumulative[-1]) if len(cumulative) else 0
    last = np.append(first[1:] - 1, len(x) - 1) if len(x) else first
    return (unique, cumulative[last] / max(total, 1)), total


def _at(cdf: tuple[np.ndarray, np.ndarray], grid: np.ndarray) -> np.ndarray:
    """The step CDF (right-continuous) evaluated at every point of `grid`."""
    values, fractions = cdf
    index = np.searchsorted(values, grid, side="right") - 1
    return np.where(index >= 0, fractions[np.clip(index, 0, None)], 0.0)
