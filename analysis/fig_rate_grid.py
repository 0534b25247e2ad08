"""Test error over a grid of input and hidden drop rates."""

import sys

import seaborn as sns

from . import style
from .tables import load


def draw(profile: str):
    runs = load(profile, "rate_grid", "runs")
    grid = runs.pivot_table(index="p_drop_input", columns="p_drop_hidden", values="test_error", aggfunc="mean") * 100
    fig, axes = style.figure(width=4.6, height=3.4)
    ax = axes[0][0]
    sns.heatmap(grid, annot=True, fmt=".2f", cmap="viridis_r", ax=ax, cbar_kws={"label": "test error (%)"})
    ax.set_xlabel("hidden drop probability")
    ax.set_ylabel("input drop probability")
    n_per = runs.groupby(["p_drop_input", "p_drop_hidden"]).size().min()
    caption = f"Mean test error (%) for each pair of input and hidden drop rates; {n_per} seeds per cell; n = {style.n_runs(runs)} runs."
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("rate_grid", draw))
