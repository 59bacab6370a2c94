"""The agreement checks behind the engine-equality tests: a weighted two-sample KS test, shares."""

from __future__ import annotations

import numpy as np
import pytest

from sim.agreement import kolmogorov_p, ks_two_sample, share_within


def test_identical_samples_have_d_zero_and_disjoint_ones_d_one():
    assert ks_two_sample([1, 2, 3], None, [1, 2, 3], None).statistic == 0.0
    assert ks_two_sample([1, 2], None, [5, 6], None).statistic == 1.0


def test_weights_count_as_repeated_values():
    weighted = ks_two_sample([1.0, 2.0], [3, 1], [1.0, 2.0, 3.0], [1, 1, 2])
    repeated = ks_two_sample([1, 1, 1, 2], None, [1, 2, 3, 3], None)
    assert weighted.statistic == repeated.statistic == pytest.approx(0.5)
    assert (weighted.n_a, weighted.n_b) == (4, 4)


def test_the_p_value_follows_the_kolmogorov_distribution():
    # P(K > 1.358) = 0.05 and P(K > 1.628) = 0.01 for the limiting distribution
    n = 10**9
    assert kolmogorov_p(1.358 / np.sqrt(n / 2), n, n) == pytest.approx(0.05, abs=1e-3)
    assert kolmogorov_p(1.628 / np.sqrt(n / 2), n, n) == pytest.approx(0.01, abs=1e-3)
    assert ks_two_sample([1.0], None, [1.0], None).critical(0.05) == pytest.approx(1.358 * np.sqrt(2), rel=1e-3)


def test_same_law_passes_and_a_shifted_law_fails_at_100_000():
    gen = np.random.default_rng(3)
    a, b = gen.uniform(0, 30, 100_000), gen.uniform(0, 30, 100_000)
    assert ks_two_sample(a, None, b, None).p_value > 0.001
    assert ks_two_sample(a, None, b + 0.3, None).p_value < 0.001  # a 1 % shift of the range is seen


def test_agrees_with_scipy_where_scipy_is_installed():
    stats = pytest.importorskip("scipy.stats")
    gen = np.random.default_rng(4)
    a, b = gen.exponential(1.0, 3_000), gen.exponential(1.1, 2_000)
    ours = ks_two_sample(a, None, b, None)
    theirs = stats.ks_2samp(a, b, method="asymp")
    assert ours.statistic == pytest.approx(theirs.statistic)
    assert ours.p_value == pytest.approx(theirs.pvalue, rel=0.05)


def test_shares_agree_within_standard_errors_and_zero_against_zero_agrees():
    assert share_within(500, 10_000, 520, 10_000)[0]
    assert not share_within(500, 10_000, 700, 10_000)[0]
    assert share_within(0, 100_000, 0, 100_000)[0]
    assert share_within(0, 100_000, 1, 100_000)[0]
