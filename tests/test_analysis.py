"""Claims on hand-made tables with known answers: one value per seed, design cells averaged within
the seed, verdicts that flip when the data flip."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.claim_specs import SPECS, TESTS
from analysis.claim_values import (
    MILD_SHARE,
    RECOMMENDED,
    SEVERE_SHARE,
    c1_values,
    c2_values,
    c3_values,
    c4_values,
    c5_best_cells,
    c5_values,
    c6_runs,
    c6_values,
    c7_values,
    c9_values,
    c10_values,
    ood_values,
    severity_bands,
)
from analysis.claims import CLAIMS, COLUMNS, EQUIVALENCE_MARGIN, TESTED_ROWS, claims_table
from analysis.labels import label_method
from analysis.presentation import show_claims
from analysis.report import fmt_cell
from analysis.summaries import summarize

SEEDS = [0, 1, 2, 3, 4]


def evaluations(ws_err, mc_err, archs=("512x512",)):
    """Two runs per seed when two architectures are given; mc_shared at k = 50 and 100 (two streams)."""
    rows = []
    for a, arch in enumerate(archs):
        for s, (w, m) in enumerate(zip(ws_err, mc_err, strict=False)):
            rid = f"r{a}{s}"
            rows += [
                (rid, s, arch, "weight_scaled", 0, 0, "error", w + a / 100),
                (rid, s, arch, "mc_shared", 50, 0, "error", 0.9),
                (rid, s, arch, "mc_shared", 100, 0, "error", m + a / 100 - 0.001),
                (rid, s, arch, "mc_shared", 100, 1, "error", m + a / 100 + 0.001),
            ]
    return pd.DataFrame(rows, columns=["run_id", "seed", "widths", "mode", "k", "repeat", "metric", "value"])


def test_c1_and_c2_are_per_seed_with_architectures_averaged():
    ev = evaluations([0.030, 0.031, 0.029, 0.030, 0.032], [0.029, 0.030, 0.029, 0.031, 0.030], archs=("a", "b"))
    subs = pd.DataFrame({"run_id": [r for r in ev.run_id.unique() for _ in range(3)], "error": [0.05, 0.06, 0.07] * 10})
    c1 = c1_values(ev, subs)
    assert list(c1.index) == SEEDS  # 10 runs, 5 replicates
    # seed 0: arch a 0.06 - 0.029, arch b 0.06 - 0.039 -> mean 0.026
    assert math.isclose(c1.loc[0], 0.026)
    c2 = c2_values(ev)
    assert np.allclose(c2.to_numpy(), [0.001, 0.001, 0.0, -0.001, 0.002])
    table = claims_table({"mc_vs_ws": {"evaluations": ev, "subnetworks": subs}})
    assert list(table.columns) == COLUMNS
    tested = table[table.test != "descriptive"].set_index("test")
    assert tested.loc["directional", "verdict"] == "supported" and tested.loc["directional", "n"] == 5
    assert tested.loc["equivalence", "verdict"] == "supported" and tested.loc["equivalence", "method"] == "student-t"
    far = evaluations([0.05, 0.052, 0.051, 0.05, 0.053], [0.03, 0.031, 0.029, 0.03, 0.031])
    far_table = claims_table({"mc_vs_ws": {"evaluations": far, "subnetworks": subs[subs.run_id.str.startswith("r0")]}})
    assert far_table[far_table.test == "equivalence"].verdict.item() == "contradicted"


def test_too_few_seeds_withhold_the_verdict():
    ev = evaluations([0.030, 0.031, 0.029], [0.029, 0.030, 0.029], archs=("a", "b"))  # 6 runs, 3 seeds
    subs = pd.DataFrame({"run_id": ev.run_id.unique(), "error": 0.06})
    table = claims_table({"mc_vs_ws": {"evaluations": ev, "subnetworks": subs}})
    tested = table[table.test != "descriptive"]
    assert set(tested.verdict) == {"withheld"} and set(tested.n) == {3}
    assert tested.reason.str.contains("3 replicates with a value, fewer than the first look's 5").all()


JITTER = [1.0, -1.0, 0.5, -0.5, 0.0]  # per seed: replicate values that are not all equal (zero spread gets no test)


def data_size_runs(gain_small, gain_large, wide_bonus=0.01, jitter=0.0):
    rows = []
    for seed in SEEDS:
        for width, wgain in ((64, 0.0), (1024, wide_bonus)):
            for size, g in ((100, gain_small), (3600, gain_large)):
                base = 0.1 + 0.001 * seed + 0.0005 * (seed % 2) * (width == 64)
                noise = jitter * JITTER[seed] if (width, size) == (1024, 100) else 0.0
                rows.append((seed, width, size, 0.5, base - g - wgain - 0.0003 * seed - noise))
                rows.append((seed, width, size, 0.0, base))
    return pd.DataFrame(rows, columns=["seed", "width", "train_size", "p_drop_hidden", "test_error"])


def test_c4_c4b_c8_average_cells_within_the_seed():
    v = c4_values(data_size_runs(gain_small=0.05, gain_large=0.01))
    assert list(v["C4"].index) == SEEDS
    # seed s: gains 0.05, 0.01 (width 64) and 0.06, 0.02 (width 1024), each + 0.0003 s
    assert np.allclose(v["C4"].to_numpy(), 0.035 + 0.0003 * np.array(SEEDS))
    assert np.allclose(v["C4b"].to_numpy(), 0.04) and np.allclose(v["C8"].to_numpy(), 0.01)
    rows = claims_table({"data_size": {"runs": data_size_runs(0.05, 0.01, jitter=0.002)}}).set_index("claim")
    assert (
        rows.loc["C4", "verdict"] == "supported"
        and rows.loc["C4b", "verdict"] == "supported"
        and rows.loc["C8", "verdict"] == "supported"
    )
    hurt = claims_table(
        {"data_size": {"runs": data_size_runs(-0.05, -0.06, wide_bonus=-0.01, jitter=0.002)}}
    ).set_index("claim")
    flat = claims_table({"data_size": {"runs": data_size_runs(0.05, 0.01)}}).set_index("claim")
    assert flat.loc["C4b", "verdict"] == "inconclusive" and flat.loc["C4b", "reason"].startswith("no spread")
    assert (
        hurt.loc["C4", "verdict"] == "contradicted"
        and hurt.loc["C4b", "verdict"] == "supported"
        and hurt.loc["C8", "verdict"] == "contradicted"
    )


def test_c3_is_paired_by_seed_and_a_dead_layer_drops_out():
    runs = pd.DataFrame(
        {"run_id": [f"r{i}" for i in range(10)], "seed": SEEDS * 2, "p_drop_hidden": [0.0] * 5 + [0.5] * 5}
    )
    value = [0.30, 0.31, 0.32, 0.33, 0.30, 0.20, 0.22, 0.21, 0.20, math.nan]  # seed 4's dropout run has a dead layer
    co = pd.DataFrame({"run_id": runs.run_id, "layer": "hidden1", "metric": "mean_abs_r", "value": value})
    v = c3_values(co, runs)["hidden1"]
    assert list(v.index) == [0, 1, 2, 3] and np.allclose(v.to_numpy(), [0.10, 0.09, 0.11, 0.13])
    table = claims_table({"coadaptation": {"coadaptation": co, "runs": runs}})
    assert table.verdict.item() == "withheld" and table.n.item() == 4  # the dead layer is not counted as decorrelated
    full = co.assign(value=[0.30, 0.31, 0.32, 0.33, 0.30, 0.20, 0.22, 0.21, 0.20, 0.19])
    assert claims_table({"coadaptation": {"coadaptation": full, "runs": runs}}).verdict.item() == "supported"
    flipped = full.assign(value=full.value[::-1].to_numpy())
    assert claims_table({"coadaptation": {"coadaptation": flipped, "runs": runs}}).verdict.item() == "contradicted"


def grid_runs(test_penalty_at_best=0.0, rec_extra=0.0, jitter=0.0):
    """Validation error is lowest at (0.2, 0.75); test error adds `test_penalty_at_best` there."""
    rows = []
    for pi in (0.0, 0.2, 0.5):
        for ph in (0.0, 0.5, 0.75):
            for s in SEEDS:
                val = 0.05 + 0.01 * abs(pi - 0.2) + 0.01 * abs(ph - 0.75) + 0.0001 * s
                test = (
                    val
                    + (test_penalty_at_best if (pi, ph) == (0.2, 0.75) else 0.0)
                    + (rec_extra * (1 + s / 10) + jitter * JITTER[s] if (pi, ph) == RECOMMENDED else 0.0)
                )
                rows.append((pi, ph, s, val, test))
    return pd.DataFrame(rows, columns=["p_drop_input", "p_drop_hidden", "seed", "val_error", "test_error"])


def test_c5_chooses_the_best_cell_on_validation_and_needs_the_margin():
    runs = grid_runs(test_penalty_at_best=0.02)  # on test the best cell looks bad: it must still be the one chosen
    assert c5_best_cells(runs).tolist() == [(0.2, 0.75)] * 5
    assert np.allclose(c5_values(runs).to_numpy(), 0.0025 - 0.02)
    # each seed chooses on its own validation split: seed 4 finds (0.0, 0.5) best and is compared with it
    own = runs.copy()
    own.loc[(own.seed == 4) & (own.p_drop_input == 0.0) & (own.p_drop_hidden == 0.5), "val_error"] = 0.01
    assert c5_best_cells(own).to_dict() == {
        0: (0.2, 0.75),
        1: (0.2, 0.75),
        2: (0.2, 0.75),
        3: (0.2, 0.75),
        4: (0.0, 0.5),
    }
    at = own.set_index(["seed", "p_drop_input", "p_drop_hidden"]).test_error
    assert c5_values(own)[4] == pytest.approx(at[4, 0.2, 0.5] - at[4, 0.0, 0.5])
    table = claims_table({"rate_grid": {"runs": own}})
    assert "((0.2, 0.75) in 4 seeds, (0.0, 0.5) in 1)" in table.statistic.item()
    assert (
        claims_table({"rate_grid": {"runs": grid_runs(test_penalty_at_best=0.02, jitter=0.001)}}).verdict.item()
        == "supported"
    )
    worse = grid_runs(rec_extra=0.02)  # recommended 2.25 points worse than the best: beyond the 0.5-point margin
    assert claims_table({"rate_grid": {"runs": worse}}).verdict.item() == "contradicted"
    close = grid_runs(rec_extra=0.0025 + 0.0 * EQUIVALENCE_MARGIN)  # about the margin: neither
    close.loc[(close.p_drop_input == 0.2) & (close.p_drop_hidden == 0.5), "test_error"] += np.tile(
        [0.004, -0.004, 0.0, 0.003, -0.003], 1
    )
    assert claims_table({"rate_grid": {"runs": close}}).verdict.item() == "inconclusive"


def keep_sweep_runs(extra_gain_with_dropout: float) -> pd.DataFrame:
    """Test errors where widening 128 -> 128 / keep helps by 1 point per doubling without dropout,
    and by `extra_gain_with_dropout` more with dropout (at every keep below 1)."""
    rows = []
    for p in (0.0, 0.5, 0.8):
        keep = 1 - p
        for s in SEEDS:
            for w in (128, 256, round(128 / keep), 640):
                doublings = np.log2(w / 128)
                err = (
                    0.08
                    - 0.01 * doublings
                    - (
                        extra_gain_with_dropout * doublings / np.log2(1 / keep)
                        if p > 0 and w > 128 and w <= round(128 / keep)
                        else 0
                    )
                )
                rows.append((p, w, s, err + p / 10 + s / 1000 + (s % 2) * 1e-4 * w / 128))
    return pd.DataFrame(rows, columns=["p_drop_hidden", "width", "seed", "test_error"]).drop_duplicates(
        ["p_drop_hidden", "width", "seed"]
    )


def test_c6_is_a_difference_of_differences_against_no_dropout_controls():
    # widening helps without dropout exactly as much as with it: the old C6 (gain at the same keep,
    # no control) counted that as support; the difference of differences is 0
    same = keep_sweep_runs(0.0)
    naive = c6_values(same, control=False)
    assert np.all(naive.to_numpy() > 0.009)  # 1 point for keep 0.5 (one doubling), 2.3 for keep 0.2, averaged
    v = c6_values(same)
    assert list(v.index) == SEEDS and np.allclose(v.to_numpy(), 0.0, atol=1e-3)
    tested = claims_table({"keep_sweep": {"runs": same}})
    assert tested.loc[tested.test == "directional", "verdict"].item() != "supported"
    # an extra gain of 0.5 points with dropout at each keep: exactly that difference of differences
    extra = keep_sweep_runs(0.005)
    v = c6_values(extra)
    assert np.allclose(v.to_numpy(), 0.005, atol=1e-3)
    # a keep whose control is missing takes no part
    no_control = extra[~((extra.p_drop_hidden == 0) & (extra.width == 640))]
    assert np.allclose(c6_values(no_control).to_numpy(), 0.005, atol=1e-3)


def test_c7_compares_conv_dropout_with_fc_only():
    def placement(every, fc):
        rows = []
        for s in SEEDS:
            rows.append(
                ("weight_scaled", "error", "input=0,block1=0.25,block2=0.25,hidden1=0.5", 0.5, s, every + s / 1000)
            )
            rows.append(("weight_scaled", "error", "input=0,block1=0,block2=0,hidden1=0.5", 0.5, s, fc + s / 500))
            rows.append(("weight_scaled", "error", "input=0,block1=0,block2=0,hidden1=0", 0.0, s, 0.5))
        return pd.DataFrame(rows, columns=["mode", "metric", "p_drop_sites", "p_drop_hidden", "seed", "value"])

    assert np.allclose(c7_values(placement(0.03, 0.02)).to_numpy(), 0.01 - np.array(SEEDS) / 1000)
    assert claims_table({"placement": {"evaluations": placement(0.03, 0.02)}}).verdict.item() == "supported"
    assert claims_table({"placement": {"evaluations": placement(0.01, 0.02)}}).verdict.item() == "contradicted"


def test_holm_adjusts_across_the_family_and_the_report_shows_every_column():
    tables = {
        "data_size": {"runs": data_size_runs(0.05, 0.01, jitter=0.002)},
        "placement": {
            "evaluations": pd.DataFrame(
                [
                    ("weight_scaled", "error", sites, 0.5, s, v)
                    for s, noise in zip(SEEDS, (0.001, -0.002, 0.0005, 0.0, 0.0008), strict=False)
                    for sites, v in (
                        ("input=0,block1=0.25,block2=0.25,hidden1=0.5", 0.03 + s / 1000 + noise),
                        ("input=0,block1=0,block2=0,hidden1=0.5", 0.03 + s / 1000),
                    )
                ],
                columns=["mode", "metric", "p_drop_sites", "p_drop_hidden", "seed", "value"],
            )
        },
    }
    table = claims_table(tables)
    tested = table[table.n >= 5]
    m = len(tested)
    assert m == 4 and (table.p_adjusted >= table.p_value).all()
    p = np.sort(tested.p_value.to_numpy())
    holm = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p))  # Holm by hand
    assert np.allclose(np.sort(tested.p_adjusted.to_numpy()), holm)
    shown = show_claims(table)
    assert {
        "95% interval",
        "method",
        "n",
        "p",
        "p (Holm)",
        "effect (sd)",
        "MDE",
        "seeds needed",
        "verdict",
        "reason",
    } <= set(shown.columns)
    c7 = table[table.claim == "C7"].iloc[0]
    assert (
        c7.verdict == "negligible" and -0.005 < c7.ci_low and c7.ci_high < 0.005
    )  # within +-SESOI: an answer, not "no verdict"


def test_summarize_carries_n_interval_and_method():
    df = pd.DataFrame({"g": ["a"] * 4 + ["b"], "test_error": [0.125, 0.125, 0.125, 0.125, 0.25]})
    s = summarize(df, ["g"], ["test_error"])
    a = s[s.g == "a"].iloc[0]
    assert (
        a.n == 4 and a.test_error == a.test_error_ci_low == a.test_error_ci_high == 0.125 and a.interval == "student-t"
    )
    b = s[s.g == "b"].iloc[0]
    assert b.n == 1 and math.isnan(b.test_error_ci_low)
    assert fmt_cell(s).loc[0, "test_error (%)"] == "12.5 [12.5, 12.5]"
    # an AUROC near 1: the t interval's upper end passes 1 and is cut there; NLL is unbounded and is not cut
    near = summarize(
        pd.DataFrame({"g": ["a"] * 3, "auroc": [0.9, 1.0, 1.0], "nll": [0.9, 1.0, 1.0]}), ["g"], ["auroc", "nll"]
    ).iloc[0]
    assert near.auroc_ci_high == 1.0 and near.nll_ci_high > 1.0 and near.auroc_ci_low == near.nll_ci_low


def robustness_table(value, replicates=5, members=2):
    """A robustness `shift` table: per replicate, `members` dropout nets (weight_scaled, and
    mc_shared at k = M = 2, 4 (equal compute) and T = 6) and one ensemble per group, on the test
    split and two rotations; value(method, set, replicate, member) gives each row's value."""
    rows = []
    sets = [("test", "none", 0.0), ("rotation_90", "rotation", 90.0), ("rotation_180", "rotation", 180.0)]
    for r in range(replicates):
        units = [
            (f"d{r}{m}", "dropout", mode, k, m)
            for m in range(members)
            for mode, k in [
                ("weight_scaled", 0),
                ("temperature_scaled", 0),
                ("mc_shared", 2),
                ("mc_shared", 4),
                ("mc_shared", 6),
            ]
        ]
        units += [(f"n{r}{m}", "no dropout", "weight_scaled", 0, m) for m in range(members)]
        units += [
            (f"de{r}", "dropout", "ensemble", members, 0.5),
            (f"ne{r}", "no dropout", "ensemble", members, 0.5),
        ]  # m: the members' mean
        for run_id, group, mode, k, m in units:
            for name, shift, intensity in sets:
                for metric in ("nll", "ece", "error", "brier_diversity"):
                    rows.append(
                        (
                            run_id,
                            name,
                            shift,
                            intensity,
                            mode,
                            k,
                            metric,
                            group,
                            r,
                            value((group, mode, k), name, r, m) + (metric == "ece"),
                        )
                    )
    return pd.DataFrame(
        rows, columns=["run_id", "set", "shift", "intensity", "mode", "k", "metric", "group", "replicate", "value"]
    )


