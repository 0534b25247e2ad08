"""Srivastava et al. 2014 Figure 9: error against the keep probability of the hidden layers, and
C6's test of the widening rule."""

import sys

from . import style
from .labels import label_keep
from .tables import load


def designs(runs):
    """Figure 9's designs, (a) fixed width n and (b) fixed keep x width = n / 2, C6's base arm
    (width n / 2 at every keep) and its controls: the widths n / 2 / keep without dropout, placed
    at the keep they control (`keep` = n / 2 / width). n is the widest width trained at every keep
    (the controls are trained at keep 1 only); runs where designs meet belong to each."""
    runs = label_keep(runs)
    at_every_keep = runs.groupby("width")["keep"].nunique() == runs["keep"].nunique()
    n = int(at_every_keep[at_every_keep].index.max())
    fixed_n = runs[runs["width"] == n]
    fixed_pn = runs[(runs["keep"] * runs["width"]).round() == round(n / 2)]
    base = runs[runs["width"] == round(n / 2)]
    off = runs[(runs["keep"] == 1.0) & (runs["width"] > n / 2)]
    controls = off.assign(keep=(round(n / 2) / off["width"]).round(6))
    controls = controls[controls["keep"].isin(set(runs["keep"]))]
    return {"(a) fixed width n": fixed_n, "(b) fixed keep x n": fixed_pn}, base, fixed_pn, controls, n


def draw(profile: str):
    runs = load(profile, "keep_sweep", "runs")
    panels, base, widened, controls, n = designs(runs)
    fig, axes = style.figure(ncols=3, width=3.6, height=3.2, sharey=True)
    for ax, (title, d) in zip(axes[0], panels.items(), strict=False):
        for col, label, color in (("train_error", "train", style.PALETTE[1]), ("test_error", "test", style.PALETTE[0])):
            style.band(ax, d, "keep", col, label, color)
        ax.set_title(f"{title}, n = {n}", fontsize=9)
    ax = axes[0][2]
    style.band(ax, base, "keep", "test_error", f"width {n // 2}", style.PALETTE[7])
    style.band(ax, widened, "keep", "test_error", f"width {n // 2} / keep", style.PALETTE[0])
    style.band(ax, controls, "keep", "test_error", f"width {n // 2} / keep, no dropout", style.PALETTE[2])
    ax.set_title("(c) C6: widen by 1/keep?", fontsize=9)
    for ax in axes[0]:
        style.percent(ax)
        ax.set_xlabel("keep probability of hidden units")
        ax.set_ylabel("error (%)")
    caption = (
        "Train and test error against the keep probability of the hidden layers (inputs kept), with (a) the width "
        "fixed and (b) keep x width fixed, so that low keep comes with wider layers; (c) C6's comparison: test "
        f"error of the base width {n // 2} against {n // 2} / keep at the same keep, and the same widths without "
        "dropout (its control: C6 is the difference of the two widening gains), drawn at the keep they control. 95% "
        f"Student-t bands over seeds; n = {style.n_runs(runs)} runs ({runs.seed.nunique()} seeds per point). "
        "Counterpart of Srivastava et al. 2014, Figure 9."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("keep_sweep", draw))
