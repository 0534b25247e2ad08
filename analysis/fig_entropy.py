"""Predictive entropy on the test split, rotated digits and unseen inputs, per method."""

import sys

import numpy as np

from . import style
from .labels import label_method
from .tables import load

METHODS = ["weight scaling", "subnetworks (k = T)", "dropout ensemble", "deep ensemble"]


def draw(profile: str):
    hist = label_method(load(profile, "shift", "entropy_hist"))
    hist = hist[hist.method.isin(METHODS)]
    unseen = sorted(hist.loc[hist["shift"] == "unseen", "set"].unique())
    sets = {
        "test": "in distribution (test)",
        "rotation_90": "rotated 90 degrees",
        **{u: f"unseen: {u}" for u in unseen},
    }
    colors = dict(
        zip(
            sets,
            [style.PALETTE[0], style.PALETTE[1], style.PALETTE[3], style.PALETTE[2], style.PALETTE[4]],
            strict=False,
        )
    )
    fig, axes = style.figure(ncols=len(METHODS), width=3.2, height=2.8, sharey=True)
    for ax, method in zip(axes[0], METHODS, strict=False):
        h = hist[hist.method == method]
        for s, label in sets.items():
            d = h[h["set"] == s].groupby(["bin", "low", "high"])["count"].sum().reset_index()
            if d.empty:
                continue
            density = d["count"] / d["count"].sum() / (d.high - d.low)
            ax.stairs(
                density.to_numpy(), np.r_[d.low.to_numpy(), d.high.iloc[-1]], color=colors[s], label=label, lw=1.3
            )
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("predictive entropy (nats)")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("density")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    t = int(hist.loc[hist["mode"] == "mc_shared", "k"].max())
    caption = (
        "Histograms of predictive entropy (density, log scale; all examples of all runs or ensembles of a method "
        f"pooled; n = {hist.replicate.nunique()} replicates) on the test split, the test split rotated by 90 "
        f"degrees, and unseen inputs. Subnetwork averages use T = {t}; the maximum entropy is log 10 = 2.30 nats."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("entropy", draw))