def test_methods_are_named_by_their_k():
    t = label_method(robustness_table(lambda *a: 0.0))
    got = t.drop_duplicates(["group", "mode", "k"]).set_index(["group", "mode", "k"])["method"].to_dict()
    assert got == {
        ("dropout", "weight_scaled", 0): "weight scaling",
        ("dropout", "temperature_scaled", 0): "temperature scaling",
        ("dropout", "mc_shared", 2): "subnetworks (k = M)",
        ("dropout", "mc_shared", 4): "subnetworks (equal compute)",
        ("dropout", "mc_shared", 6): "subnetworks (k = T)",
        ("no dropout", "weight_scaled", 0): "single net",
        ("dropout", "ensemble", 2): "dropout ensemble",
        ("no dropout", "ensemble", 2): "deep ensemble",
    }


def test_c9_is_a_per_replicate_difference_with_the_ensemble_gains_described():
    base = {
        ("dropout", "mc_shared", 2): 1.0,
        ("dropout", "mc_shared", 6): 0.5,
        ("dropout", "ensemble", 2): 0.7,
        ("no dropout", "ensemble", 2): 0.9,
        ("dropout", "weight_scaled", 0): 0.8,
        ("dropout", "temperature_scaled", 0): 0.6,
        ("dropout", "mc_shared", 4): 0.95,
    }

    def value(method, name, r, m):
        # rotations add 1 + r / 10 to every method; members differ by m / 100 (averaged within the replicate)
        return base.get(method, 0.0) + (name != "test") * (1 + r / 10) + m / 100 + r / 100

    t = robustness_table(value)
    v9 = c9_values(t)
    assert np.allclose(v9["nll"], 0.3) and np.allclose(v9["nll_deep"], 0.1) and np.allclose(v9["nll_compute"], 0.25)
    # the diversity row: the independent nets' Brier diversity - the subnetworks'
    assert np.allclose(v9["diversity"], -0.3) and list(v9["nll"].index) == [0, 1, 2, 3, 4]
    t = t.assign(
        value=t.value + t.replicate.map(lambda r: 0.01 * JITTER[r]) * (t.group == "dropout") * t["mode"].eq("mc_shared")
    )
    table = claims_table({"ensemble_vs_dropout": {"shift": t}})
    tested = table[table.test == "directional"].set_index("statistic")["verdict"]
    assert list(tested) == ["supported", "contradicted"]
    member = t[t.metric == "nll"].assign(
        metric="member_nll", value=lambda d: d.value + 0.2
    )  # members 0.2 nats worse than their ensemble
    v9 = c9_values(pd.concat([t, member]))
    assert np.allclose(v9["gain_subnetworks"], -0.2) and np.allclose(v9["gain_ensemble"], -0.2)


