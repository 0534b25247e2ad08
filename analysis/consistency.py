"""Consistency of the claims across settings: the label of each statistic's pattern of verdicts,
and the statistic pooled over the settings by a random-effects model (`analysis.generality` reads
them for reports/generality/).

Consistency rule. A statistic is matched across settings by its `key` (its text without what the
setting decides: sizes, widths, the cell chosen on validation). A setting without the statistic
(its study skipped there, or its tables lack what the statistic reads), or where it was `withheld`
(too few replicates), is NOT TESTED there: no evidence either way, and `untested_in` names it.
Whether the settings disagree is a question about their estimates, not their verdicts ("supported
here, inconclusive there" can be power alone; Gelman and Stern 2006): every tested statistic is
pooled over the settings with a random-effects model (`harness.stats.intervals.random_effects`: Paule-Mandel
tau^2, Hartung-Knapp interval, I^2, Cochran's Q, the prediction interval for a new setting), and the
pooled rows are decided as a family of their own under Holm (reports/generality/pooled.csv). Over
the settings where the statistic was tested:

- "holds in every setting" / "holds where tested": supported in every setting / wherever tested
  (a skipped study is no evidence against), however much the sizes differ;
- "negligible everywhere" / "negligible where tested": the effect within +-SESOI in each;
- "setting-dependent": otherwise, when the settings' estimates differ beyond chance (Cochran's Q,
  Holm-adjusted across the pooled statistics, below alpha);
- "contradicted in k of m": contradicted in k of the m settings that tested it;
- "holds in k of m, not shown elsewhere" (or "negligible in k of m, ..."): decided in some
  settings, undecided in the rest, and the estimates do not differ beyond chance;
- "not shown": undecided in every setting that tested it (never "false");
- "no verdict in any setting": withheld or untested everywhere;
- "descriptive": an estimate without a test gets no label.

A claim (C1 to C10) is supported in a setting when every tested statistic it has there is,
contradicted when one is, negligible when all are; the same rule over settings gives its
`claim_consistency` (setting-dependent when one of its statistics is).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from harness.stats.intervals import Pooled, holm, random_effects
from harness.stats.verdicts import Hypothesis, decide, verdict_pvalues

from .claims import SESOI

EVERY, WHERE_TESTED, DEPENDENT, NOT_SHOWN, DESCRIPTIVE = (
    "holds in every setting",
    "holds where tested",
    "setting-dependent",
    "not shown",
    "descriptive",
)
NEGLIGIBLE, NEGLIGIBLE_WHERE_TESTED = "negligible everywhere", "negligible where tested"
NO_VERDICT = "no verdict in any setting"  # tested nowhere with enough replicates
WITHHELD = "withheld"
HOLDS = "supported"  # the one verdict that shows a claim: the effect, the equivalence or the non-inferiority it states
POOLED_COLUMNS = [
    "claim",
    "key",
    "unit",
    "test",
    "margin",
    "settings",
    "estimate",
    "ci_low",
    "ci_high",
    "pred_low",
    "pred_high",
    "tau2",
    "i2",
    "q",
    "q_pvalue",
    "q_p_holm",
    "p_value",
    "p_adjusted",
    "verdict",
]


def consistency(verdicts: Mapping[str, str | None], heterogeneous: bool = False) -> str:
    """The consistency label of one statistic (or claim) from its verdict in each setting of the
    family, None where it was not tested, and whether the settings' estimates differ beyond chance
    (see the module docstring)."""
    # withheld (fewer than the first look's replicates, or a budget the runs hit) is no verdict: like a setting that did
    # not test it
    tested = [v for v in verdicts.values() if v not in (None, WITHHELD)]
    if not tested:
        return NO_VERDICT
    m, everywhere = len(tested), len(tested) == len(verdicts)
    held, contra, negl = (sum(v == x for v in tested) for x in (HOLDS, "contradicted", "negligible"))
    if held == m:  # the same verdict everywhere: sizes that differ do not make it depend on the setting
        return EVERY if everywhere else WHERE_TESTED
    if negl == m:
        return NEGLIGIBLE if everywhere else NEGLIGIBLE_WHERE_TESTED
    if heterogeneous:
        return DEPENDENT
    if contra:
        return f"contradicted in {contra} of {m}"
    if held == negl == 0:
        return NOT_SHOWN
    decided = [f"holds in {held} of {m}"] * bool(held) + [f"negligible in {negl} of {m}"] * bool(negl)
    return ", ".join(decided) + ", not shown elsewhere"


def claim_verdicts(table: pd.DataFrame, settings: list[str]) -> dict[str, dict[str, str | None]]:
    """Per claim, per setting: `supported` when every tested statistic of the claim there is
    supported, `contradicted` when one is contradicted, `negligible` when all are negligible,
    otherwise `inconclusive`; None when it has none there."""
    tested = table[table.test != "descriptive"]

    def verdict(v: pd.Series) -> str:
        if (v == HOLDS).all():
            return HOLDS
        if (v == "contradicted").any():
            return "contradicted"
        return "negligible" if (v == "negligible").all() else "inconclusive"

    out = {}
    for claim, g in tested.groupby("claim", sort=False):
        g = g[g.verdict != WITHHELD]  # no verdict there: as if not tested
        by = g.groupby("setting")["verdict"].agg(verdict)
        out[claim] = {s: by.get(s) for s in settings}
    return out


def hypothesis_of(row) -> Hypothesis:
    """The hypothesis a decided row was tested with (its test, margin and its unit's SESOI)."""
    if row.test == "directional":
        return Hypothesis("directional", sesoi=SESOI.get(row.unit))
    return (
        Hypothesis(row.test, float(row.margin))
        if row.test in ("equivalence", "noninferiority")
        else Hypothesis("descriptive")
    )


def pooled_table(table: pd.DataFrame) -> pd.DataFrame:
    """Every tested statistic pooled over the settings that tested it with a verdict (at least two,
    each with a spread): the random-effects estimate, its Hartung-Knapp interval and prediction
    interval, tau^2, I^2, Cochran's Q with its p-value (raw and Holm-adjusted across the pooled
    statistics), and a verdict decided with the statistic's own test on the Hartung-Knapp t
    statistic, Holm across the pooled rows (a family of their own). Columns POOLED_COLUMNS."""
    tested = table[(table.test != "descriptive") & ~table.verdict.isin([WITHHELD]) & table.sd.gt(0) & table.n.ge(2)]
    rows, hyps = [], []
    for (claim, key), g in tested.groupby(["claim", "key"], sort=False):
        if len(g) < 2:
            continue
        first = g.iloc[0]
        pooled = random_effects(g.estimate.to_numpy(), (g.sd / np.sqrt(g.n)).to_numpy())
        h = hypothesis_of(first)
        rows.append(
            {
                "claim": claim,
                "key": key,
                "unit": first.unit,
                "test": first.test,
                "margin": first.margin,
                "settings": ", ".join(g.setting),
                **assess_pooled(pooled, h),
                "pred_low": pooled.pred_low,
                "pred_high": pooled.pred_high,
                "tau2": pooled.tau2,
                "i2": pooled.i2,
                "q": pooled.q,
                "q_pvalue": pooled.q_pvalue,
            }
        )
        hyps.append(h)
    if not rows:
        return pd.DataFrame(columns=POOLED_COLUMNS)
    decided = decide(rows, hyps, min_n=2, power=False)
    out = pd.DataFrame(decided)
    out["q_p_holm"] = holm(out.q_pvalue.to_numpy())
    return out[POOLED_COLUMNS]


def assess_pooled(pooled: Pooled, h: Hypothesis) -> dict:
    """`harness.stats.verdicts.assess`'s row for a pooled estimate: the same tests, on the Hartung-Knapp
    t statistic with k - 1 degrees of freedom; n is the number of settings."""
    est = pooled.estimate
    pvalues = verdict_pvalues(est, pooled.se, pooled.df, h)
    side = min(pvalues, key=pvalues.get)
    p = pvalues[side]
    return {
        "estimate": est,
        "ci_low": pooled.low,
        "ci_high": pooled.high,
        "n": pooled.k,
        "sd": pooled.se,
        "p_value": p,
        "side": side,
        "no_spread": False,
    }
