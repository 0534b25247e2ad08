"""The verdict procedure: from one value per replicate to supported / contradicted / inconclusive.

Each claim is a `Hypothesis` of one of these kinds, tested on its replicates' values with the
95% interval of `harness.stats.interval` and the matching t-test:

- ``directional``: the mean differs from 0; `supported` when it lies above 0, `contradicted` when
  below (two-sided p).
- ``equivalence`` (two one-sided tests, TOST): `supported` when the interval lies inside
  (-margin, margin), `contradicted` only when it lies wholly outside; p is the smaller of the two
  p-values (p of "inside": twice the larger one-sided p; of "outside": twice the smaller one).
- ``noninferiority``: `supported` when the upper bound lies below the margin, `contradicted` when
  the lower bound lies above it (two-sided p of the mean against the margin).
- ``descriptive``: an estimate with its interval and no test.

`decide` adjusts the p-values of the whole family with Holm's method (replicates below `min_n`
take no part and are `withheld`); a verdict needs the adjusted p below alpha and the interval on
the same side. Power is reported at the level of Holm's first step (alpha / family size), the
strictest a claim can face: the minimum detectable effect (MDE, the smallest distance from the
decision boundary detected with 80% power at this n) and the replicates that would detect the
observed effect. An inconclusive verdict says which of the two it is: no effect, or too few seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .stats import ALPHA, POWER, holm, interval, min_detectable, power_one_sided, power_two_sided, replicates_needed, t_pvalue

KINDS = ("directional", "equivalence", "noninferiority", "descriptive")
MIN_N = 5  # fewer replicates: no verdict (the row says so)
VERDICTS = ("supported", "contradicted", "inconclusive", "withheld", "descriptive")


@dataclass(frozen=True)
class Hypothesis:
    """kind: one of KINDS; margin: the equivalence half-width or the non-inferiority bound, in the
    statistic's unit (ignored by directional and descriptive claims)."""

    kind: str = "directional"
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}; allowed values: {', '.join(KINDS)}")
        if self.kind in ("equivalence", "noninferiority") and not self.margin > 0:
            raise ValueError(f"a {self.kind} claim needs a positive margin, got {self.margin}")