C10_SETS = {
    "test": ("none", 0.0, 0.04),
    "rotation_30": ("rotation", 30.0, 0.05),
    "rotation_60": ("rotation", 60.0, 0.2),
    "rotation_180": ("rotation", 180.0, 0.8),
    "shot_noise_1": ("corruption", 1.0, 0.07),
}  # weight-scaled error of each set
C10_ECE = {
    ("dropout", "weight_scaled", 0): 0.10,
    ("dropout", "mc_shared", 6): 0.06,
    ("dropout", "ensemble", 2): 0.08,
    ("dropout", "ensemble_mc", 6): 0.05,
    ("no dropout", "ensemble", 2): 0.09,
    ("dropout", "temperature_scaled", 0): 0.07,
}


def c10_table(replicates=5, members=2):
    """A robustness table with T = 6, M = 2: one net's modes, ensembles of both modes, on sets of
    known weight-scaled error; ECE by method (C10_ECE) + a set offset + replicate noise, and
    weight scaling worse by r / 1000 in replicate r."""
    rows = []
    for r in range(replicates):
        units = [
            (f"d{r}{m}", "dropout", mode, k, m)
            for m in range(members)
            for mode, k in [
                ("weight_scaled", 0),
                ("temperature_scaled", 0),
                ("mc_shared", 2),
                ("mc_shared", 3),
                ("mc_shared", 6),
            ]
        ]
        units += [(f"n{r}{m}", "no dropout", "weight_scaled", 0, m) for m in range(members)]
        units += [
            (f"de{r}", "dropout", "ensemble", members, 0.5),
            (f"dm{r}", "dropout", "ensemble_mc", 6, 0.5),
            (f"ne{r}", "no dropout", "ensemble", members, 0.5),
        ]
        for run_id, group, mode, k, m in units:
            for name, (shift, intensity, error) in C10_SETS.items():
                offset = (
                    {"rotation_30": 0.01, "rotation_60": 0.02, "rotation_180": 0.3}.get(name, 0.0) + r / 100 + m / 100
                )
                ece = C10_ECE.get((group, mode, k), 0.2) + offset + (r / 1000 if mode == "weight_scaled" else 0.0)
                for metric, v in (("error", error), ("ece", ece), ("overconfidence", -ece / 2)):
                    rows.append((run_id, name, shift, intensity, mode, k, metric, group, r, v))
    return pd.DataFrame(
        rows, columns=["run_id", "set", "shift", "intensity", "mode", "k", "metric", "group", "replicate", "value"]
    )


