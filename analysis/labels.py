"""Labels derived from the config columns every collected table carries."""

from __future__ import annotations

import pandas as pd


def label_dropout(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `dropout`: "dropout" when the hidden layers drop units, else "no dropout"."""
    return df.assign(dropout=df["p_drop_hidden"].gt(0).map({True: "dropout", False: "no dropout"}))


def label_keep(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `keep`: the hidden layers' keep probability, 1 - p_drop_hidden, rounded so that equal
    keeps compare equal (1 - 0.8 is 0.19999999999999996)."""
    return df.assign(keep=(1 - df["p_drop_hidden"]).round(6))


def label_placement(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `placement` for CNN runs: none, fc_only (hidden sites only) or everywhere (conv blocks too)."""
    conv = df["p_drop_sites"].str.contains(r"block[12]=0\.[1-9]")
    return df.assign(
        placement=[
            ("everywhere" if c else ("fc_only" if h > 0 else "none"))
            for c, h in zip(conv, df["p_drop_hidden"], strict=False)
        ]
    )


METHODS = {  # (group, mode, which k): method; k is M (members), compute (equal test-time compute), T (all) or 0
    ("no dropout", "weight_scaled", "0"): "single net",
    ("no dropout", "temperature_scaled", "0"): "single net, temperature",
    ("no dropout", "ensemble", "M"): "deep ensemble",
    ("dropout", "weight_scaled", "0"): "weight scaling",
    ("dropout", "temperature_scaled", "0"): "temperature scaling",
    ("dropout", "mc_shared", "M"): "subnetworks (k = M)",
    ("dropout", "mc_shared", "compute"): "subnetworks (equal compute)",
    ("dropout", "mc_shared", "T"): "subnetworks (k = T)",
    ("dropout", "mc_shared", "member"): "subnetworks (k = T / M)",
    ("dropout", "mc_per_example", "M"): "per-example masks (k = M)",
    ("dropout", "mc_per_example", "compute"): "per-example masks (equal compute)",
    ("dropout", "mc_per_example", "T"): "per-example masks (k = T)",
    ("dropout", "ensemble", "M"): "dropout ensemble",
    ("dropout", "ensemble_mc", "M"): "dropout ensemble of subnetwork averages",
}
METHOD_ORDER = list(METHODS.values())


def sort_methods(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order of METHOD_ORDER (stable: the order within a method is kept)."""
    rank = {m: i for i, m in enumerate(METHOD_ORDER)}
    return df.sort_values("method", key=lambda s: s.map(rank), kind="stable").reset_index(drop=True)


def label_method(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `method` to rows of the robustness tables (columns group, mode, k, run_id): which
    network and inference, with the subnetwork averages named by their k: M (the ensembles' size),
    T (the largest), T / M (each member's share in an ensemble of subnetwork averages) or equal
    compute. A k that is M and another is labelled M; rows of no method (e.g. set `val`) get NaN."""
    ens = df.loc[df["mode"] == "ensemble", "k"]
    m = int(ens.max()) if len(ens) else 0
    mc = df["mode"].str.startswith("mc_")
    t = int(df.loc[mc, "k"].max()) if mc.any() else 0

    def which(mode, k):
        if mode in ("weight_scaled", "temperature_scaled"):
            return "0"
        if mode.startswith("ensemble") or k == m:
            return "M"
        if k == t:
            return "T"
        return "member" if m and k == max(1, t // m) else "compute"

    return df.assign(
        method=[
            METHODS.get((g, mode, which(mode, k))) for g, mode, k in zip(df["group"], df["mode"], df["k"], strict=False)
        ]
    )