def assess(values, h: Hypothesis) -> dict:
    """Estimate, 95% interval, method, n, sd, standardized effect, raw p and the verdict the data
    point to (`side`) if the p-value survives adjustment."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    iv = interval(x)
    standardized = iv.estimate / iv.sd if h.kind != "descriptive" and iv.sd and iv.sd > 0 else math.nan
    row = {"estimate": iv.estimate, "ci_low": iv.low, "ci_high": iv.high, "method": iv.method, "n": iv.n, "sd": iv.sd,
           "effect_sd": standardized, "p_value": math.nan, "side": ""}
    if h.kind == "descriptive" or iv.n < 2:
        return row
    if h.kind == "directional":
        p, side = t_pvalue(x, 0.0), "supported" if iv.estimate > 0 else "contradicted"
    elif h.kind == "noninferiority":
        p, side = t_pvalue(x, h.margin), "supported" if iv.estimate < h.margin else "contradicted"
    else:
        p_in = min(1.0, 2 * max(t_pvalue(x, -h.margin, "greater"), t_pvalue(x, h.margin, "less")))
        p_out = min(1.0, 2 * min(t_pvalue(x, h.margin, "greater"), t_pvalue(x, -h.margin, "less")))
        p, side = (p_in, "supported") if p_in <= p_out else (p_out, "contradicted")
    return row | {"p_value": p, "side": side}


def _interval_agrees(r: dict, h: Hypothesis) -> bool:
    lo, hi, side = r["ci_low"], r["ci_high"], r["side"]
    if h.kind == "directional":
        return lo > 0 if side == "supported" else hi < 0
    if h.kind == "noninferiority":
        return hi < h.margin if side == "supported" else lo > h.margin
    if side == "supported":
        return -h.margin < lo and hi < h.margin
    return lo > h.margin or hi < -h.margin


def decide(rows: list[dict], hypotheses: list[Hypothesis], alpha: float = ALPHA, min_n: int = MIN_N, power: bool = True) -> list[dict]:
    """Verdicts for a family of assessed rows (from `assess`, one per hypothesis): Holm-adjusted p
    (`p_adjusted`), `verdict` and `reason`; with `power`, also `mde` (in the statistic's unit),
    `mde_sd` and `seeds_needed`."""
    eligible = [h.kind != "descriptive" and r["n"] >= min_n and not math.isnan(r["p_value"]) for r, h in zip(rows, hypotheses)]
    adjusted = holm([r["p_value"] if ok else math.nan for r, ok in zip(rows, eligible)])
    family = max(1, sum(eligible))
    out = []
    for r, h, ok, p_adj in zip(rows, hypotheses, eligible, adjusted):
        r = dict(r, p_adjusted=float(p_adj))
        if power:
            r |= _power(r, h, alpha / family)
        if h.kind == "descriptive":
            r |= {"verdict": "descriptive", "reason": "an estimate, not a test"}
        elif r["n"] < min_n:
            r |= {"verdict": "withheld", "reason": f"withheld: {r['n']} replicates, fewer than MIN_N = {min_n}"}
        elif not ok:
            r |= {"verdict": "inconclusive", "reason": "no test possible"}
        elif p_adj < alpha and _interval_agrees(r, h):
            r |= {"verdict": r["side"], "reason": ""}
        else:
            r |= {"verdict": "inconclusive", "reason": _reason(r, h) if power else ""}
        out.append(r)
    return out


def _power(r: dict, h: Hypothesis, level: float) -> dict:
    """MDE and replicates needed at the level of Holm's first step. The boundary is 0 for a
    directional claim and the margin for the others; tests at 95% two-sided intervals are one-sided
    at level / 2 against a margin."""
    n, sd, est = r["n"], r["sd"], r["estimate"]
    if h.kind == "descriptive" or n < 2 or not sd > 0:
        return {"mde": math.nan if n < 2 or h.kind == "descriptive" else 0.0, "mde_sd": math.nan, "seeds_needed": math.nan}
    if h.kind == "directional":
        mde_sd = min_detectable(n, level, sides=2)
        need = replicates_needed(lambda k: power_two_sided(est / sd, k, level))
    else:
        mde_sd = min_detectable(n, level / 2, sides=1)
        if h.kind == "noninferiority":
            need = replicates_needed(lambda k: power_one_sided(abs(est - h.margin) / sd, k, level / 2))
        elif abs(est) < h.margin:  # inside: both one-sided tests must reject
            need = replicates_needed(lambda k: power_one_sided((h.margin - est) / sd, k, level / 2) + power_one_sided((h.margin + est) / sd, k, level / 2) - 1)
        else:
            need = replicates_needed(lambda k: power_one_sided((abs(est) - h.margin) / sd, k, level / 2))
    return {"mde": mde_sd * sd, "mde_sd": mde_sd, "seeds_needed": need}


def _reason(r: dict, h: Hypothesis) -> str:
    """Why a tested claim is inconclusive. Directional: no effect of a detectable size (the
    interval holds 0 and lies within the MDE of it), or too few seeds (with how many would do), or
    an effect that did not survive Holm's adjustment. Margin claims: the interval straddles the
    margin, and how many seeds would decide it if the true value is the observed one."""
    n, need, mde = r["n"], r.get("seeds_needed", math.nan), r.get("mde", math.nan)
    if h.kind == "directional" and r["ci_low"] <= 0 <= r["ci_high"] and -mde < r["ci_low"] and r["ci_high"] < mde:
        return f"no effect: the interval holds 0 and lies within the MDE of it, so effects of the detectable size are excluded at n = {n}"
    where = "" if h.kind == "directional" else "the interval straddles the margin; "
    if math.isinf(need):
        return f"{where}the estimate sits on the boundary: more than {100_000:,} replicates would not decide it"
    if need > n:
        return f"too few seeds: {where}about {need:.0f} replicates would decide it with {POWER:.0%} power if the true value is the observed one"
    return f"not significant after Holm's adjustment across the claims (raw p = {r['p_value']:.3g}, adjusted {r['p_adjusted']:.3g})"