def test_severity_bands_follow_the_weight_scaled_error_with_fixed_thresholds():
    bands = severity_bands(c10_table())
    # clean error 0.04, chance 0.9 (10 classes): mild below 0.04 + 0.15 x 0.86 = 0.169, severe from
    # 0.04 + 0.5 x 0.86 = 0.47
    assert bands.to_dict() == {
        "rotation_30": "mild",
        "rotation_60": "moderate",
        "rotation_180": "severe",
        "shot_noise_1": "mild",
    }
    assert MILD_SHARE == 0.15 and SEVERE_SHARE == 0.5


def test_severity_bands_on_a_dataset_with_high_clean_error():
    """MNIST-1D-like: clean error 0.3, shifted sets at 0.35, 0.5 and 0.8. Bands fixed for MNIST
    (severe above 50% error) would call two of them severe; between clean error and chance they
    are mild, moderate and severe, and C10 is tested on the first two."""
    sets = {
        "test": ("none", 0.0, 0.3),
        "noise_1": ("corruption", 1.0, 0.35),
        "noise_2": ("corruption", 2.0, 0.5),
        "noise_3": ("corruption", 3.0, 0.8),
    }
    t = c10_table()
    t = t[t["set"].isin(["test", "rotation_30", "rotation_60", "rotation_180"])].replace(
        {"set": dict(zip(["test", "rotation_30", "rotation_60", "rotation_180"], sets, strict=False))}
    )
    t = t.assign(
        shift=t["set"].map({k: v[0] for k, v in sets.items()}),
        intensity=t["set"].map({k: v[1] for k, v in sets.items()}),
    )
    t.loc[t.metric == "error", "value"] = t.loc[t.metric == "error", "set"].map({k: v[2] for k, v in sets.items()})
    assert severity_bands(t).to_dict() == {"noise_1": "mild", "noise_2": "moderate", "noise_3": "severe"}
    # with 3 classes chance is 0.67: 0.5 lies 54% of the way from 0.3, severe
    assert severity_bands(t, n_classes=3).to_dict() == {"noise_1": "mild", "noise_2": "severe", "noise_3": "severe"}
    tested = claims_table({"shift": {"shift": t}})
    tested = tested[tested.test == "directional"]
    assert (
        len(tested) == 4
        and tested.statistic.str.contains("mild").sum() == 2
        and tested.statistic.str.contains("moderate").sum() == 2
    )


