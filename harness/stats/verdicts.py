"""The verdict procedure: from one value per replicate to supported / contradicted / inconclusive.

Each claim is a `Hypothesis` of one of these kinds, tested on its replicates' values with the
95% interval of `harness.stats.intervals.interval` and the matching t-test:

- ``directional``: the mean differs from 0; `supported` when it lies above 0, `contradicted` when
  below (two-sided p). With a smallest effect of interest (`sesoi`) the row can also be decided
  `negligible`: two one-sided tests place the mean inside (-sesoi, sesoi) (the 95% interval lies
  there). The two nulls (mean 0; |mean| >= sesoi) cannot both hold, so the row is one member of
  Holm's family with the smaller of its two p-values, whichever way it is decided.
- ``equivalence`` (two one-sided tests, TOST): `supported` when the interval lies inside
  (-margin, margin), `contradicted` only when it lies wholly outside; p is the smaller of the two
  p-values (p of "inside": twice the larger one-sided p; of "outside": twice the smaller one).
- ``noninferiority``: `supported` when the upper bound lies below the margin, `contradicted` when
  the lower bound lies above it (two-sided p of the mean against the margin).
- ``descriptive``: an estimate with its interval and no test.

`effect_sd` is the estimate's distance from the claim's decision boundary in standard deviations
of the replicates, signed so that positive points towards `supported`: estimate / sd for a
directional claim, (margin - estimate) / sd for a non-inferiority claim (positive: below the
margin, inside it) and (margin - |estimate|) / sd for an equivalence claim (the distance to the
nearer margin bound; positive: inside (-margin, margin)).

Zero spread is no evidence: replicates that are all equal (standard deviation 0, or rounding
noise: at most SPREAD_FLOOR times max(1, largest |value|); the statistics are rates, nats and
correlations of order 1, whose real spread is far above that) get no test, no p-value and no
verdict. A t-test would otherwise turn them into p = 0, a certainty the data do not hold.

`decide` adjusts the p-values of the whole family with Holm's method (replicates below `min_n`
take no part and are `withheld`); a verdict needs the adjusted p below alpha and the interval on
the same side. Power is reported at the level of Holm's first step (alpha / family size), the
strictest a claim can face: the minimum detectable effect (MDE, the smallest distance from the
decision boundary detected with 80% power at this n) and the replicates that would decide the
claim if the true value is the observed one. "No effect" is the verdict `negligible`, said only
against a smallest effect of interest (`Hypothesis.sesoi`) stated in advance. An inconclusive
verdict says why: too few seeds (with the number), or an effect (or a negligible one) lost to
Holm's adjustment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from harness.stats.intervals import (
    ALPHA,
    MAX_REPLICATES,
    POWER,
    holm,
    interval,
    min_detectable,
    power_one_sided,
    power_two_sided,
    replicates_needed,
)

KINDS = ("directional", "equivalence", "noninferiority", "descriptive")
MIN_N = 5  # fewer replicates: no verdict (the row says so)
VERDICTS = ("supported", "contradicted", "negligible", "inconclusive", "withheld", "descriptive")
SPREAD_FLOOR = 1e-9  # sd at or below this times max(1, largest |value|) is rounding, not spread


@dataclass(frozen=True)
class Hypothesis:
    """kind: one of KINDS; margin: the equivalence half-width or the non-inferiority bound, in the
    statistic's unit (ignored by directional and descriptive claims); sesoi: the smallest effect
    of interest of a directional claim, in the statistic's unit, stated in advance. Without it a
    directional claim is never called `negligible`; a margin claim's margin already is its
    smallest effect of interest, so sesoi is used by directional claims only."""

    kind: str = "directional"
    margin: float = 0.0
    sesoi: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}; allowed values: {', '.join(KINDS)}")
        if self.kind in ("equivalence", "noninferiority") and not self.margin > 0:
            raise ValueError(f"a {self.kind} claim needs a positive margin, got {self.margin}")
        if self.sesoi is not None and not (self.sesoi > 0 and math.isfinite(self.sesoi)):
            raise ValueError(f"the smallest effect of interest must be a positive number, got sesoi={self.sesoi}")


def no_spread(values) -> bool:
    """Whether two or more replicates are all equal, up to rounding (SPREAD_FLOOR)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    return len(x) >= 2 and float(x.std(ddof=1)) <= SPREAD_FLOOR * max(1.0, float(np.abs(x).max()))


def _effect_sd(estimate: float, sd: float, h: Hypothesis) -> float:
    """The signed distance from the decision boundary in sd (see the module docstring)."""
    if h.kind == "directional":
        return estimate / sd
    if h.kind == "noninferiority":
        return (h.margin - estimate) / sd
    return (h.margin - abs(estimate)) / sd


