"""The diversity-error plane: what an ensemble's members lose alone against what their diversity gives back."""

import sys

import numpy as np

from . import style
from .labels import label_method
from .tables import load

SETS = {"subnetworks (k = M)": "o", "dropout ensemble": "s", "deep ensemble": "^"}


def draw(profile: str):
    shift = label_method(load(profile, "ensemble_vs_dropout", "shift"))
    test = shift[(shift["set"] == "test") & shift.method.isin(SETS)]
    fig, axes = style.figure(ncols=2, width=4.2, height=3.6)
    panels = [
        (
            "nll_gap",
            "member_nll",
            "diversity: Jensen gap of the NLL (nats)",
            "members' mean NLL (nats)",
            "ensemble NLL",
        ),
        (
            "brier_diversity",
            "member_brier",
            "diversity: Brier ambiguity",
            "members' mean Brier score",
            "ensemble Brier",
        ),
    ]
    for ax, (x, y, xlabel, ylabel, iso) in zip(axes[0], panels, strict=False):
        wide = (
            test[test.metric.isin([x, y])]
            .pivot_table(index=["method", "run_id"], columns="metric", values="value")
            .reset_index()
        )
        for method, marker in SETS.items():
            d = wide[wide.method == method]
            ax.scatter(
                d[x],
                d[y],
                marker=marker,
                s=22,
                alpha=0.8,
                color=style.METHOD_COLORS[method],
                label=f"{method} ({len(d)})",
            )
        # the ensemble's loss is member loss - diversity: lines of equal ensemble loss have slope 1
        lo, hi = ax.get_xlim()
        bottom, top = ax.get_ylim()
        ens = wide[y] - wide[x]
        for level in np.quantile(ens, [0.1, 0.5, 0.9]):
            xs = np.array([lo, hi])
            ax.plot(xs, xs + level, color="0.6", lw=0.8, ls=":")
            # labelled half-way along the part of the line inside the panel
            x0, x1 = max(lo, bottom - level), min(hi, top - level)
            if x0 < x1:
                xm = (x0 + x1) / 2
                ax.annotate(
                    f"{iso} {level:.3g}",
                    (xm, xm + level),
                    fontsize=6,
                    color="0.3",
                    ha="center",
                    va="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                )
        ax.set_xlim(lo, hi)
        ax.set_ylim(bottom, top)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    members = int(shift.loc[shift["mode"] == "ensemble", "k"].max())
    caption = (
        f"Each marker is one set of {members} members on the test split: the subnetworks of one dropout net "
        f"(mc_shared, k = {members}), {members} independently trained dropout nets (weight-scaled), or {members} "
        "independently trained nets without dropout. The ensemble's loss is the members' mean loss minus their "
        "diversity (left: NLL of the averaged probabilities and its Jensen gap; right: Krogh-Vedelsby's exact Brier "
        f"decomposition); dotted lines have equal ensemble loss. n = {shift.replicate.nunique()} replicates."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("diversity", draw))
