"""The verdict procedure, checked by simulation: false verdicts at the nominal family-wise rate
under no effect, the predicted power under a known effect, and verdicts that flip with the data."""

import math

import numpy as np
import pytest

from harness.stats import ALPHA, power_two_sided
from harness.verdicts import Hypothesis, assess, decide

MARGIN = 0.5
# the shape of the real claims table: 9 directional, 2 equivalence, 1 non-inferiority, 3 descriptive
FAMILY = [Hypothesis("directional")] * 9 + [Hypothesis("equivalence", MARGIN)] * 2 + [Hypothesis("noninferiority", MARGIN), *[Hypothesis("descriptive")] * 3]
TESTED = sum(h.kind != "descriptive" for h in FAMILY)


def boundary(h: Hypothesis) -> float:
    """The least favourable true value: where every verdict of the claim would be false."""
    return 0.0 if h.kind in ("directional", "descriptive") else MARGIN


def verdicts(samples, hyps=FAMILY, **kw):
    return [r["verdict"] for r in decide([assess(x, h) for x, h in zip(samples, hyps)], hyps, power=False, **kw)]


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
    assert rate >= 0.01, rate  # and the procedure is not mute: it does reject at about the nominal rate


def test_a_true_effect_is_found_at_the_predicted_power():
    rng = np.random.default_rng(1)
    n, effect, sims = 10, 1.5, 2000
    hyps = [Hypothesis("directional")] * TESTED
    predicted = power_two_sided(effect, n, ALPHA / TESTED)  # Holm's first step: the level the table's power columns use
    hits = 0
    for _ in range(sims):
        samples = [rng.normal(effect, 1.0, n)] + [rng.normal(0.0, 1.0, n) for _ in range(TESTED - 1)]
        hits += verdicts(samples, hyps)[0] == "supported"
    se = math.sqrt(predicted * (1 - predicted) / sims)
    assert abs(hits / sims - predicted) <= 3 * se + 0.01, (hits / sims, predicted)  # 0.01: Holm's later steps add a little
    assert 0.5 < predicted < 0.95  # a check with room to fail either way


def test_flipping_the_data_flips_the_verdict():
    x = np.array([0.9, 1.1, 1.3, 0.8, 1.0, 1.2])
    h = [Hypothesis("directional")]
    assert verdicts([x], h) == ["supported"] and verdicts([-x], h) == ["contradicted"]
    assert verdicts([x - x.mean()], h) == ["inconclusive"]


def test_equivalence_and_noninferiority_rules():
    tight = np.array([0.01, -0.02, 0.0, 0.02, -0.01])
    eq = [Hypothesis("equivalence", MARGIN)]
    assert verdicts([tight], eq) == ["supported"]
    assert verdicts([tight + 3], eq) == ["contradicted"] and verdicts([tight - 3], eq) == ["contradicted"]
    assert verdicts([tight * 40 + MARGIN], eq) == ["inconclusive"]  # straddles the margin
    ni = [Hypothesis("noninferiority", MARGIN)]
    assert verdicts([tight], ni) == ["supported"] and verdicts([tight + 3], ni) == ["contradicted"]
    assert verdicts([tight * 40 + MARGIN], ni) == ["inconclusive"]  # never a verdict by default


def test_withheld_below_min_n_and_descriptive_rows_stay_out_of_the_family():
    x = np.array([0.9, 1.1, 1.3, 0.8])
    rows = decide([assess(x, Hypothesis())], [Hypothesis()])
    assert rows[0]["verdict"] == "withheld" and "fewer than MIN_N = 5" in rows[0]["reason"] and math.isnan(rows[0]["p_adjusted"])
    assert decide([assess(x, Hypothesis())], [Hypothesis()], min_n=3)[0]["verdict"] == "supported"
    y = np.array([0.2, 0.5, 0.1, 0.4, 0.3, 0.6])
    alone = decide([assess(y, Hypothesis())], [Hypothesis()])[0]
    with_described = decide([assess(y, Hypothesis()), assess(y, Hypothesis("descriptive"))], [Hypothesis(), Hypothesis("descriptive")])
    assert alone["p_adjusted"] == with_described[0]["p_adjusted"] == alone["p_value"]
    assert with_described[1]["verdict"] == "descriptive"


def test_inconclusive_says_why():
    rng = np.random.default_rng(0)
    hyps = [Hypothesis()] * 2
    small_n = np.array([0.5, -0.2, 0.9, 0.1, 0.6])  # a real effect, too few seeds for it
    null = rng.normal(0, 0.01, 20) - 0.0  # precise, near zero: no effect of a detectable size
    rows = decide([assess(small_n, hyps[0]), assess(null - null.mean() + 0.0005, hyps[1])], hyps)
    assert rows[0]["verdict"] == "inconclusive" and rows[0]["reason"].startswith("too few seeds")
    assert rows[0]["seeds_needed"] > 5 and rows[0]["mde"] > abs(rows[0]["estimate"])
    assert rows[1]["verdict"] == "inconclusive" and rows[1]["reason"].startswith("no effect")


def test_an_effect_lost_to_the_adjustment_is_not_called_no_effect():
    x = np.array([0.3, 2.8, 1.5, 0.9, 2.3])  # raw p about 0.02: the interval excludes 0
    hyps = [Hypothesis()] * 4
    rows = decide([assess(v, Hypothesis()) for v in (x, x - x.mean(), -(x - x.mean()) * 0.5, (x - x.mean()) * 0.1)], hyps)
    first = rows[0]
    assert first["ci_low"] > 0 and first["p_value"] < 0.05 < first["p_adjusted"]
    assert first["verdict"] == "inconclusive" and not first["reason"].startswith("no effect")
    assert first["reason"].startswith("too few seeds") or first["reason"].startswith("not significant after Holm")
