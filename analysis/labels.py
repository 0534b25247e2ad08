"""Labels derived from the config columns every collected table carries."""

from __future__ import annotations

import pandas as pd


def label_dropout(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `dropout`: "dropout" when the hidden layers drop units, else "no dropout"."""
    return df.assign(dropout=df["p_drop_hidden"].gt(0).map({True: "dropout", False: "no dropout"}))


def label_placement(df: pd.DataFrame) -> pd.DataFrame:
    """Adds `placement` for CNN runs: none, fc_only (hidden sites only) or everywhere (conv blocks too)."""
    conv = df["p_drop_sites"].str.contains(r"block[12]=0\.[1-9]")
    return df.assign(placement=[("everywhere" if c else ("fc_only" if h > 0 else "none")) for c, h in zip(conv, df["p_drop_hidden"])])
