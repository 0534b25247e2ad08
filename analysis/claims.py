"""Verdicts on the claims C1-C8 of the dropout story, computed from the tidy tables.

Each claim gets one statistic, computed per run (or per matched pair of runs), its mean with a 95%
bootstrap interval and n, and a verdict from a fixed rule:

- a directional claim is `supported` when the interval lies above zero, `contradicted` when it lies
  below, `inconclusive` otherwise;
- an approximation claim (C2) is `supported` when the interval lies inside +-EQUIVALENCE_MARGIN,
  `contradicted` when it lies wholly outside, `inconclusive` otherwise;
- a non-inferiority claim (C5) is `supported` unless the interval lies above zero.
With fewer than MIN_N = 3 observations the verdict is `inconclusive` (two values make no interval
worth the name).
Nothing here is typed by hand: flip the data and the verdict flips.
"""

from __future__ import annotations

import math

import pandas as pd

from harness.stats import mean_ci

from .labels import label_placement

EQUIVALENCE_MARGIN = 0.005  # 0.5 percentage points of test error
RECOMMENDED = (0.2, 0.5)  # (input, hidden) drop rates of C5

CLAIMS = {
    "C1": "the trained net behaves like an ensemble: averaging subnetworks beats the average subnetwork",
    "C2": "weight scaling approximates averaging the ensemble",
    "C3": "dropout prevents co-adaptation: hidden units correlate less",
    "C4": "dropout reduces overfitting (lower test error)",
    "C4b": "... most where data are scarce",
    "C5": "good rates: drop about 0.2 of the inputs and 0.5 of the hidden units",
    "C6": "with dropout, widen layers by 1/keep",
    "C7": "dropout after convolutions can hurt; it belongs after fully connected layers",
    "C8": "bigger networks benefit more from dropout",
}


MIN_N = 3  # fewer observations give no verdict: a bootstrap interval of two values means little


def verdict(lo: float, hi: float, kind: str = "directional", n: int = MIN_N) -> str:
    if n < MIN_N or math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if kind == "equivalence":
        if -EQUIVALENCE_MARGIN < lo and hi < EQUIVALENCE_MARGIN:
            return "supported"
        if lo >= EQUIVALENCE_MARGIN or hi <= -EQUIVALENCE_MARGIN:
            return "contradicted"
        return "inconclusive"
    if kind == "noninferiority":
        return "contradicted" if lo > 0 else "supported"
    if lo > 0:
        return "supported"
    if hi < 0:
        return "contradicted"
    return "inconclusive"


def _row(claim: str, study: str, statistic: str, values, kind: str = "directional", unit: str = "error") -> dict:
    """unit: "error" (a difference of error rates, as a fraction) or "r" (a difference of correlations)."""
    m, lo, hi, n = mean_ci(values)
    return {"claim": claim, "statement": CLAIMS[claim], "study": study, "statistic": statistic, "unit": unit,
            "estimate": m, "ci_low": lo, "ci_high": hi, "n": n, "verdict": verdict(lo, hi, kind, n)}


def _top_k(ev: pd.DataFrame, mode: str, metric: str) -> pd.Series:
    """Per run: `metric` of `mode` at its largest k, averaged over repeats."""
    e = ev[(ev["mode"] == mode) & (ev.metric == metric)]
    e = e[e.k == e.k.max()]
    return e.groupby("run_id")["value"].mean()


def c1(evaluations: pd.DataFrame, subnetworks: pd.DataFrame) -> dict:
    members = subnetworks.groupby("run_id")["error"].mean()
    crowd = _top_k(evaluations, "mc_shared", "error")
    return _row("C1", "mc_vs_ws", "mean single-subnetwork error - error of the MC average (per run)", (members - crowd).dropna())


def c2(evaluations: pd.DataFrame, study: str = "mc_vs_ws", against: str = "mc_shared") -> dict:
    ws = _top_k(evaluations, "weight_scaled", "error")
    ref = _top_k(evaluations, against, "error")
    return _row("C2", study, f"weight-scaled error - {against} error (per run; equivalent within +-{100 * EQUIVALENCE_MARGIN:g} points)", (ws - ref).dropna(), "equivalence")


def c3(coadaptation: pd.DataFrame, runs: pd.DataFrame) -> list[dict]:
    """Per hidden layer: mean |r| without dropout minus at the highest hidden rate, paired by seed
    (layers can disagree, so each gets its own verdict)."""
    r = coadaptation[coadaptation.metric == "mean_abs_r"]
    top = runs.p_drop_hidden.max()
    rows = []
    for layer, g in r.groupby("layer", sort=True):
        d = runs.set_index("run_id")[["seed", "p_drop_hidden"]].join(g.set_index("run_id")["value"]).dropna()
        hi = d[d.p_drop_hidden == top].set_index("seed")["value"]
        lo = d[d.p_drop_hidden == 0].set_index("seed")["value"]
        rows.append(_row("C3", "coadaptation", f"{layer}: mean |r|, no dropout - p_drop {top:g} (paired by seed)", (lo - hi).dropna(), unit="r"))
    return rows


