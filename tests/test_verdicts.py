"""The verdict procedure, checked by simulation: false verdicts at the nominal family-wise rate
under no effect, the predicted power under a known effect, "no effect" only against a smallest
effect of interest, no test on zero spread, and verdicts that flip with the data."""

import math
import re

import numpy as np
import pytest

from harness.stats.intervals import ALPHA, power_one_sided, power_two_sided, t_pvalue
from harness.stats.verdicts import Hypothesis, assess, decide

MARGIN = 1.5  # in sd of the simulated replicates
SESOI = 0.5
# the shape of the real claims table's Holm family: 14 directional, 2 equivalence, 1 non-inferiority
FAMILY = (
    (Hypothesis("directional", sesoi=SESOI),) * 14
    + (Hypothesis("equivalence", MARGIN),) * 2
    + (Hypothesis("noninferiority", MARGIN),)
)
TESTED = len(FAMILY)


def boundary(h: Hypothesis) -> float:
    """The true value least favourable to "supported": where every verdict of the claim is false."""
    return 0.0 if h.kind == "directional" else h.margin


def verdicts(samples, hyps=FAMILY, **kw):
    return [
        r["verdict"]
        for r in decide([assess(x, h) for x, h in zip(samples, hyps, strict=False)], list(hyps), power=False, **kw)
    ]


def reasons(samples, hyps, **kw):
    return decide([assess(x, h) for x, h in zip(samples, hyps, strict=False)], list(hyps), **kw)


@pytest.mark.parametrize("n", [5, 10])
def test_family_wise_false_verdicts_stay_at_the_nominal_rate(n):
    rng = np.random.default_rng(n)
    sims = 2000
    false = 0
    for _ in range(sims):
        v = verdicts([rng.normal(boundary(h), 1.0, n) for h in FAMILY])
        false += any(x in ("supported", "contradicted") for x in v)
    rate = false / sims
    se = math.sqrt(ALPHA * (1 - ALPHA) / sims)
    assert rate <= ALPHA + 3 * se, rate  # Holm controls the family-wise rate
    assert rate >= 0.02, rate  # and the procedure is not mute: it does reject at about the nominal rate


def test_true_effects_are_found_at_the_predicted_power():
    """One claim of each kind 1.5 sd on the supported side of its boundary, the rest at the null:
    three real effects take Holm's first three steps, so each is found with power between the
    level of the first step (alpha / 17, the level of the power columns) and of the third."""
    rng = np.random.default_rng(1)
    n, effect, sims = 10, 1.5, 2000
    truth = [effect] + [0.0] * 13 + [0.0, MARGIN, MARGIN - effect]  # equivalence at 0: MARGIN inside both bounds
    hits = np.zeros(TESTED)
    for _ in range(sims):
        hits += [v == "supported" for v in verdicts([rng.normal(t, 1.0, n) for t in truth])]
    rate = hits / sims
    first, third = ALPHA / TESTED, ALPHA / (TESTED - 2)
    directional = (power_two_sided(effect, n, first), power_two_sided(effect, n, third))
    noninferior = (power_one_sided(effect, n, first / 2), power_one_sided(effect, n, third / 2))
    # TOST: both one-sided tests at level / 2; P(A and B) >= P(A) + P(B) - 1 and <= P(A)
    equivalent = (2 * power_one_sided(MARGIN, n, first / 2) - 1, power_one_sided(MARGIN, n, third / 2))
    for observed, (low, high) in ((rate[0], directional), (rate[16], noninferior), (rate[14], equivalent)):
        se = math.sqrt(high * (1 - high) / sims)
        assert low - 3 * se <= observed <= high + 3 * se, (observed, low, high)
    assert (
        0.5 < directional[0] < 0.95 and 0.3 < equivalent[0] < equivalent[1] < 0.95
    )  # checks with room to fail either way
    assert rate[[1, 15]].max() < 0.02  # the null rows beside them stay quiet


def test_flipping_the_data_flips_the_verdict():
    x = np.array([0.9, 1.1, 1.3, 0.8, 1.0, 1.2])
    h = [Hypothesis("directional")]
    assert verdicts([x], h) == ["supported"] and verdicts([-x], h) == ["contradicted"]
    assert verdicts([x - x.mean()], h) == ["inconclusive"]