def test_c10_is_a_2x2_design_tested_on_mild_and_moderate_shift():
    t = c10_table()
    v = c10_values(t)
    r = np.arange(5) / 1000
    # mild (rotation_30 and shot_noise_1): one net, weight scaled - subnetworks = 0.04 + r / 1000
    assert (
        np.allclose(v["mode_mild"], 0.04 + r)
        and np.allclose(v["mode_moderate"], 0.04 + r)
        and np.allclose(v["mode_severe"], 0.04 + r)
    )
    # independence at a fixed mode and number of subnetworks: T subnetworks of one net - M nets with T / M each
    assert np.allclose(v["independence_mild"], 0.01) and np.allclose(v["mode_M_mild"], 0.03)
    assert np.allclose(v["deep_moderate"], -0.03) and np.allclose(v["ts_moderate"], 0.01)
    assert np.allclose(v["over_mild_one net, subnetworks"], -(0.06 + 0.005 + 0.005 + np.arange(5) / 100) / 2)
    table = claims_table({"shift": {"shift": t}})
    tested = table[table.test == "directional"]
    assert (
        len(tested) == 4
        and tested.statistic.str.contains("mild").sum() == 2
        and tested.statistic.str.contains("moderate").sum() == 2
    )
    assert not table[table.statistic.str.contains("severe")].test.ne("descriptive").any()
    mode = tested[tested.statistic.str.contains("weight scaling - T subnetworks")]
    assert (mode.verdict == "supported").all()
    # the independence rows have zero spread here: no test, whatever the estimate
    indep = tested[tested.statistic.str.contains("T subnetworks of one net")]
    assert (
        (indep.verdict == "inconclusive").all()
        and indep.reason.str.startswith("no spread").all()
        and indep.p_value.isna().all()
    )


