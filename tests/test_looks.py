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
from harness.errors import ConfigError
from harness.stats.sequential import CONDITIONAL_POWER_FLOOR, Design, decide_in_looks
from harness.stats.verdicts import Hypothesis
from harness.sweep import profiles
from harness.sweep.experiment import load_experiment

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


@pytest.mark.slow
def test_the_driver_runs_the_next_look_only_while_a_row_asks(two_looks, tmp_path, monkeypatch):
    store, stamp = tmp_path / "runs", tmp_path / "stamp"
    asked = []

    def judge(study, tables, look, replicates, pending):  # look 1 asks for more, look 2 is the last
        asked.append((look, replicates, tables["runs"].seed.nunique(), pending))
        return L.LookResult(look, replicates, 0, int(look == 1), int(look == 2))

    monkeypatch.setattr(L, "judge", judge)
    assert L.drive("exact", "smoke", store=str(store), run_flags=["--executor", "local"], stamp=str(stamp)) == 0
    rows = L.pending_rows("smoke", None, "exact")  # every other study's tested rows: the family's 17 but exact's one
    assert rows == 16 and asked == [(1, 3, 3, rows), (2, 5, 5, rows)]
    assert stamp.read_text().splitlines() == ["2", "look 2 of 2: 5 replicates"]
    # a study whose rows ask nothing stops at its first look; its finished runs are not trained again
    monkeypatch.setattr(
        L, "judge", lambda study, tables, look, replicates, pending: L.LookResult(look, replicates, 1, 0, 0)
    )
    assert L.drive("exact", "smoke", store=str(store), run_flags=["--executor", "local"], stamp=str(stamp)) == 0
    assert stamp.read_text().splitlines()[0] == "1"
    from analysis.tables import main as tables_main

    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    for look, seeds in (("1", 3), ("2", 5), ("", 5)):  # the stamp's look; empty: every listed run
        assert tables_main(["exact", "--profile", "smoke", "--store", str(store), "--look", look]) == 0
        assert (
            pd.read_parquet(tmp_path / "reports" / "smoke" / "tables" / "exact" / "runs.parquet").seed.nunique()
            == seeds
        )


def test_the_real_judge_counts_rows_by_state():
    """Constructed C2 rows of study exact: one decided, then judged at the first of two looks."""
    rng = np.random.default_rng(3)
    n = 5
    ev = pd.DataFrame(
        {
            "run_id": [f"r{s}" for s in range(n) for _ in range(2)],
            "seed": np.repeat(np.arange(n), 2),
            "mode": ["weight_scaled", "exact"] * n,
            "k": 0,
            "repeat": 0,
            "metric": "error",
            "value": np.ravel([(0.05, 0.05 + 1e-4 * d) for d in rng.standard_normal(n)]),
        }
    )
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
    assert (
        rows[1]["verdict"] == "inconclusive"
        and rows[1]["asks_more"]
        and rows[1]["conditional_power"] >= CONDITIONAL_POWER_FLOOR
    )
    assert "more seeds could decide it" in rows[1]["reason"]
    assert (
        rows[2]["verdict"] == "inconclusive"
        and not rows[2]["asks_more"]
        and rows[2]["n"] == 10
        and rows[2]["look"] == 2
    )
    assert "stopped at n = 10 for futility" in rows[2]["reason"] and "it could detect" in rows[2]["reason"]
    # the Holm adjustment runs on the repeated p-values
    assert rows[0]["p_adjusted"] == pytest.approx(min(1.0, 3 * rows[0]["repeated_p"]))
    # a row undecided at the largest n says so with the effect it could have detected there
    flat20 = np.tile([0.3, -0.25, 0.2, -0.3, 0.1], 4) + 0.02
    last = decide_in_looks([flat20], [Hypothesis()], Design((5, 20)))[
        0
    ]  # close to the floor at 5: continues, then undecided
    assert last["verdict"] == "inconclusive" and last["n"] == 20 and last["look"] == 2
    assert last["reason"].startswith("undecided at the largest n = 20: it could detect")