def test_equivalence_and_noninferiority_rules():
    tight = np.array([0.01, -0.02, 0.0, 0.02, -0.01])
    eq = [Hypothesis("equivalence", 0.5)]
    assert verdicts([tight], eq) == ["supported"]
    assert verdicts([tight + 3], eq) == ["contradicted"] and verdicts([tight - 3], eq) == ["contradicted"]
    assert verdicts([tight * 40 + 0.5], eq) == ["inconclusive"]  # straddles the margin
    ni = [Hypothesis("noninferiority", 0.5)]
    assert verdicts([tight], ni) == ["supported"] and verdicts([tight + 3], ni) == ["contradicted"]
    assert verdicts([tight * 40 + 0.5], ni) == ["inconclusive"]  # never a verdict by default


def test_withheld_below_min_n_and_descriptive_rows_stay_out_of_the_family():
    x = np.array([0.9, 1.1, 1.3, 0.8])
    rows = decide([assess(x, Hypothesis())], [Hypothesis()])
    assert (
        rows[0]["verdict"] == "withheld"
        and "fewer than MIN_N = 5" in rows[0]["reason"]
        and math.isnan(rows[0]["p_adjusted"])
    )
    assert decide([assess(x, Hypothesis())], [Hypothesis()], min_n=3)[0]["verdict"] == "supported"
    y = np.array([0.2, 0.5, 0.1, 0.4, 0.3, 0.6])
    alone = decide([assess(y, Hypothesis())], [Hypothesis()])[0]
    with_described = decide(
        [assess(y, Hypothesis()), assess(y, Hypothesis("descriptive"))], [Hypothesis(), Hypothesis("descriptive")]
    )
    assert alone["p_adjusted"] == with_described[0]["p_adjusted"] == alone["p_value"]
    assert with_described[1]["verdict"] == "descriptive"


@pytest.mark.parametrize(
    "h", [Hypothesis(), Hypothesis("equivalence", 0.5), Hypothesis("noninferiority", 0.5)], ids=lambda h: h.kind
)
def test_zero_spread_gets_no_test(h):
    y = np.array([0.2, 0.5, 0.1, 0.4, 0.3, 0.6])
    for flat in (
        np.full(5, 0.03),
        np.zeros(5),
        np.array([0.1 - 0.06, 0.3 - 0.26, 0.7 - 0.66, 0.04, 0.9 - 0.86]),
    ):  # the last: rounding only
        flat_row, other = decide([assess(flat, h), assess(y, Hypothesis())], [h, Hypothesis()])
        assert (
            flat_row["verdict"] == "inconclusive"
            and math.isnan(flat_row["p_value"])
            and math.isnan(flat_row["p_adjusted"])
        )
        assert (
            flat_row["reason"].startswith("no spread: all 5 replicates are equal")
            and "no evidence" in flat_row["reason"]
        )
        assert (
            math.isnan(flat_row["effect_sd"]) and math.isnan(flat_row["seeds_needed"]) and math.isnan(flat_row["mde"])
        )
        assert other["p_adjusted"] == other["p_value"]  # not in Holm's family: the family is the other row alone
    assert decide([assess(np.full(3, 0.03), h)], [h])[0]["verdict"] == "withheld"  # too few replicates says so first


def test_negligible_needs_the_interval_within_the_smallest_effect_of_interest():
    precise = np.array([0.01, -0.02, 0.0, 0.02, -0.01, 0.005])  # interval about +-0.015 around 0
    within = reasons([precise], [Hypothesis(sesoi=0.1)])[0]
    assert (
        within["verdict"] == "negligible"
        and within["ci_high"] < 0.1
        and within["ci_low"] > -0.1
        and within["reason"] == ""
    )
    assert within["p_value"] == pytest.approx(
        2 * max(t_pvalue(precise, -0.1, "greater"), t_pvalue(precise, 0.1, "less"))
    )
    lost = reasons([precise], [Hypothesis(sesoi=0.1)], alpha=1e-9)[0]  # the same interval, a level it cannot reach
    assert lost["verdict"] == "inconclusive" and lost["reason"].startswith("the interval lies within +-SESOI = 0.1")
    wider = reasons([precise], [Hypothesis(sesoi=0.01)])[0]  # holds 0 but reaches beyond +-0.01
    assert wider["ci_low"] < -0.01 and wider["ci_high"] > 0.01
    needed = re.match(r"too few seeds: about (\d+) replicates would decide it with 80% power", wider["reason"])
    assert needed and int(needed.group(1)) > 6 == wider["n"] and wider["seeds_needed"] == int(needed.group(1)), wider[
        "reason"
    ]
    assert wider["reason"].endswith(
        "(the interval would then lie within +-SESOI)"
    )  # an estimate near 0: decided by no effect
    assert reasons([precise], [Hypothesis()])[0]["verdict"] == "inconclusive"  # no SESOI: never negligible
    real = np.array([0.5, -0.2, 0.9, 0.1, 0.6])  # a real effect, too few seeds for it
    row = reasons([real], [Hypothesis(sesoi=0.2)])[0]
    assert row["ci_low"] < 0 < row["ci_high"] and row["reason"].startswith("too few seeds") and row["seeds_needed"] > 5
    assert row["mde"] > abs(row["estimate"])
    for bad in (0.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="smallest effect of interest"):
            Hypothesis(sesoi=bad)


