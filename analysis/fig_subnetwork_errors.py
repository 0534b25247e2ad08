"""Does the crowd beat its members? Errors of single subnetworks against their ensemble's."""

import sys

import seaborn as sns

from . import style
from .tables import load


def draw(profile: str):
    subs = load(profile, "mc_vs_ws", "subnetworks")
    ev = load(profile, "mc_vs_ws", "evaluations")
    archs = sorted(subs["widths"].unique(), key=lambda w: (len(w), w))
    fig, axes = style.figure(ncols=len(archs), width=4.0, height=3.0)
    for c, arch in enumerate(archs):
        ax = axes[0][c]
        s = subs[subs["widths"] == arch]
        sns.histplot(s["error"], ax=ax, color=style.PALETTE[7], stat="count", bins=30, label="single subnetworks")
        e = ev[(ev["widths"] == arch) & (ev.metric == "error")]
        top = e[(e["mode"] == "mc_shared") & (e.k == e[e["mode"] == "mc_shared"].k.max())]["value"].mean()
        ws = e[e["mode"] == "weight_scaled"]["value"].mean()
        ax.axvline(
            top,
            color=style.MODE_COLORS["mc_shared"],
            lw=2,
            label=f"MC ensemble (k={int(e[e['mode'] == 'mc_shared'].k.max())})",
        )
        ax.axvline(ws, color=style.MODE_COLORS["weight_scaled"], lw=2, ls="--", label="weight scaled")
        style.percent(ax, "x")
        ax.set_xlabel("test error (%)")
        ax.set_ylabel("subnetworks")
        ax.set_title(f"MLP {arch}", fontsize=9)
        if c == 0:
            ax.legend(fontsize=7)
    caption = (
        f"Test errors of {len(subs)} single sampled subnetworks (histogram) against the error of their Monte-Carlo "
        f"average and of the weight-scaled network; n = {style.n_runs(subs)} runs."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("subnetwork_errors", draw))