def test_ood_values_are_per_replicate_and_unseen_set():
    rows = [
        (f"d{r}{m}", s, "mc_shared", 6, "disagreement", "auroc", 0.6 + r / 100 + m / 10, "dropout", r)
        for r in range(5)
        for m in range(2)
        for s in ("patches", "permuted")
    ]
    rows += [(f"de{r}", "patches", "ensemble", 2, "disagreement", "auroc", 0.5, "dropout", r) for r in range(5)]
    ood = pd.DataFrame(rows, columns=["run_id", "set", "mode", "k", "score", "metric", "value", "group", "replicate"])
    v = ood_values(ood, "subnetworks (k = T)", "disagreement")
    assert set(v) == {"patches", "permuted"} and np.allclose(v["patches"], [0.65, 0.66, 0.67, 0.68, 0.69])


def test_every_entry_of_specs_names_a_claim_a_study_and_a_test():
    from harness.sweep.studies import STUDIES

    for spec in SPECS:
        assert spec.claim in CLAIMS and spec.study in STUDIES and spec.test in TESTS and spec.needs
    assert set(CLAIMS) == {s.claim for s in SPECS}


def test_the_tested_rows_per_study_are_counted_from_specs():
    """The looks driver's bound before tables exist: one tested row per tested entry (C10's per
    tested band), coadaptation's per hidden layer (None); the numbers once typed by hand."""
    assert TESTED_ROWS == {
        "mc_vs_ws": 2,
        "keep_sweep": 1,
        "data_size": 3,
        "features": 0,
        "coadaptation": None,
        "rate_grid": 1,
        "placement": 1,
        "exact": 1,
        "ensemble_vs_dropout": 2,
        "shift": 4,
    }