def test_negligible_is_rarely_said_when_the_effect_is_as_large_as_the_sesoi():
    """ "Negligible" means the whole 95% interval lies within +-SESOI; with the true effect at SESOI
    that needs the upper bound below the truth, which happens in at most 2.5% of samples."""
    rng = np.random.default_rng(3)
    h, n, sims = Hypothesis(sesoi=1.0), 10, {0.0: 60, 1.0: 150}
    said = {
        truth: sum(reasons([rng.normal(truth, 1.0, n)], [h])[0]["verdict"] == "negligible" for _ in range(k)) / k
        for truth, k in sims.items()
    }
    assert said[1.0] <= 0.025 + 3 * math.sqrt(0.025 * 0.975 / sims[1.0]), said
    assert said[0.0] > 0.3, said  # and it is said when there is no effect


def test_an_effect_lost_to_the_adjustment_is_not_called_no_effect():
    x = np.array([0.3, 2.8, 1.5, 0.9, 2.3])  # raw p about 0.02: the interval excludes 0
    hyps = [Hypothesis(sesoi=0.1)] * 4
    rows = reasons([x, x - x.mean(), -(x - x.mean()) * 0.5, (x - x.mean()) * 0.1], hyps)
    first = rows[0]
    assert first["ci_low"] > 0 and first["p_value"] < 0.05 < first["p_adjusted"]
    assert first["verdict"] == "inconclusive" and not first["reason"].startswith("the interval lies within")
    assert first["reason"].startswith("too few seeds") or first["reason"].startswith("not significant after Holm")


def test_margin_claims_measure_the_effect_from_the_margin():
    x = np.array([0.1, 0.3, 0.2, 0.15, 0.25])  # mean 0.2
    sd = x.std(ddof=1)
    assert math.isclose(assess(x, Hypothesis()).get("effect_sd"), 0.2 / sd)
    assert math.isclose(
        assess(x, Hypothesis("noninferiority", 0.5))["effect_sd"], (0.5 - 0.2) / sd
    )  # positive: below the margin
    assert math.isclose(assess(x + 0.6, Hypothesis("noninferiority", 0.5))["effect_sd"], (0.5 - 0.8) / sd)
    assert math.isclose(assess(x, Hypothesis("equivalence", 0.5))["effect_sd"], (0.5 - 0.2) / sd)  # positive: inside
    assert math.isclose(
        assess(-x, Hypothesis("equivalence", 0.5))["effect_sd"], (0.5 - 0.2) / sd
    )  # the nearer bound, -0.5
    assert math.isclose(
        assess(-x - 0.6, Hypothesis("equivalence", 0.5))["effect_sd"], (0.5 - 0.8) / sd
    )  # negative: outside


@pytest.mark.parametrize("kind", ["equivalence", "noninferiority"])
def test_margin_reasons_say_where_the_interval_lies(kind):
    tight = np.array([0.01, -0.02, 0.0, 0.02, -0.01])
    h = Hypothesis(kind, 0.5)
    cases = {"inside": tight * 15, "outside": tight * 15 + 1.0, "straddles": tight * 40 + 0.5}  # inside: about +-0.3
    for where, x in cases.items():
        row = reasons([x], [h], alpha=1e-3)[0]  # a strict alpha keeps a clear interval inconclusive
        assert row["verdict"] == "inconclusive", (where, row)
        said = "straddles the margin" if where == "straddles" else f"lies {where} the margin"
        assert f"the interval {said}" in row["reason"], (where, row["reason"])
        assert sum(w in row["reason"] for w in ("inside the margin", "outside the margin", "straddles the margin")) == 1