def test_the_design_is_the_profiles_whatever_the_replicates():
    def spec(n, profile="quick"):
        return (
            {"profile": profile, "claim": "C1", "stopped_by_patience": 1.0},
            pd.Series(np.arange(n, dtype=float) % 3),
            Hypothesis(),
        )

    assert design_of([spec(5), spec(10)])[0] == Design(profiles.LOOKS["quick"])
    assert "planned" in design_of([spec(5)])[1]
    # a row that lost a replicate (9 of 10) keeps the planned design for every row, and is tested at
    # the second look with the 9 values it has there, never at a look of 9 that did not happen
    assert design_of([spec(10), spec(9)])[0] == Design(profiles.LOOKS["quick"])
    rows = decide_specs([spec(10), spec(9)])
    assert rows.n.tolist() == [10, 9] and rows.look.tolist() == [2, 2]
    # tables of an experiment with its own seeds (no profile): one look per replicate count, said so
    design, text = design_of([spec(8, None), spec(6, None)])
    assert design == Design((6, 8)) and "no planned looks" in text
    df = decide_specs([spec(8, None)])
    assert (
        df.design.iloc[0].startswith("one look at 8 replicates")
        and df.n.iloc[0] == 8
        and not math.isnan(df.repeated_p.iloc[0])
    )


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
    row = decide_specs(
        [(meta, pd.Series(np.delete(good, 4), index=[r for r in range(10) if r != 4]), Hypothesis())]
    ).iloc[0]
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
    from harness.stats.sequential import level_crossed, look_pvalues

    design = Design((5, 10))
    # a row whose look-1 repeated p lies between alpha / 2 and alpha
    x = np.array([0.9, 1.3, 0.4, 1.6, 0.7]) * 0.35 + 0.12
    p1 = min(level_crossed(p, 1, design) for p in look_pvalues(x, 5, Hypothesis()).values())
    assert design.alpha / 2 < p1 <= design.alpha
    alone = decide_in_looks([x[:5]], [Hypothesis()], design)[0]
    assert alone["verdict"] == "supported" and alone["look"] == 1
    short = np.r_[np.nan, np.nan, 1.0, 2.0, 3.0]
    beside = decide_in_looks([x[:5], short], [Hypothesis(), Hypothesis()], design)
    assert (
        beside[0]["verdict"] == "inconclusive" and beside[1]["verdict"] == "withheld" and beside[1]["repeated_p"] == 1.0
    )


def _driven(study_values, rows, design, pending):
    """The driver's looks on a study's values (its rows beside `pending` rows at p = 1): the look it
    stops at, and its rows' outcomes there."""
    blank = np.full(design.n_max, np.nan)
    for k, n in enumerate(design.looks, start=1):
        out = decide_in_looks(
            [v[:n] for v in study_values] + [blank] * pending, rows + [Hypothesis()] * pending, design, best_case=True
        )[: len(study_values)]
        if not any(r["asks_more"] for r in out):
            return k, out
    return len(design.looks), out


@pytest.mark.slow
def test_a_row_the_driver_decides_is_decided_in_the_report():
    """The driver judges a study alone, counting every other study's tested rows at p = 1. On 80
    random families whose other rows stopped at random looks, lost values (gaps) or had no spread at
    first, each row the driver decides is decided in the report's family of every study with the
    same verdict, at the same look or earlier, and the report asks no more seeds of the study the
    driver stopped. Judged alone (a family of its 2 rows: MNIST-1D's C1 before), the driver calls
    rows decided that the report leaves open."""
    rng = np.random.default_rng(11)
    design = Design((5, 10, 20))
    loose = 0
    for _ in range(80):
        own = [e + rng.standard_normal(20) for e in rng.choice([0.0, 0.4, 0.9, 1.5], size=2)]
        others = []
        for e in rng.choice([0.0, 0.4, 0.9, 1.5], size=10):
            x = (e + rng.standard_normal(20))[: rng.choice([5, 10, 20])]
            kind = rng.integers(4)
            if kind == 0:
                x[:5] = 0.3  # no spread at the first look
            elif kind == 1:
                x[1:3] = np.nan  # a gap: too few values at the first look
            others.append(x)
        look, driver = _driven(own, [Hypothesis()] * 2, design, pending=10)
        n = design.looks[look - 1]
        report = decide_in_looks([v[:n] for v in own] + others, [Hypothesis()] * 12, design)[:2]
        alone = decide_in_looks([v[:n] for v in own], [Hypothesis()] * 2, design)
        for d, r, a in zip(driver, report, alone, strict=False):
            if d["verdict"] in ("supported", "contradicted", "negligible"):
                assert r["verdict"] == d["verdict"] and r["look"] <= d["look"]
            if n < design.n_max:
                assert not r["asks_more"]
            loose += a["verdict"] in ("supported", "contradicted", "negligible") and r["verdict"] == "inconclusive"
    assert loose > 0