def test_claims_command_prints_one_study(tmp_path, monkeypatch, capsys):
    from analysis import claims
    from analysis.tables import write

    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    t = robustness_table(
        lambda method, name, r, m: (
            {("dropout", "mc_shared", 6): 0.5, ("dropout", "ensemble", 2): 0.7}.get(method, 0.0) + r / 100
        )
    )
    for study in ("ensemble_vs_dropout", "shift"):
        write({"runs": pd.DataFrame({"run_id": ["x"]}), "shift": t}, tmp_path / "reports" / "quick" / "tables" / study)
    assert claims.main(["--profile", "quick", "--study", "shift"]) == 0
    out = capsys.readouterr().out
    assert (
        "Holm across the 0 tested rows of 2 studies" in out and "C10" in out and "C9 " not in out
    )  # zero spread or n = 0: none enters Holm
    with pytest.raises(SystemExit, match="no tables of placement"):
        claims.main(["--profile", "quick", "--study", "placement"])


def test_claims_command_reads_the_setting_of_a_dataset_and_says_what_it_skipped(tmp_path, monkeypatch, capsys):
    from analysis import claims
    from analysis.tables import write

    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    t = robustness_table(
        lambda method, name, r, m: (
            {("dropout", "mc_shared", 6): 0.5, ("dropout", "ensemble", 2): 0.7}.get(method, 0.0) + r / 100
        )
    )
    tables = tmp_path / "reports" / "quick-mnist1d" / "tables"
    write(
        {"runs": pd.DataFrame({"run_id": ["x"]}), "shift": t},
        tables / "shift",
        {"dataset": "mnist1d", "skipped": None, "notes": ["rotations of a 1-D signal"]},
    )
    write(
        {"runs": pd.DataFrame({"run_id": pd.Series(dtype=str)})},
        tables / "placement",
        {"dataset": "mnist1d", "skipped": "no images", "notes": []},
    )
    assert claims.main(["--profile", "quick", "--dataset", "mnist1d"]) == 0
    out = capsys.readouterr().out
    assert (
        out.startswith("claims (quick-mnist1d; Holm across the 0 tested rows of 1 studies with tables):")
        and "C10" in out
    )
    assert claims.main(["--profile", "quick", "--dataset", "mnist1d", "--study", "placement"]) == 0
    assert capsys.readouterr().out == "claims (quick-mnist1d): placement was skipped on this dataset: no images\n"
    with pytest.raises(
        SystemExit, match=r"no tables of exact \(quick-mnist1d\); run `make exact PROFILE=quick DATASET=mnist1d` first"
    ):
        claims.main(["--profile", "quick", "--dataset", "mnist1d", "--study", "exact"])
    with pytest.raises(SystemExit, match="no tables of shift"):  # the default setting is another folder
        claims.main(["--profile", "quick", "--study", "shift"])