def assess(values, h: Hypothesis) -> dict:
    """Estimate, 95% interval, method, n, sd, standardized effect (`effect_sd`), raw p and the
    verdict the data point to (`side`) if the p-value survives adjustment. Zero spread: no p, no
    side, `no_spread` True."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    iv = interval(x)
    flat = no_spread(x)
    tested = h.kind != "descriptive" and iv.n >= 2 and not flat
    row = {
        "estimate": iv.estimate,
        "ci_low": iv.low,
        "ci_high": iv.high,
        "method": iv.method,
        "n": iv.n,
        "sd": iv.sd,
        "effect_sd": _effect_sd(iv.estimate, iv.sd, h) if tested else math.nan,
        "p_value": math.nan,
        "side": "",
        "no_spread": flat,
    }
    if not tested:
        return row
    n = len(x)
    pvalues = verdict_pvalues(float(x.mean()), float(x.std(ddof=1)) / math.sqrt(n), n - 1, h)
    side = min(pvalues, key=pvalues.get)  # ties: the first, as listed
    return row | {"p_value": pvalues[side], "side": side}


def verdict_pvalues(mean: float, se: float, df: float, h: Hypothesis) -> dict[str, float]:
    """The two-sided p-value of each verdict the t statistic of `mean` (standard error `se`, `df`
    degrees of freedom) can reach under `h`: directional, the side the mean lies on, and with a
    sesoi `negligible` (both one-sided tests inside +-sesoi, at the 95% interval); non-inferiority,
    the side of the margin; equivalence, `supported` (inside the margin) and `contradicted`
    (outside). One computation for a row's replicates (`assess`), a look of the sequential design
    (`harness.stats.sequential`) and a pooled estimate across settings (`analysis.generality`)."""

    def above(boundary: float) -> float:  # p of "the mean lies above the boundary"
        return float(special.stdtr(df, -(mean - boundary) / se))

    def below(boundary: float) -> float:
        return float(special.stdtr(df, (mean - boundary) / se))

    def two_sided(boundary: float) -> float:
        return float(min(1.0, 2 * special.stdtr(df, -abs(mean - boundary) / se)))

    if h.kind == "directional":
        out = {"supported" if mean > 0 else "contradicted": two_sided(0.0)}
        if h.sesoi is not None:
            out["negligible"] = min(1.0, 2 * max(above(-h.sesoi), below(h.sesoi)))
        return out
    if h.kind == "noninferiority":
        return {"supported" if mean < h.margin else "contradicted": two_sided(h.margin)}
    return {
        "supported": min(1.0, 2 * max(above(-h.margin), below(h.margin))),
        "contradicted": min(1.0, 2 * min(above(h.margin), below(-h.margin))),
    }


def _interval_agrees(r: dict, h: Hypothesis) -> bool:
    lo, hi, side = r["ci_low"], r["ci_high"], r["side"]
    if side == "negligible":
        return -h.sesoi < lo and hi < h.sesoi
    if h.kind == "directional":
        return lo > 0 if side == "supported" else hi < 0
    if h.kind == "noninferiority":
        return hi < h.margin if side == "supported" else lo > h.margin
    if side == "supported":
        return -h.margin < lo and hi < h.margin
    return lo > h.margin or hi < -h.margin


def decide(
    rows: list[dict], hypotheses: list[Hypothesis], alpha: float = ALPHA, min_n: int = MIN_N, power: bool = True
) -> list[dict]:
    """Verdicts for a family of assessed rows (from `assess`, one per hypothesis): Holm-adjusted p
    (`p_adjusted`), `verdict` and `reason`; with `power`, also `mde` (in the statistic's unit),
    `mde_sd` and `seeds_needed`. Holm's family is the rows with a p-value: descriptive rows, rows
    below `min_n` and rows with zero spread (no test, so nothing to adjust) stay out of it and do
    not count towards its size."""
    eligible = [
        h.kind != "descriptive" and r["n"] >= min_n and not math.isnan(r["p_value"])
        for r, h in zip(rows, hypotheses, strict=False)
    ]
    adjusted = holm([r["p_value"] if ok else math.nan for r, ok in zip(rows, eligible, strict=False)])
    family = max(1, sum(eligible))
    out = []
    for r, h, ok, p_adj in zip(rows, hypotheses, eligible, adjusted, strict=False):
        r = dict(r, p_adjusted=float(p_adj))
        if power:
            r |= power_fields(r, h, alpha / family)
        if h.kind == "descriptive":
            r |= {"verdict": "descriptive", "reason": "an estimate, not a test"}
        elif r["n"] < min_n:
            r |= {"verdict": "withheld", "reason": f"withheld: {r['n']} replicates, fewer than MIN_N = {min_n}"}
        elif r.get("no_spread"):
            r |= {
                "verdict": "inconclusive",
                "reason": f"no spread: all {r['n']} replicates are equal (value {r['estimate']:.6g}), "
                "so no test is possible; a zero-variance sample is no evidence",
            }
        elif not ok:
            r |= {"verdict": "inconclusive", "reason": "no test possible"}
        elif p_adj < alpha and _interval_agrees(r, h):
            r |= {"verdict": r["side"], "reason": ""}
        else:
            r |= {"verdict": "inconclusive", "reason": inconclusive_reason(r, h) if power else ""}
        out.append(r)
    return out


def power_fields(r: dict, h: Hypothesis, level: float) -> dict:
    """MDE and replicates needed at the level of Holm's first step. The boundary is 0 for a
    directional claim and the margin for the others; tests at 95% two-sided intervals are one-sided
    at level / 2 against a margin. A directional claim with a smallest effect of interest is also
    decided by an interval within +-sesoi ("no effect"): `seeds_needed` is the fewer of the two."""
    n, sd, est = r["n"], r["sd"], r["estimate"]
    if h.kind == "descriptive" or n < 2 or r.get("no_spread") or not sd > 0:
        return {"mde": math.nan, "mde_sd": math.nan, "seeds_needed": math.nan}
    if h.kind == "directional":
        mde_sd = min_detectable(n, level, sides=2)
        need = min(replicates_needed(lambda k: power_two_sided(est / sd, k, level)), _seeds_for_no_effect(r, h))
    else:
        mde_sd = min_detectable(n, level / 2, sides=1)
        if h.kind == "noninferiority":
            need = replicates_needed(lambda k: power_one_sided(abs(est - h.margin) / sd, k, level / 2))
        elif abs(est) < h.margin:  # inside: both one-sided tests must reject
            need = replicates_needed(lambda k: _power_within(est, sd, h.margin, k, level / 2))
        else:
            need = replicates_needed(lambda k: power_one_sided((abs(est) - h.margin) / sd, k, level / 2))
    return {"mde": mde_sd * sd, "mde_sd": mde_sd, "seeds_needed": need}


def _power_within(est: float, sd: float, bound: float, k: int, level: float) -> float:
    """Power (a lower bound, P(A and B) >= P(A) + P(B) - 1) of both one-sided tests at `level`
    placing the mean inside (-bound, bound) at k replicates, if the true value is `est`."""
    return power_one_sided((bound - est) / sd, k, level) + power_one_sided((bound + est) / sd, k, level) - 1


def _seeds_for_no_effect(r: dict, h: Hypothesis) -> float:
    """Replicates for the 95% interval to lie within +-sesoi with POWER, if the true value is the
    observed one; inf without a sesoi or with the estimate at or beyond it."""
    if h.kind != "directional" or h.sesoi is None or not abs(r["estimate"]) < h.sesoi:
        return math.inf
    return replicates_needed(lambda k: _power_within(r["estimate"], r["sd"], h.sesoi, k, ALPHA / 2))


def _where(r: dict, h: Hypothesis) -> str:
    """Where a margin claim's interval lies: inside the margin, outside it, or across it."""
    lo, hi, m = r["ci_low"], r["ci_high"], h.margin
    if h.kind == "noninferiority":
        if hi < m:
            return f"the interval lies inside the margin (below {m:.3g}); "
        if lo > m:
            return f"the interval lies outside the margin (above {m:.3g}); "
        return f"the interval straddles the margin {m:.3g}; "
    if -m < lo and hi < m:
        return f"the interval lies inside the margin (+-{m:.3g}); "
    if lo > m or hi < -m:
        return f"the interval lies outside the margin (+-{m:.3g}); "
    return f"the interval straddles the margin (+-{m:.3g}); "


def inconclusive_reason(r: dict, h: Hypothesis) -> str:
    """Why a tested claim is inconclusive. Directional: an interval within +-sesoi that did not
    survive Holm's adjustment (the MDE cannot stand in for a sesoi: at Holm's first step it is
    several sd wide, so any interval near 0 would lie within it), or too few seeds (with how many
    would decide the claim either way), or an effect that did not survive Holm's adjustment.
    Margin claims: where the interval lies relative to the margin, then too few seeds or Holm's
    adjustment."""
    n, need = r["n"], r.get("seeds_needed", math.nan)
    if h.kind == "directional" and h.sesoi is not None and -h.sesoi < r["ci_low"] and r["ci_high"] < h.sesoi:
        return (
            f"the interval lies within +-SESOI = {h.sesoi:.3g}, the smallest effect of interest stated in advance, "
            f"but not after Holm's adjustment across the claims (raw p = {r['p_value']:.3g}, adjusted "
            f"{r['p_adjusted']:.3g})"
        )
    where = "" if h.kind == "directional" else _where(r, h)
    if math.isinf(need):
        return f"{where}the estimate sits on the boundary: more than {MAX_REPLICATES:,} replicates would not decide it"
    if need > n:
        then = " (the interval would then lie within +-SESOI)" if need == _seeds_for_no_effect(r, h) else ""
        return (
            f"too few seeds: {where}about {need:.0f} replicates would decide it with {POWER:.0%} power if the true "
            f"value is the observed one{then}"
        )
    return (
        f"{where}not significant after Holm's adjustment across the claims (raw p = {r['p_value']:.3g}, adjusted "
        f"{r['p_adjusted']:.3g})"
    )
