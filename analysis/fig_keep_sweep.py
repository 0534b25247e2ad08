"""Srivastava et al. 2014 Figure 9: error against the keep probability of the hidden layers."""

import sys

from . import style
from .tables import load


def designs(runs):
    """Split the sweep into (a) fixed width and (b) fixed keep x width (the keep-0.5 run is in both)."""
    runs = runs.assign(keep=1 - runs["p_drop_hidden"])
    n = runs.loc[runs["keep"] == 1.0, "width"].max()
    fixed_n = runs[runs["width"] == n]
    fixed_pn = runs[(runs["keep"] * runs["width"]).round() == round(n / 2)]
    return {"(a) fixed width n": fixed_n, "(b) fixed keep x n": fixed_pn}


def draw(profile: str):
    runs = load(profile, "keep_sweep", "runs")
    fig, axes = style.figure(ncols=2, width=4.0, height=3.2, sharey=True)
    for ax, (title, d) in zip(axes[0], designs(runs).items()):
        for col, label, color in (("train_error", "train", style.PALETTE[1]), ("test_error", "test", style.PALETTE[0])):
            style.band(ax, d, "keep", col, label, color)
        style.percent(ax)
        ax.set_xlabel("keep probability of hidden units")
        ax.set_ylabel("error (%)")
        ax.set_title(f"{title}", fontsize=9)
    caption = (
        "Train and test error against the keep probability of the hidden layers (inputs kept), with (a) the width fixed "
        "and (b) keep x width fixed, so that low keep comes with wider layers; 95% bootstrap bands over seeds; "
        f"n = {style.n_runs(runs)} runs. Counterpart of Srivastava et al. 2014, Figure 9."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("keep_sweep", draw))