def test_a_decided_row_passes_its_level_on_when_the_family_grows():
    """Rows X and Y of one study (10 seeds) and F of another, without spread at its first look
    (no test there: F joins the family at look 2). The driver, with F at p = 1, decides X and Y at
    look 2. In the report X is decided at look 1 and enters look 2 with p = 0 (Maurer and Bretz):
    with X's repeated p of look 1 kept instead (0.0194 x 3 > 0.05), Y would stay open although
    its study had stopped."""
    x = [
        3.0521912925170325,
        2.805939197648073,
        3.1828336181388472,
        3.2496211365380105,
        2.935722333324985,
        1.593806968258971,
        2.464383125598505,
        2.4627072626999222,
        2.527355247292139,
        2.504385340354672,
    ]
    y = [
        2.5931368636102308,
        0.9030828608852157,
        2.7430793409300183,
        2.140851249586046,
        1.6660026247961848,
        2.836102696916943,
        -0.35832374447485216,
        3.0489775537514143,
        0.5093143951311169,
        1.1180896532216624,
    ]
    f = [0.3] * 5 + [
        0.8213420756971872,
        -1.3294706338112179,
        0.5950451980893687,
        0.12535960222779743,
        -0.6151746060874768,
        -0.4881963082268698,
        -1.9327501790894586,
        1.977289132382621,
        0.5892288286711851,
        0.2442370019824195,
        0.22001056754997136,
        0.12111975027624575,
        0.12138710818114853,
        0.1819076373584288,
        -1.831052089820184,
    ]
    design, h = Design((5, 10, 20)), [Hypothesis()] * 3
    driver = decide_in_looks([np.array(x), np.array(y), np.full(20, np.nan)], h, design)
    report = decide_in_looks([np.array(x), np.array(y), np.array(f)], h, design)
    assert [(r["verdict"], r["look"]) for r in driver[:2]] == [("supported", 2), ("supported", 2)]
    assert [(r["verdict"], r["look"]) for r in report[:2]] == [("supported", 1), ("supported", 2)]
    assert 0.05 / 3 < report[0]["repeated_p"] < 0.05 / 2 and all(r["p_adjusted"] <= 0.05 for r in report[:2])


def test_the_judge_counts_the_rows_not_collected_yet():
    """A C2 row of study exact decided at n = 5 alone is open once 16 rows of the other studies stand
    beside it at p = 1."""
    rng = np.random.default_rng(3)
    n = 5
    ev = pd.DataFrame(
        {
            "run_id": [f"r{s}" for s in range(n) for _ in range(2)],
            "seed": np.repeat(np.arange(n), 2),
            "mode": ["weight_scaled", "exact"] * n,
            "k": 0,
            "repeat": 0,
            "metric": "error",
            "value": np.ravel([(0.05, 0.05 + 2e-3 * (0.3 + d)) for d in rng.standard_normal(n)]),
        }
    )
    alone = L.judge("exact", {"evaluations": ev}, 1, n)
    crowded = L.judge("exact", {"evaluations": ev}, 1, n, 16)
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
