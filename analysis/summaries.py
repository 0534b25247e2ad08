"""The summary tables of each study, for the report (`analysis.report`): one value per run (streams
averaged within the run) or per replicate, then per group the mean with its 95% interval, the
interval's method and n. `study_tables` gives a study's tables by title (SUMMARIES).
"""

from __future__ import annotations

import pandas as pd

from harness.inference.coadaptation import compare
from harness.stats.intervals import interval

from .claim_values import BANDS, MILD_SHARE, SEVERE_SHARE, n_classes_of, per_replicate, severity_bands
from .labels import label_keep, label_method, label_placement, sort_methods

UNIT_RANGE = {
    "auroc",
    "aupr",
    "fpr95",
    "error",
    "ece",
    "disagreement",
    "train_error",
    "test_error",
}  # quantities in [0, 1]


def summarize(df: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Per group: n, and per value column the mean with its 95% interval over rows (one row per run),
    and the interval's method. Intervals of quantities in [0, 1] (UNIT_RANGE) are cut to it: the
    mean lies in it, so the cut interval covers it exactly when the uncut one does."""
    rows = []
    for key, g in df.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=False))
        methods = set()
        for v in values:
            iv = interval(g[v])
            lo, hi = (max(iv.low, 0.0), min(iv.high, 1.0)) if v in UNIT_RANGE else (iv.low, iv.high)
            row |= {f"{v}": iv.estimate, f"{v}_ci_low": lo, f"{v}_ci_high": hi}
            methods.add(iv.method)
        row["n"] = len(g)
        row["interval"] = ", ".join(sorted(methods))
        rows.append(row)
    return pd.DataFrame(rows)


def mode_summary(ev: pd.DataFrame, by: list[str], metrics=("error", "nll", "ece", "inference_gap")) -> pd.DataFrame:
    """Inference modes at their largest k: one value per run (mean over repeats), then summarize."""
    e = ev[ev.metric.isin(metrics)].copy()
    e = e[e.k == e.groupby("mode")["k"].transform("max")]
    per_run = e.groupby(by + ["mode", "k", "run_id", "metric"])["value"].mean().unstack("metric").reset_index()
    return summarize(per_run, by + ["mode", "k"], [m for m in metrics if m in per_run.columns])


def method_summary(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Robustness-table rows (metric, value, method, replicate, run_id): one value per replicate
    (its runs averaged, over the chosen sets too), then mean and interval over replicates per
    group, in the order of analysis.labels.METHOD_ORDER."""
    d = df[df.metric.isin(metrics) & df.method.notna()]
    per_rep = per_replicate(d, by + ["metric"]).unstack("metric").reset_index()
    return sort_methods(summarize(per_rep, by, [m for m in metrics if m in per_rep.columns]))


def side_by_side(groups: dict[str, pd.DataFrame], by: list[str], metrics: list[str], name: str) -> pd.DataFrame:
    """`method_summary` of each group of rows (e.g. one per set), side by side: one column (with
    its interval) per group and metric, named by `name` ("{metric} at {group}"); n and the interval
    method are those of the first group."""
    summaries = {g: method_summary(df, by, metrics).set_index(by) for g, df in groups.items()}
    columns = []
    for g, summary in summaries.items():
        rename = {
            f"{m}{end}": name.format(metric=m, group=g) + end for m in metrics for end in ("", "_ci_low", "_ci_high")
        }
        columns.append(summary[list(rename)].rename(columns=rename))
    first = next(iter(summaries.values()))
    return sort_methods(pd.concat(columns, axis=1).join(first[["n", "interval"]]).reset_index())


# ensemble loss: (member loss, diversity term); loss = member loss - term, per example (harness.measures.diversity)
DECOMPOSITION_TITLE = (
    "loss decomposition of the ensembles on the test split (each row: nll_arithmetic = member_nll - nll_gap, "
    "nll_geometric = member_nll - ce_diversity, brier = member_brier - brier_diversity; one value per replicate)"
)
DECOMPOSITIONS = {
    "nll_arithmetic": ("member_nll", "nll_gap"),
    "nll_geometric": ("member_nll", "ce_diversity"),
    "brier": ("member_brier", "brier_diversity"),
}
# the harness's names of the two ensemble NLLs: `nll` is that of the mean of probabilities (the
# prediction every method reports), `geometric_nll` that of the normalized geometric mean
DECOMPOSED_NLL = {"nll": "nll_arithmetic", "geometric_nll": "nll_geometric"}


def loss_decomposition(rows: pd.DataFrame) -> pd.DataFrame:
    """`method_summary` of robustness-table rows with `method` (those of averages, which carry the
    decomposition terms): per decomposition of DECOMPOSITIONS the member loss, the diversity term
    and the ensemble's loss, so every row adds up (exact per example, hence for the means over runs
    and replicates up to rounding; the Brier score is that of the mean of probabilities); then the
    label-free disagreement and pairwise KL."""
    d = rows.assign(metric=rows["metric"].replace(DECOMPOSED_NLL))
    columns = list(dict.fromkeys(c for loss, terms in DECOMPOSITIONS.items() for c in (*terms, loss)))
    return method_summary(d, ["method"], columns + ["disagreement", "pairwise_kl"])


def ensemble_tables(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """ensemble_vs_dropout: the methods on the test split, and the ensembles' loss decompositions."""
    sh = label_method(t["shift"])
    test = sh[sh["set"] == "test"]
    return {
        "methods on the test split (one value per replicate)": method_summary(
            test, ["method"], ["error", "nll", "ece", "brier"]
        ),
        DECOMPOSITION_TITLE: loss_decomposition(test[test["mode"].isin(["mc_shared", "mc_per_example", "ensemble"])]),
    }


def bands_title(k: int) -> str:
    """The title of the severity bands' table, for a dataset of `k` classes."""
    return (
        "severity bands of the shifted sets (where the weight-scaled dropout nets' error lies between their clean "
        f"error and chance 1 - 1/{k}: mild below {MILD_SHARE:.0%} of the way, severe from {SEVERE_SHARE:.0%}; rule "
        "fixed in advance, the same on every dataset)"
    )


def shift_tables(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """shift: ECE by rotation and over corruptions, the severity bands with ECE and overconfidence
    in each, and out-of-distribution detection when the study has an ood table."""
    sh = label_method(t["shift"])
    ece = sh[sh.metric == "ece"]
    at = {"test": "0 degrees"} | {
        f"rotation_{a}": f"{a} degrees" for a in (60, 90, 180) if f"rotation_{a}" in set(ece["set"])
    }
    groups = {w: ece[ece["set"] == s] for s, w in at.items()} | {"all corruptions": ece[ece["shift"] == "corruption"]}
    out = {
        "ECE by rotation and over corruptions (one value per replicate)": side_by_side(
            groups, ["method"], ["ece"], "{metric} at {group}"
        )
    }
    k = n_classes_of(t.get("runs"))
    bands = severity_bands(sh, k)
    out[bands_title(k)] = (
        bands.rename("band").reset_index().groupby("band", sort=False)["set"].agg(", ".join).reset_index()
    )
    by_band = {b: sh[sh["set"].isin(bands.index[bands == b])] for b in BANDS if (bands == b).any()}
    out["ECE and overconfidence (mean confidence - accuracy) by severity band (one value per replicate)"] = (
        side_by_side(by_band, ["method"], ["ece", "overconfidence"], "{metric} {group}")
    )
    if "ood" in t:
        ood = label_method(t["ood"])
        out["out-of-distribution detection against the test split (one value per replicate)"] = side_by_side(
            dict(list(ood.groupby("set"))), ["method", "score"], ["auroc", "aupr", "fpr95"], "{metric} {group}"
        )
    return out


def features_tables(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """features: the activation statistics by hidden rate and layer."""
    co = t["coadaptation"][t["coadaptation"].metric.isin(["zero_fraction", "mean_activation", "mean_abs_r"])]
    wide = co.pivot_table(index=["run_id", "p_drop_hidden", "layer"], columns="metric", values="value").reset_index()
    return {
        "activation statistics": summarize(
            wide, ["p_drop_hidden", "layer"], ["zero_fraction", "mean_activation", "mean_abs_r"]
        )
    }


def coadaptation_tables(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """coadaptation: each hidden rate's difference from no dropout in the co-adaptation measures."""
    keep = [
        "mean_abs_r",
        "frac_abs_r_gt_0.5",
        "n_dead",
        "decov_normalized",
        "participation_ratio",
        "effective_rank",
        "interaction_abs_mean",
    ]
    cmp = compare(t["coadaptation"][["run_id", "layer", "metric", "value"]], _runs(t), "p_drop_hidden")
    cmp = cmp[cmp.metric.isin(keep)]
    return {"difference from no dropout (95% Welch-t interval, Mann-Whitney U, Benjamini-Hochberg adjusted p)": cmp}


def _runs(t: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return t.get("runs", pd.DataFrame())


def inference_tables(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """mc_vs_ws and exact: the inference modes at their largest k, per architecture."""
    return {"inference modes at the largest k": mode_summary(t["evaluations"], ["widths"])}


def placement_tables(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """placement: the inference modes per placement of dropout."""
    return {
        "placement and inference": mode_summary(
            label_placement(t["evaluations"]), ["placement"], ("error", "nll", "ece")
        )
    }


def keep_tables(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """keep_sweep: train and test error per keep and width."""
    return {"error against keep": summarize(label_keep(_runs(t)), ["keep", "width"], ["train_error", "test_error"])}


def data_size_tables(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """data_size: train and test error per width, training size and dropout."""
    r = _runs(t).assign(dropout=_runs(t).p_drop_hidden > 0)
    return {
        "test error by size, width and dropout": summarize(
            r, ["width", "train_size", "dropout"], ["train_error", "test_error"]
        )
    }


def rate_grid_tables(t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """rate_grid: test error per (input, hidden) drop rates."""
    return {"test error by drop rates": summarize(_runs(t), ["p_drop_input", "p_drop_hidden"], ["test_error"])}


# study: (the table its summaries need, None for its runs alone; the function that makes them)
SUMMARIES = {
    "ensemble_vs_dropout": ("shift", ensemble_tables),
    "shift": ("shift", shift_tables),
    "mc_vs_ws": ("evaluations", inference_tables),
    "exact": ("evaluations", inference_tables),
    "placement": ("evaluations", placement_tables),
    "keep_sweep": (None, keep_tables),
    "data_size": (None, data_size_tables),
    "rate_grid": (None, rate_grid_tables),
    "features": ("coadaptation", features_tables),
    "coadaptation": ("coadaptation", coadaptation_tables),
}


def study_tables(study: str, t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The summary tables of one study, by title (SUMMARIES; none without the table they need)."""
    need, make = SUMMARIES.get(study, (None, None))
    return {} if make is None or (need is not None and need not in t) else make(t)
