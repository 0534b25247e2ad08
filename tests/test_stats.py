"""Intervals, tests, power and multiplicity: coverage by simulation, and hand-computed answers."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.stats.intervals import (
    BCA_MIN_N,
    benjamini_hochberg,
    diff_interval,
    holm,
    interval,
    min_detectable,
    power_one_sided,
    power_two_sided,
    replicates_needed,
    t_pvalue,
)

SIMS = 4000  # Monte-Carlo standard error of a coverage near 0.95: 0.0034, so 0.93 is 6 SE below


def covered(low, high, mu) -> float:
    return float(np.mean((low <= mu) & (mu <= high)))


def t_interval_coverage(x: np.ndarray, mu: float) -> float:
    """Coverage of `interval` over the rows of x, computed row by row through the public function."""
    ivs = [interval(row) for row in x]
    assert {iv.method for iv in ivs} == {"student-t"}
    return covered(np.array([iv.low for iv in ivs]), np.array([iv.high for iv in ivs]), mu)


@pytest.mark.parametrize("n", [5, 10, 20])
def test_interval_holds_its_coverage_on_normal_and_skewed_data(n):
    rng = np.random.default_rng(n)
    assert t_interval_coverage(rng.normal(0.0, 1.0, size=(SIMS, n)), 0.0) >= 0.93
    sigma = 0.25  # lognormal(0, 0.25): skewness 0.78
    assert t_interval_coverage(rng.lognormal(0.0, sigma, size=(SIMS, n)), math.exp(sigma**2 / 2)) >= 0.93


def test_percentile_bootstrap_fails_the_same_test_at_n5():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(SIMS, 5))
    res = sps.bootstrap((x,), np.mean, axis=-1, method="percentile", n_resamples=1000, rng=rng)
    cov = covered(res.confidence_interval.low, res.confidence_interval.high, 0.0)
    assert cov < 0.88  # about 0.84: the interval the harness used before
    assert t_interval_coverage(x, 0.0) >= 0.93  # the same samples, Student-t


def test_bca_is_used_from_its_threshold_and_covers_there():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(SIMS, BCA_MIN_N))
    assert interval(x[0]).method == "bca-bootstrap" and interval(x[0, : BCA_MIN_N - 1]).method == "student-t"
    res = sps.bootstrap((x,), np.mean, axis=-1, method="BCa", n_resamples=2000, batch=100, rng=rng)
    assert (
        covered(res.confidence_interval.low, res.confidence_interval.high, 0.0) >= 0.93
    )  # 0.949 measured at 4,000 samples


def test_interval_hand_computed():
    iv = interval([1.0, 2.0, 3.0])
    half = sps.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert iv.estimate == 2.0 and iv.n == 3 and iv.method == "student-t"
    assert math.isclose(iv.low, 2 - half) and math.isclose(iv.high, 2 + half)
    same = interval([0.25, 0.25, math.nan, 0.25])
    assert (same.estimate, same.low, same.high, same.n) == (0.25, 0.25, 0.25, 3)
    one = interval([4.0])
    assert one.estimate == 4.0 and math.isnan(one.low) and one.n == 1
    d = diff_interval([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert d.estimate == 1.0 and d.method == "welch-t"
    assert math.isclose(d.high - d.estimate, sps.t.ppf(0.975, 4.0) * math.sqrt(2 / 3))


def test_t_pvalue_matches_scipy_and_handles_zero_spread():
    x = np.array([0.3, 0.1, 0.5, 0.2, 0.4])
    for alt in ("two-sided", "greater", "less"):
        assert math.isclose(t_pvalue(x, 0.1, alt), sps.ttest_1samp(x, 0.1, alternative=alt).pvalue)
    assert t_pvalue([0.2, 0.2, 0.2], 0.0) == 0.0 and t_pvalue([0.2, 0.2, 0.2], 0.0, "less") == 1.0


def test_power_against_simulation_and_known_values():
    rng = np.random.default_rng(3)
    n, d, alpha = 10, 1.0, 0.05
    x = rng.normal(d, 1.0, size=(20000, n))
    p = sps.ttest_1samp(x, 0.0, axis=1).pvalue
    assert abs(np.mean(p < alpha) - power_two_sided(d, n, alpha)) < 0.01
    assert abs(power_two_sided(0.0, n, alpha) - alpha) < 1e-9
    # one-sided power at distance 0 is the level itself
    assert math.isclose(power_one_sided(0.0, n, alpha), alpha, rel_tol=1e-9)
    mde = min_detectable(n, alpha)
    assert math.isclose(power_two_sided(mde, n, alpha), 0.8, rel_tol=1e-6)
    need = replicates_needed(lambda k: power_two_sided(0.5, k, alpha))
    assert power_two_sided(0.5, int(need), alpha) >= 0.8 > power_two_sided(0.5, int(need) - 1, alpha)
    assert need == 34  # the textbook answer for d = 0.5, two-sided 5%, 80% power (paired t)
    assert math.isinf(replicates_needed(lambda k: power_two_sided(1e-4, k, alpha)))


def test_holm_and_bh_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert np.allclose(holm(p)[:4], [0.03, 0.06, 0.06, 0.02]) and math.isnan(holm(p)[4])
    # BH: sorted 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04
    assert np.allclose(benjamini_hochberg(p)[:4], [0.02, 0.04, 0.04, 0.02]) and math.isnan(benjamini_hochberg(p)[4])
    assert np.isnan(holm([math.nan])).all()


def test_hand_written_tests_equal_statsmodels():
    """Holm, the paired TOST and t-test power as statsmodels computes them."""
    from statsmodels.stats.multitest import multipletests
    from statsmodels.stats.power import TTestPower
    from statsmodels.stats.weightstats import ttost_paired

    from harness.stats.intervals import holm, power_two_sided, t_pvalue
    from harness.stats.verdicts import Hypothesis, assess

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 12)
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1], rtol=1e-12)
    x = rng.normal(0.1, 0.3, 8)
    their, _, _ = ttost_paired(x, np.zeros_like(x), -0.5, 0.5)
    within = max(t_pvalue(x, -0.5, "greater"), t_pvalue(x, 0.5, "less"))
    assert within == pytest.approx(their, rel=1e-10)
    assert assess(x, Hypothesis("equivalence", 0.5))["p_value"] == pytest.approx(
        min(1.0, 2 * their), rel=1e-10
    )  # at the 95% interval
    for d, n in ((0.5, 10), (1.2, 5), (0.2, 40)):
        assert power_two_sided(d, n, 0.05) == pytest.approx(
            TTestPower().power(d, n, 0.05, alternative="two-sided"), rel=1e-6
        )