def test_a_setting_whose_runs_hit_their_budget_withholds_its_claims():
    runs = data_size_runs(0.05, 0.01, jitter=0.002)
    converged = runs.assign(stopped_by="patience")
    table = claims_table({"data_size": {"runs": converged}})
    assert (table.stopped_by_patience == 1.0).all() and table.verdict.isin(["supported", "contradicted"]).any()
    # one arm (no dropout at the largest size, one width) stopped by patience in 4 of its 5 runs: 80% < 90%
    arm = (runs.p_drop_hidden == 0.0) & (runs.train_size == runs.train_size.max()) & (runs.width == runs.width.max())
    first = arm & (runs.seed == runs[arm].seed.min())
    table = claims_table({"data_size": {"runs": runs.assign(stopped_by=np.where(first, "budget", "patience"))}})
    tested = table[table.test != "descriptive"]
    assert (tested.verdict == "withheld").all() and tested.repeated_p.isna().all()
    assert tested.reason.str.contains(
        r"withheld: only 80% of the runs of one arm it reads \(width 1024, p_drop_hidden 0.0, train_size 3600\)"
    ).all()
    assert tested.reason.str.contains("raise the setting's budget").all()
    # at 90% in every arm nothing is withheld; a table that does not say how runs stopped withholds nothing
    assert claims_table({"data_size": {"runs": runs}}).stopped_by_patience.isna().all()
    assert not (claims_table({"data_size": {"runs": runs}}).verdict == "withheld").any()


def test_convergence_is_counted_over_the_runs_a_claim_reads():
    sweep = keep_sweep_runs(0.005)
    # the fixed-width arm at keep 0.2 (256 units), which C6 does not read, hit the budget; C6's own arms stopped by
    # patience
    unread = (sweep.p_drop_hidden == 0.8) & (sweep.width == 256)
    sweep = sweep.assign(stopped_by=np.where(unread, "budget", "patience"))
    # it reads n0 = 128 and n0 / keep at each keep, and both widths without dropout: not 640 at keep 0.5 nor 256 at
    # keep 0.2
    assert set(map(tuple, c6_runs(sweep)[["p_drop_hidden", "width"]].drop_duplicates().to_numpy())) == {
        (0.0, 128),
        (0.0, 256),
        (0.0, 640),
        (0.5, 128),
        (0.5, 256),
        (0.8, 128),
        (0.8, 640),
    }
    rows = claims_table({"keep_sweep": {"runs": sweep}}).set_index("test")
    assert rows.loc["directional", "stopped_by_patience"] == 1.0
    assert rows.loc["descriptive", "stopped_by_patience"] == 1.0


def test_keep_sweep_figure_finds_its_designs_in_the_studys_own_runs():
    """The no-dropout controls (trained at keep 1 only) must not be taken for Figure 9's width n."""
    from analysis.fig_keep_sweep import designs
    from harness.sweep.experiment import load_experiment

    cfgs = load_experiment("experiments/keep_sweep.py", "quick").configs
    runs = pd.DataFrame(
        {
            "width": [c.model.widths[0] for c in cfgs],
            "p_drop_hidden": [c.model.p_drop_hidden[0] for c in cfgs],
            "seed": [c.seed for c in cfgs],
            "test_error": 0.05,
            "train_error": 0.01,
        }
    )
    panels, base, widened, controls, n = designs(runs)
    assert n == 256 and set(panels["(a) fixed width n"].keep) == {1.0, 0.5, 0.2}
    assert set(map(tuple, widened[["keep", "width"]].drop_duplicates().to_numpy())) == {
        (1.0, 128),
        (0.5, 256),
        (0.2, 640),
    }
    assert set(base.keep) == {1.0, 0.5, 0.2} and set(base.width) == {128}
    assert set(map(tuple, controls[["keep", "width"]].drop_duplicates().to_numpy())) == {(0.5, 256), (0.2, 640)}


def test_claims_command_counts_the_rows_that_entered_holm(tmp_path, monkeypatch, capsys):
    """A tested row with zero spread has no p-value and stays out of Holm's family: the count the
    command prints is the family's, not the number of tested rows."""
    from analysis import claims
    from analysis.tables import write

    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    tables = tmp_path / "reports" / "quick" / "tables"
    flat = pd.DataFrame(
        [
            ("weight_scaled", "error", sites, 0.5, s, 0.03)
            for s in SEEDS
            for sites in ("input=0,block1=0.25,block2=0.25,hidden1=0.5", "input=0,block1=0,block2=0,hidden1=0.5")
        ],
        columns=["mode", "metric", "p_drop_sites", "p_drop_hidden", "seed", "value"],
    )
    write({"runs": pd.DataFrame({"run_id": ["x"]}), "evaluations": flat}, tables / "placement")
    write({"runs": data_size_runs(0.05, 0.01, jitter=0.002)}, tables / "data_size")
    assert claims.main(["--profile", "quick"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("claims (quick; Holm across the 3 tested rows of 2 studies with tables):"), (
        out
    )  # C4, C4b, C8; not C7
    assert "C7   inconclusive" in out
