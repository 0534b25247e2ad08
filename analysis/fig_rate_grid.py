"""Test error over a grid of input and hidden drop rates, with each cell's n and interval width."""

import sys

import pandas as pd
import seaborn as sns

from harness.stats.intervals import interval

from . import style
from .tables import load


def cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (input, hidden) cell: mean test error, the half-width of its 95% interval and n (seeds)."""
    rows = []
    for (pi, ph), g in runs.groupby(["p_drop_input", "p_drop_hidden"]):
        iv = interval(g["test_error"])
        rows.append(
            {
                "p_drop_input": pi,
                "p_drop_hidden": ph,
                "mean": 100 * iv.estimate,
                "half": 100 * (iv.high - iv.low) / 2,
                "n": iv.n,
            }
        )
    return pd.DataFrame(rows)


def draw(profile: str):
    runs = load(profile, "rate_grid", "runs")
    c = cells(runs)
    grid = c.pivot(index="p_drop_input", columns="p_drop_hidden", values="mean")
    text = c.assign(
        t=[f"{m:.2f}\n±{h:.2f}\nn={n}" for m, h, n in zip(c["mean"], c["half"], c["n"], strict=False)]
    ).pivot(index="p_drop_input", columns="p_drop_hidden", values="t")
    fig, axes = style.figure(width=4.8, height=3.6)
    ax = axes[0][0]
    sns.heatmap(
        grid,
        annot=text.to_numpy(),
        fmt="",
        annot_kws={"fontsize": 7},
        cmap="viridis_r",
        ax=ax,
        cbar_kws={"label": "test error (%)"},
    )
    ax.set_xlabel("hidden drop probability")
    ax.set_ylabel("input drop probability")
    caption = (
        "Mean test error (%) for each pair of input and hidden drop rates, with the half-width of its 95% Student-t "
        f"interval and n seeds per cell; n = {style.n_runs(runs)} runs."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("rate_grid", draw))