def _gains(runs: pd.DataFrame) -> pd.DataFrame:
    """Test error without dropout minus with dropout, per (train_size, width, seed)."""
    key = ["train_size", "width", "seed"]
    on = runs[runs.p_drop_hidden > 0].set_index(key)["test_error"]
    off = runs[runs.p_drop_hidden == 0].set_index(key)["test_error"]
    return (off - on).rename("gain").dropna().reset_index()


def c4(runs: pd.DataFrame) -> list[dict]:
    g = _gains(runs)
    small, large = g.train_size.min(), g.train_size.max()
    by = g.set_index(["train_size", "width", "seed"])["gain"]
    diff = (by.xs(small, level="train_size") - by.xs(large, level="train_size")).dropna()
    return [
        _row("C4", "data_size", "test error without - with dropout (per size, width, seed)", g["gain"]),
        _row("C4b", "data_size", f"gain at {small} examples - gain at {large} (per width, seed)", diff),
    ]


def c8(runs: pd.DataFrame) -> dict:
    g = _gains(runs).set_index(["train_size", "width", "seed"])["gain"]
    narrow, wide = g.index.get_level_values("width").min(), g.index.get_level_values("width").max()
    diff = (g.xs(wide, level="width") - g.xs(narrow, level="width")).dropna()
    return _row("C8", "data_size", f"gain of dropout at width {wide} - at width {narrow} (per size, seed)", diff)


def c5(runs: pd.DataFrame) -> dict:
    cell = runs.groupby(["p_drop_input", "p_drop_hidden"])["test_error"].mean()
    best = tuple(float(v) for v in cell.idxmin())
    rec = runs[(runs.p_drop_input == RECOMMENDED[0]) & (runs.p_drop_hidden == RECOMMENDED[1])].set_index("seed")["test_error"]
    top = runs[(runs.p_drop_input == best[0]) & (runs.p_drop_hidden == best[1])].set_index("seed")["test_error"]
    return _row("C5", "rate_grid", f"test error at {RECOMMENDED} - at the best cell {best} (per seed; supported unless worse)", (rec - top).dropna(), "noninferiority")


def c6(runs: pd.DataFrame) -> dict:
    """Fixed width against fixed keep x width at keeps below 0.5, where the latter is wider."""
    r = runs.assign(keep=1 - runs.p_drop_hidden)
    n = r.loc[r.keep == 1.0, "width"].max()
    low = r[r.keep < 0.5]
    fixed_n = low[low.width == n].set_index(["keep", "seed"])["test_error"]
    widened = low[low.width != n].set_index(["keep", "seed"])["test_error"]
    return _row("C6", "keep_sweep", "test error at fixed width - widened by 1/keep (keep < 0.5; per keep, seed)", (fixed_n - widened).dropna())


def c7(evaluations: pd.DataFrame) -> dict:
    ws = label_placement(evaluations[(evaluations["mode"] == "weight_scaled") & (evaluations.metric == "error")])
    every = ws[ws.placement == "everywhere"].set_index("seed")["value"]
    fc = ws[ws.placement == "fc_only"].set_index("seed")["value"]
    return _row("C7", "placement", "test error, dropout everywhere - after FC only (weight scaled, per seed)", (every - fc).dropna())


def claims_table(tables: dict[str, dict[str, pd.DataFrame]]) -> pd.DataFrame:
    """All verdicts; `tables[study][name]` are the collected tables. A study that is missing is
    skipped, so a partial suite still gets its verdicts."""
    rows = []

    def has(study, *names):
        return study in tables and all(n in tables[study] and not tables[study][n].empty for n in names)

    if has("mc_vs_ws", "evaluations", "subnetworks"):
        rows += [c1(tables["mc_vs_ws"]["evaluations"], tables["mc_vs_ws"]["subnetworks"]), c2(tables["mc_vs_ws"]["evaluations"])]
    if has("exact", "evaluations"):
        rows.append(c2(tables["exact"]["evaluations"], "exact", "exact"))
    if has("coadaptation", "coadaptation", "runs"):
        rows += c3(tables["coadaptation"]["coadaptation"], tables["coadaptation"]["runs"])
    if has("data_size", "runs"):
        rows += c4(tables["data_size"]["runs"])
    if has("rate_grid", "runs"):
        rows.append(c5(tables["rate_grid"]["runs"]))
    if has("keep_sweep", "runs"):
        rows.append(c6(tables["keep_sweep"]["runs"]))
    if has("placement", "evaluations"):
        rows.append(c7(tables["placement"]["evaluations"]))
    if has("data_size", "runs"):
        rows.append(c8(tables["data_size"]["runs"]))
    order = {c: i for i, c in enumerate(CLAIMS)}
    return pd.DataFrame(rows).sort_values("claim", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
