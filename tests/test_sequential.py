"""The group-sequential verdict procedure: boundaries that spend what they should, repeated
p-values, a row that continues and one that stops, negligible verdicts, and the family-wise error
of the whole procedure (looks, continuation, Holm) by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.stats import sequential as S
from harness.stats.sequential import Design, boundaries, level_crossed, obf_spent, replay
from harness.stats.simulation import simulate
from harness.stats.verdicts import Hypothesis
from harness.sweep import profiles

STUDIES = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_one_look_is_the_fixed_test():
    assert boundaries(0.05, (1.0,))[0] == pytest.approx(stats.norm.isf(0.025), abs=1e-9)
    for p in (0.001, 0.01, 0.04):  # one look: the repeated p-value is the p-value
        assert level_crossed(p, 1, Design((20,))) == pytest.approx(p, rel=2e-3)


def test_boundaries_spend_what_the_spending_function_says():
    """Brownian motion on the information scale crosses look k's boundary (first) with the
    probability the O'Brien-Fleming-type function spends there."""
    t = np.array([0.25, 0.5, 1.0])
    c = boundaries(0.05, tuple(t))
    assert c[0] == pytest.approx(stats.norm.isf(obf_spent(0.05, t[:1])[0] / 2))
    rng = np.random.default_rng(0)
    paths = 400_000
    s = np.cumsum(rng.standard_normal((paths, 3)) * np.sqrt(np.diff(np.concatenate([[0], t]))), axis=1)
    z = np.abs(s / np.sqrt(t))
    crossed = z >= c
    first = np.where(crossed.any(1), crossed.argmax(1), -1)
    spent = np.diff(np.concatenate([[0.0], obf_spent(0.05, t)]))
    for k in range(3):
        share = np.mean(first == k)
        assert abs(share - spent[k]) < 4 * math.sqrt(spent[k] / paths) + 1e-5, (k, share, spent[k])
    assert c[0] > c[1] > c[2] > stats.norm.isf(0.025)  # early looks are strict; the last near 1.96


def test_a_row_decided_early_one_that_continues_and_one_that_stops():
    design = Design((5, 10, 20))
    rows = [Hypothesis("directional", sesoi=0.5)] * 3
    rng = np.random.default_rng(1)
    huge = 10 + 0.1 * rng.standard_normal(5)  # decided at the first look
    promising = 0.7 + rng.standard_normal(5)  # undecided, but likely decided by n = 20
    hopeless = np.array([0.3, -2.9, 2.1, -1.4, 2.2])  # sd 2.3 around 0.06: neither sign nor negligible by 20
    out = replay([huge, promising, hopeless], rows, design)
    assert (out[0].verdict, out[0].look, out[0].n, out[0].asks_more) == ("supported", 1, 5, False)
    assert (
        out[1].verdict == "inconclusive" and out[1].asks_more and out[1].conditional_power >= S.CONDITIONAL_POWER_FLOOR
    )
    assert (
        out[2].verdict == "inconclusive"
        and not out[2].asks_more
        and out[2].conditional_power < S.CONDITIONAL_POWER_FLOOR
    )
    # the replay is a pure function of the values and the design
    assert replay([huge, promising, hopeless], rows, design) == out
    # at the last look nothing asks for more
    full = replay([np.full(20, 0.0) + rng.standard_normal(20)] * 2, [Hypothesis()] * 2, design)
    assert not any(o.asks_more for o in full) and all(o.n == 20 for o in full)


def test_negligible_is_a_verdict():
    design = Design((5, 10, 20))
    tight = np.array([0.02, -0.03, 0.01, 0.0, -0.01, 0.03, -0.02, 0.01, 0.0, -0.01])
    (out,) = replay([tight], [Hypothesis("directional", sesoi=0.5)], design)
    assert out.verdict == "negligible" and out.look in (1, 2)
    (none,) = replay(
        [tight], [Hypothesis("directional")], design
    )  # without a smallest effect of interest: never negligible
    assert none.verdict == "inconclusive"


def test_too_few_values_are_withheld_and_flat_ones_get_no_test():
    design = Design((5, 10, 20))
    withheld, flat = replay([np.ones(4), np.full(6, 0.3)], [Hypothesis(), Hypothesis()], design)
    assert (withheld.verdict, withheld.n) == ("withheld", 4)
    assert (flat.verdict, flat.look, flat.asks_more) == ("inconclusive", 0, False) and math.isnan(flat.repeated_p)


@pytest.mark.parametrize(
    "effects, distribution",
    [
        ([0.0] * 12, "normal"),
        ([0.0] * 12, "heavy"),
        ([0.0] * 12, "skewed"),
        ([0, 0, 0, 0, 0, 0, 0.8, 1.0, 0.6, -0.8, 1.2, 0.5], "normal"),
        ([0, 0, 0, 0, 0, 0, 0.8, 1.0, 0.6, -0.8, 1.2, 0.5], "skewed"),
        ([0.5] * 6 + [0.0] * 6, "normal"),  # real effects at the sesoi: "negligible" would be false
    ],
)
@pytest.mark.slow
def test_family_wise_error_of_the_whole_procedure(effects, distribution):
    """Looks, the data-dependent continuation and Holm together: false verdicts in at most 5% of
    families, within the simulation's Monte Carlo error (1,000 families of 12 rows in 4 studies).
    Skewed values push the t-test itself past its level at Holm's small levels (the fixed design
    at the largest n on the same draws, `fixed_fwer`); there the looks must add nothing to that.
    The design is the quick profile's, the one `make all` decides its claims with."""
    design = Design(profiles.LOOKS["quick"])
    r = simulate(effects, STUDIES, design, distribution, reps=1000, seed=7)
    bound = 0.05 if distribution != "skewed" else max(0.05, r.fixed_fwer)
    assert r.fwer <= bound + 1.96 * r.fwer_se, r
    assert design.looks[0] < r.mean_n <= design.looks[-1]


def test_the_simulation_catches_looks_without_spending():
    """The check can fail: reading every look at the fixed test's level (no alpha spending)
    inflates the family-wise error well beyond 5%."""
    r = simulate([0.0] * 12, STUDIES, Design((5, 10, 20), spending="none"), "normal", reps=600, seed=3, adaptive=False)
    assert r.fwer > 0.05 + 3 * r.fwer_se, r


def test_the_benchmark_simulates_a_profiles_looks_and_refuses_a_one_look_profile(capsys):
    from harness.cli import main

    assert main(["bench", "sequential", "--profile", "smoke", "--reps", "10"]) == 2
    assert "--profile smoke: its design has one look (5,)" in capsys.readouterr().err
    assert main(["bench", "sequential", "--profile", "nosuch", "--reps", "10"]) == 2
    assert "nosuch" in capsys.readouterr().err
