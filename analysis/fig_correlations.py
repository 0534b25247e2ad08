"""Correlation heat maps and the distribution of pairwise correlations, across hidden drop rates."""

import sys

from . import style
from .tables import load


def draw(profile: str):
    sample = load(profile, "coadaptation", "corr_sample")
    hist = load(profile, "coadaptation", "correlation_hist")
    runs = load(profile, "coadaptation", "runs")
    rates = sorted(runs["p_drop_hidden"].unique())
    layer = "hidden1"
    seed = runs["seed"].min()
    fig, axes = style.figure(ncols=len(rates) + 1, width=3.2, height=3.0)
    for ax, p in zip(axes[0], rates, strict=False):
        run = runs[(runs.seed == seed) & (runs.p_drop_hidden == p)].iloc[0]
        s = sample[(sample.run_id == run.run_id) & (sample.layer == layer)]
        m = s.pivot(index="unit_i", columns="unit_j", values="r").to_numpy()
        im = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set_title(f"p_drop {p:g}", fontsize=9)
        ax.set_xlabel("unit")
        ax.set_ylabel("unit")
        ax.grid(False)
    fig.colorbar(im, ax=list(axes[0][: len(rates)]), shrink=0.8, label="Pearson r")
    ax = axes[0][-1]
    h = hist[hist.layer == layer].merge(runs[["run_id"]], on="run_id")
    for i, p in enumerate(rates):
        g = h[h.p_drop_hidden == p]
        width = (g["bin_right"] - g["bin_left"]).iloc[0]
        d = g.groupby("bin_left")["count"].sum()
        ax.plot(
            d.index + width / 2,
            d / d.sum() / width,
            label=f"p_drop {p:g}",
            color=style.PALETTE[i],
            drawstyle="steps-mid",
        )
    ax.set_xlabel("Pearson r between two units")
    ax.set_ylabel("density of pairs")
    ax.legend(fontsize=7)
    caption = (
        f"Left: correlations among the first units of hidden layer 1 (seed {seed}) for each hidden drop rate; right: "
        f"the distribution of r over all pairs of alive units, pooled over seeds; n = {style.n_runs(runs)} runs."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("correlations", draw))
