"""Statistics as pure functions of arrays: bootstrap confidence intervals and rank tests.

Every reported number carries n and a 95% confidence interval; with fewer than two observations an
interval is undefined and reported as NaN (never invented).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000


def mean_ci(values, confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float, int]:
    """(mean, low, high, n): percentile-bootstrap interval of the mean; exact when all values agree."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n < 2:
        return m, math.nan, math.nan, n
    if np.all(x == x[0]):
        return m, m, m, n
    res = stats.bootstrap((x,), np.mean, confidence_level=confidence, n_resamples=N_RESAMPLES, method="percentile", rng=np.random.default_rng(seed))
    return m, float(res.confidence_interval.low), float(res.confidence_interval.high), n


def diff_ci(a, b, confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float, float]:
    """(mean(b) - mean(a), low, high): percentile bootstrap over both samples independently."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = float(b.mean() - a.mean())
    if len(a) < 2 or len(b) < 2:
        return d, math.nan, math.nan
    if np.all(a == a[0]) and np.all(b == b[0]):
        return d, d, d

    def stat(bb, aa, axis=-1):
        return bb.mean(axis=axis) - aa.mean(axis=axis)

    res = stats.bootstrap((b, a), stat, confidence_level=confidence, n_resamples=N_RESAMPLES, method="percentile", rng=np.random.default_rng(seed))
    return d, float(res.confidence_interval.low), float(res.confidence_interval.high)


def mann_whitney(a, b) -> tuple[float, float]:
    """(U statistic of b against a, two-sided p-value); NaN when either sample is empty."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return math.nan, math.nan
    if np.all(np.concatenate([a, b]) == a[0]):
        return float(len(a) * len(b) / 2), 1.0
    res = stats.mannwhitneyu(b, a, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)
