"""Studies in looks: an experiment cut to its first K looks' replicates, the driver that runs the
next look only while a row asks for more seeds, the stamp it leaves and the tables collected from
it, and the claims table's look, design and reasons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import looks as L
from analysis.claims import decide_specs, design_of
from analysis.paths import ROOT
from harness import profiles
from harness.errors import ConfigError
from harness.experiment import load_experiment
from harness.sequential import CONDITIONAL_POWER_FLOOR, Design, decide_in_looks
from harness.verdicts import Hypothesis

EXP = ROOT / "experiments"


@pytest.fixture
def two_looks(monkeypatch):
    """The smoke profile with looks at 3 and 5 replicates."""
    monkeypatch.setitem(profiles.LOOKS, "smoke", (3, 5))


def test_a_look_keeps_its_replicates(two_looks):
    one = load_experiment(EXP / "coadaptation.py", "smoke", look=1)
    assert sorted({c.seed for c in one.configs}) == [0, 1, 2] and one.replicates == 3
    every = load_experiment(EXP / "coadaptation.py", "smoke")
    assert sorted({c.seed for c in every.configs}) == [0, 1, 2, 3, 4] and every.look is None
    assert len(one.configs) == 3 * len(every.configs) // 5
    # an ensemble of M seeds is one replicate: look 1 holds 3 ensembles per arm, each whole
    ens = load_experiment(EXP / "ensemble_vs_dropout.py", "smoke", look=1)
    m = 2  # the smoke profile's members
    assert sorted({c.seed for c in ens.configs}) == list(range(3 * m)) and ens.replicates == 3
    assert len(ens.ensembles) == 2 * 3 and all(len(e.run_ids) == m for e in ens.ensembles)


@pytest.mark.parametrize("look", [0, 3, -1])
def test_a_look_the_profile_lacks_is_refused_by_name(two_looks, look):
    with pytest.raises(ConfigError, match=r"look=.*2 looks \(3, 5 replicates\): give 1 to 2"):
        load_experiment(EXP / "exact.py", "smoke", look=look)


def test_the_driver_runs_the_next_look_only_while_a_row_asks(two_looks, tmp_path, monkeypatch):
    store, stamp = tmp_path / "runs", tmp_path / "stamp"
    asked = []

    def judge(study, tables, look, replicates, others, pending):  # look 1 asks for more, look 2 is the last
        asked.append((look, replicates, tables["runs"].seed.nunique()))
        return L.LookResult(look, replicates, 0, int(look == 1), int(look == 2))

    monkeypatch.setattr(L, "judge", judge)
    assert L.drive("exact", "smoke", store=str(store), run_flags=["--executor", "local"], stamp=str(stamp)) == 0
    assert asked == [(1, 3, 3), (2, 5, 5)]
    assert stamp.read_text().splitlines() == ["2", "look 2 of 2: 5 replicates"]
    # a study whose rows ask nothing stops at its first look; its finished runs are not trained again
    monkeypatch.setattr(L, "judge", lambda study, tables, look, replicates, others, pending: L.LookResult(look, replicates, 1, 0, 0))
    assert L.drive("exact", "smoke", store=str(store), run_flags=["--executor", "local"], stamp=str(stamp)) == 0
    assert stamp.read_text().splitlines()[0] == "1"
    from analysis.tables import main as tables_main

    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    for look, seeds in (("1", 3), ("2", 5), ("", 5)):  # the stamp's look; empty: every listed run
        assert tables_main(["exact", "--profile", "smoke", "--store", str(store), "--look", look]) == 0
        assert pd.read_parquet(tmp_path / "reports" / "smoke" / "tables" / "exact" / "runs.parquet").seed.nunique() == seeds


def test_the_real_judge_counts_rows_by_state():
    """Constructed C2 rows of study exact: one decided, then judged at the first of two looks."""
    rng = np.random.default_rng(3)
    n = 5
    ev = pd.DataFrame({"run_id": [f"r{s}" for s in range(n) for _ in range(2)], "seed": np.repeat(np.arange(n), 2),
                       "mode": ["weight_scaled", "exact"] * n, "k": 0, "repeat": 0, "metric": "error",
                       "value": np.ravel([(0.05, 0.05 + 1e-4 * d) for d in rng.standard_normal(n)])})
    result = L.judge("exact", {"evaluations": ev}, 1, n)
    assert (result.decided, result.open, result.stopped) == (1, 0, 0) and not result.asks_more()


def test_claims_carry_the_look_the_design_and_why_a_row_is_undecided():
    rng = np.random.default_rng(0)
    design = Design((5, 10, 20))
    decided = 1.0 + 0.1 * rng.standard_normal(20)  # decided at the first look
    open_row = 0.45 + rng.standard_normal(5)  # open at n = 5: could still be decided at 20
    hopeless = np.array([0.01, -0.012, 0.008, -0.009, 0.011, 0.01, -0.01, 0.009, -0.011, 0.012])  # far from deciding
    rows = decide_in_looks([decided, open_row, hopeless], [Hypothesis(), Hypothesis(), Hypothesis()], design)
    assert rows[0]["verdict"] == "supported" and rows[0]["look"] == 1 and rows[0]["n"] == 5
    assert rows[1]["verdict"] == "inconclusive" and rows[1]["asks_more"] and rows[1]["conditional_power"] >= CONDITIONAL_POWER_FLOOR
    assert "more seeds could decide it" in rows[1]["reason"]
    assert rows[2]["verdict"] == "inconclusive" and not rows[2]["asks_more"] and rows[2]["n"] == 10 and rows[2]["look"] == 2
    assert "stopped at n = 10 for futility" in rows[2]["reason"] and "it could detect" in rows[2]["reason"]
    # the Holm adjustment runs on the repeated p-values
    assert rows[0]["p_adjusted"] == pytest.approx(min(1.0, 3 * rows[0]["repeated_p"]))
    # a row undecided at the largest n says so with the effect it could have detected there
    flat20 = np.tile([0.3, -0.25, 0.2, -0.3, 0.1], 4) + 0.02
    last = decide_in_looks([flat20], [Hypothesis()], Design((5, 20)))[0]  # close to the floor at 5: continues, then undecided
    assert last["verdict"] == "inconclusive" and last["n"] == 20 and last["look"] == 2
    assert last["reason"].startswith("undecided at the largest n = 20: it could detect")


def test_the_design_is_the_profiles_whatever_the_replicates():
    def spec(n, profile="quick"):
        return ({"profile": profile, "claim": "C1", "stopped_by_patience": 1.0}, pd.Series(np.arange(n, dtype=float) % 3), Hypothesis())

    assert design_of([spec(5), spec(10)])[0] == Design((5, 10, 20))
    assert "planned" in design_of([spec(5)])[1]
    # a row that lost a replicate (9 of 10) keeps the planned design for every row, and is tested at
    # the second look with the 9 values it has there, never at a look of 9 that did not happen
    assert design_of([spec(10), spec(9)])[0] == Design((5, 10, 20))
    rows = decide_specs([spec(10), spec(9)])
    assert rows.n.tolist() == [10, 9] and rows.look.tolist() == [2, 2]
    # tables of an experiment with its own seeds (no profile): one look per replicate count, said so
    design, text = design_of([spec(8, None), spec(6, None)])
    assert design == Design((6, 8)) and "no planned looks" in text
    df = decide_specs([spec(8, None)])
    assert df.design.iloc[0].startswith("one look at 8 replicates") and df.n.iloc[0] == 8 and not math.isnan(df.repeated_p.iloc[0])


def test_a_lost_replicate_never_lets_a_later_one_into_an_earlier_look():
    """A look's replicates are the first n positions: a replicate without a value (NaN, or a row
    that lacks a replicate its study has) leaves a gap there, not a place for the next one."""
    rng = np.random.default_rng(5)
    design = Design((5, 10))
    good = 1.0 + 0.1 * rng.standard_normal(9)
    lost_first = decide_in_looks([np.r_[np.nan, good]], [Hypothesis()], design)[0]
    # look 1 holds 4 values, fewer than its 5: untested; look 2 decides with the 9 it holds
    assert (lost_first["verdict"], lost_first["look"], lost_first["n"]) == ("supported", 2, 9)
    # after the first look alone, that row is withheld and asks for the next look
    early = decide_in_looks([np.r_[np.nan, good[:4]]], [Hypothesis()], design)[0]
    assert early["verdict"] == "withheld" and early["asks_more"] and "its study runs the next look" in early["reason"]
    lost_last = decide_in_looks([np.r_[good, np.nan]], [Hypothesis()], design)[0]
    assert (lost_last["verdict"], lost_last["look"], lost_last["n"]) == ("supported", 1, 5)
    # in the claims table, a row lacking replicate 0 of its study gets the same gap
    meta = {"profile": "quick", "claim": "C1", "study": "mc_vs_ws", "stopped_by_patience": 1.0}
    full = pd.Series(np.r_[1.0, good], index=range(10))
    short = pd.Series(good, index=range(1, 10))
    rows = decide_specs([(meta, full, Hypothesis()), (meta, short, Hypothesis())])
    assert rows.look.tolist() == [1, 2] and rows.n.tolist() == [5, 9]


def test_a_study_that_lost_a_replicate_in_every_row_keeps_its_gap():
    """One tested row (C7's placement) lacking replicate 4: replicate 5 must not enter look 1."""
    rng = np.random.default_rng(6)
    meta = {"profile": "quick", "claim": "C7", "study": "placement", "stopped_by_patience": 1.0}
    good = 1.0 + 0.1 * rng.standard_normal(10)
    row = decide_specs([(meta, pd.Series(np.delete(good, 4), index=[r for r in range(10) if r != 4]), Hypothesis())]).iloc[0]
    assert (row.verdict, row.look, row.n) == ("supported", 2, 9)
    # after look 1 alone, with replicate 2 lost: withheld, and asking for the next look
    early = decide_specs([(meta, pd.Series(good[[0, 1, 3, 4]], index=[0, 1, 3, 4]), Hypothesis())]).iloc[0]
    assert early.verdict == "withheld" and early.asks_more


def test_a_row_that_lost_a_value_at_the_last_look_is_not_stopped_for_futility():
    x = np.r_[np.tile([0.3, -0.25, 0.2, -0.3, 0.1], 4)[:19] + 0.02, np.nan]
    row = decide_in_looks([x], [Hypothesis()], Design((5, 20)))[0]
    assert row["verdict"] == "inconclusive" and not row["asks_more"] and row["look"] == 2
    assert row["reason"].startswith("undecided at the largest n = 20") and row["conditional_power"] == 0.0


def test_a_row_without_spread_after_a_gap_is_no_test_not_withheld():
    row = decide_in_looks([np.r_[np.nan, np.full(9, 0.5)]], [Hypothesis()], Design((5, 10)))[0]
    assert row["verdict"] == "inconclusive" and not row["asks_more"] and row["reason"].startswith("no spread")


def test_a_row_that_lost_values_stays_in_the_holm_family():
    """At look 1, a row too short to test still counts in the family (with p = 1): the row beside
    it faces alpha / 2, not alpha."""
    from harness.sequential import level_crossed, look_pvalues

    design = Design((5, 10))
    # a row whose look-1 repeated p lies between alpha / 2 and alpha
    x = np.array([0.9, 1.3, 0.4, 1.6, 0.7]) * 0.35 + 0.12
    p1 = min(level_crossed(p, 1, design) for p in look_pvalues(x, 5, Hypothesis()).values())
    assert design.alpha / 2 < p1 <= design.alpha
    alone = decide_in_looks([x[:5]], [Hypothesis()], design)[0]
    assert alone["verdict"] == "supported" and alone["look"] == 1
    short = np.r_[np.nan, np.nan, 1.0, 2.0, 3.0]
    beside = decide_in_looks([x[:5], short], [Hypothesis(), Hypothesis()], design)
    assert beside[0]["verdict"] == "inconclusive" and beside[1]["verdict"] == "withheld" and beside[1]["repeated_p"] == 1.0


def test_a_row_the_driver_decides_is_decided_in_the_report():
    """The driver judges a study before the setting's later studies exist, counting their tested rows
    at p = 1. On 100 random families, every row it decides is decided in the family of every
    study (the report's), at the same look or earlier; and without the placeholders it would call
    rows decided that the report leaves open (a family of 2 against 12: the MNIST-1D case)."""
    rng = np.random.default_rng(11)
    design = Design((5, 10, 20))
    rows = [Hypothesis()] * 12
    loose = 0
    for _ in range(100):
        effects = rng.choice([0.0, 0.4, 0.9, 1.5], size=12)
        values = [e + rng.standard_normal(20) for e in effects]
        report = decide_in_looks(values, rows, design)
        blank = np.full(20, np.nan)
        driver = decide_in_looks(values[:2] + [blank] * 10, rows, design)
        alone = decide_in_looks(values[:2], rows[:2], design)
        for d, r, a in zip(driver[:2], report[:2], alone):
            if d["verdict"] in ("supported", "contradicted", "negligible"):
                assert r["verdict"] == d["verdict"] and r["look"] <= d["look"]
            loose += a["verdict"] == "supported" and r["verdict"] != "supported"
    assert loose > 0


def test_the_judge_counts_the_rows_not_collected_yet():
    """A C2 row of study exact decided at n = 5 alone is open once 16 rows of studies not yet
    collected stand beside it at p = 1."""
    rng = np.random.default_rng(3)
    n = 5
    ev = pd.DataFrame({"run_id": [f"r{s}" for s in range(n) for _ in range(2)], "seed": np.repeat(np.arange(n), 2),
                       "mode": ["weight_scaled", "exact"] * n, "k": 0, "repeat": 0, "metric": "error",
                       "value": np.ravel([(0.05, 0.05 + 2e-3 * (0.3 + d)) for d in rng.standard_normal(n)])})
    alone = L.judge("exact", {"evaluations": ev}, 1, n)
    crowded = L.judge("exact", {"evaluations": ev}, 1, n, pending=16)
    assert alone.decided == 1 and crowded.decided == 0


def test_a_row_decided_at_a_look_its_study_did_not_run_says_how():
    """Row b's study stopped at 10 replicates; row a, decided at look 3, frees Holm's level and b's
    repeated p from n = 10 meets it there: the table reads n 10, look 3, and the reason says why."""
    rng = np.random.default_rng(13)
    a, b = 0.6 + rng.standard_normal(20), 0.9 + rng.standard_normal(10)
    ra, rb = decide_in_looks([a, b], [Hypothesis()] * 2, Design((5, 10, 20)))
    assert (ra["verdict"], ra["look"], ra["reason"]) == ("supported", 3, "")
    assert (rb["verdict"], rb["look"], rb["n"]) == ("supported", 3, 10)
    assert rb["reason"].startswith("decided at the family's look 3 (20 replicates), which its study did not run")
    assert rb["repeated_p"] > 0.05 / 2 and rb["p_adjusted"] <= 0.05  # not decided by itself at Holm's first step
