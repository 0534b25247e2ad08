"""Analysis on hand-made tables with known answers: verdicts flip when the data flip."""

import math

import numpy as np
import pandas as pd

from analysis.claims import EQUIVALENCE_MARGIN, c1, c2, c3, c4, c5, c6, c7, c8, verdict
from analysis.report import fmt_cell, summarize


def test_verdict_rules():
    assert verdict(0.01, 0.03) == "supported" and verdict(-0.03, -0.01) == "contradicted" and verdict(-0.01, 0.01) == "inconclusive"
    assert verdict(math.nan, math.nan) == "inconclusive"
    assert verdict(0.01, 0.03, n=2) == "inconclusive"  # too few observations for any verdict
    m = EQUIVALENCE_MARGIN
    assert verdict(-m / 2, m / 2, "equivalence") == "supported"
    assert verdict(m * 1.5, m * 3, "equivalence") == "contradicted"
    assert verdict(-m / 2, m * 2, "equivalence") == "inconclusive"
    assert verdict(-0.01, 0.02, "noninferiority") == "supported" and verdict(0.01, 0.02, "noninferiority") == "contradicted"


def evaluations(ws_err, mc_err):
    rows = []
    for i, (w, m) in enumerate(zip(ws_err, mc_err)):
        rows += [(f"r{i}", "weight_scaled", 0, 0, "error", w), (f"r{i}", "mc_shared", 50, 0, "error", m), (f"r{i}", "mc_shared", 100, 0, "error", m),
                 (f"r{i}", "mc_shared", 100, 1, "error", m)]
    return pd.DataFrame(rows, columns=["run_id", "mode", "k", "repeat", "metric", "value"])


def test_c1_and_c2_flip_with_the_data():
    ev = evaluations([0.030, 0.031, 0.029, 0.030], [0.029, 0.030, 0.029, 0.031])
    subs = pd.DataFrame({"run_id": [f"r{i}" for i in range(4) for _ in range(3)], "error": [0.05, 0.06, 0.07] * 4})
    assert c1(ev, subs)["verdict"] == "supported" and c1(ev, subs)["n"] == 4
    assert math.isclose(c1(ev, subs)["estimate"], 0.06 - 0.02975)
    worse = subs.assign(error=0.01)
    assert c1(ev, worse)["verdict"] == "contradicted"
    assert c2(ev)["verdict"] == "supported"
    far = evaluations([0.05, 0.052, 0.051, 0.05], [0.03, 0.031, 0.029, 0.03])
    assert c2(far)["verdict"] == "contradicted"


def data_size_runs(gain_small, gain_large):
    rows = []
    for seed in (0, 1):
        for width, wgain in ((64, 0.0), (1024, 0.01)):
            for size, g in ((100, gain_small), (3600, gain_large)):
                base = 0.1 + 0.001 * seed
                rows.append((seed, width, size, 0.5, base - g - wgain))
                rows.append((seed, width, size, 0.0, base))
    return pd.DataFrame(rows, columns=["seed", "width", "train_size", "p_drop_hidden", "test_error"])


def test_c4_and_c8():
    runs = data_size_runs(gain_small=0.05, gain_large=0.01)
    a, b = c4(runs)
    assert a["verdict"] == "supported" and b["verdict"] == "supported" and math.isclose(b["estimate"], 0.04)
    assert c8(runs)["verdict"] == "supported" and math.isclose(c8(runs)["estimate"], 0.01)
    hurt = data_size_runs(gain_small=-0.05, gain_large=-0.06)
    a, b = c4(hurt)
    assert a["verdict"] == "contradicted" and b["verdict"] == "supported"
    flipped = data_size_runs(gain_small=0.01, gain_large=0.05)
    assert c4(flipped)[1]["verdict"] == "contradicted"


def test_c3_c5_c6_c7():
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(6)], "seed": [0, 1, 2] * 2, "p_drop_hidden": [0.0] * 3 + [0.5] * 3})
    co = pd.DataFrame({"run_id": runs.run_id, "layer": "hidden1", "metric": "mean_abs_r", "value": [0.30, 0.31, 0.32, 0.20, 0.22, 0.21]})
    assert [r["verdict"] for r in c3(co, runs)] == ["supported"]
    assert [r["verdict"] for r in c3(co.assign(value=co.value[::-1].to_numpy()), runs)] == ["contradicted"]

    grid = pd.DataFrame([(pi, ph, s, 0.05 + 0.01 * abs(pi - 0.2) + 0.01 * abs(ph - 0.5) + 0.001 * s) for pi in (0.0, 0.2) for ph in (0.0, 0.5) for s in (0, 1, 2)],
                        columns=["p_drop_input", "p_drop_hidden", "seed", "test_error"])
    assert c5(grid)["verdict"] == "supported" and c5(grid)["estimate"] == 0.0
    worse = grid.assign(test_error=np.where((grid.p_drop_input == 0.2) & (grid.p_drop_hidden == 0.5), 0.2, grid.test_error))
    assert c5(worse)["verdict"] == "contradicted"

    sweep = pd.DataFrame([(p, w, s, err) for p in (0.0, 0.6, 0.8) for s in (0, 1, 2) for w, err in ((256, 0.05 + p / 10 + s / 1000), (round(128 / (1 - p)), 0.05 + s / 1000))],
                         columns=["p_drop_hidden", "width", "seed", "test_error"])
    assert c6(sweep)["verdict"] == "supported" and c6(sweep)["n"] == 6

    def placement(every, fc):
        rows = []
        for s in (0, 1, 2):
            rows.append(("weight_scaled", "error", "input=0.1,block1=0.25,block2=0.25,hidden1=0.5", 0.5, s, every + s / 1000))
            rows.append(("weight_scaled", "error", "input=0,block1=0,block2=0,hidden1=0.5", 0.5, s, fc + s / 500))
            rows.append(("weight_scaled", "error", "input=0,block1=0,block2=0,hidden1=0", 0.0, s, 0.5))
        return pd.DataFrame(rows, columns=["mode", "metric", "p_drop_sites", "p_drop_hidden", "seed", "value"])

    assert c7(placement(0.03, 0.02))["verdict"] == "supported"
    assert c7(placement(0.01, 0.02))["verdict"] == "contradicted"


def test_summarize_carries_n_and_interval():
    df = pd.DataFrame({"g": ["a"] * 4 + ["b"], "test_error": [0.1, 0.1, 0.1, 0.1, 0.2]})
    s = summarize(df, ["g"], ["test_error"])
    a = s[s.g == "a"].iloc[0]
    assert a.n == 4 and a.test_error == a.test_error_ci_low == a.test_error_ci_high == 0.1
    b = s[s.g == "b"].iloc[0]
    assert b.n == 1 and math.isnan(b.test_error_ci_low)
    assert fmt_cell(s).loc[0, "test_error (%)"] == "10 [10, 10]"
