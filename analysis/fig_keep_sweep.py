"""Srivastava et al. 2014 Figure 9: error against the keep probability of the hidden layers, and
C6's test of the widening rule."""

import sys

from . import style
from .tables import load


def designs(runs):
    """Figure 9's designs, (a) fixed width n and (b) fixed keep x width = n / 2, and C6's base arm
    (width n / 2 at every keep); runs where designs meet belong to each."""
    runs = runs.assign(keep=1 - runs["p_drop_hidden"])
    n = runs.loc[runs["keep"] == 1.0, "width"].max()
    fixed_n = runs[runs["width"] == n]
    fixed_pn = runs[(runs["keep"] * runs["width"]).round() == round(n / 2)]
    base = runs[runs["width"] == round(n / 2)]
    return {"(a) fixed width n": fixed_n, "(b) fixed keep x n": fixed_pn}, base, fixed_pn, n


def draw(profile: str):
    runs = load(profile, "keep_sweep", "runs")
    panels, base, widened, n = designs(runs)
    fig, axes = style.figure(ncols=3, width=3.6, height=3.2, sharey=True)
    for ax, (title, d) in zip(axes[0], panels.items()):
        for col, label, color in (("train_error", "train", style.PALETTE[1]), ("test_error", "test", style.PALETTE[0])):
            style.band(ax, d, "keep", col, label, color)
        ax.set_title(f"{title}, n = {n}", fontsize=9)
    ax = axes[0][2]
    style.band(ax, base, "keep", "test_error", f"width {n // 2}", style.PALETTE[7])
    style.band(ax, widened, "keep", "test_error", f"width {n // 2} / keep", style.PALETTE[0])
    ax.set_title("(c) C6: widen by 1/keep?", fontsize=9)
    for ax in axes[0]:
        style.percent(ax)
        ax.set_xlabel("keep probability of hidden units")
        ax.set_ylabel("error (%)")
    caption = (
        "Train and test error against the keep probability of the hidden layers (inputs kept), with (a) the width fixed "
        "and (b) keep x width fixed, so that low keep comes with wider layers; (c) C6's comparison: test error of the base "
        f"width {n // 2} against {n // 2} / keep at the same keep. 95% Student-t bands over seeds; n = {style.n_runs(runs)} runs "
        f"({runs.seed.nunique()} seeds per point). Counterpart of Srivastava et al. 2014, Figure 9."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("keep_sweep", draw))
