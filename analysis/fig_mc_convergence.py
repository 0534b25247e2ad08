"""Srivastava et al. 2014 Figure 11, extended: metrics of the k-subnetwork average against k."""

import sys

from . import style
from .tables import load

METRICS = {"error": "test error (%)", "nll": "NLL (nats)", "ece": "ECE", "inference_gap": "inference gap (L2)"}
MODES = ["mc_shared", "geometric", "mc_per_example"]


def draw(profile: str):
    ev = load(profile, "mc_vs_ws", "evaluations")
    archs = sorted(ev["widths"].unique(), key=lambda w: (len(w), w))
    fig, axes = style.figure(ncols=len(METRICS), nrows=len(archs), width=3.4, height=2.8)
    for r, arch in enumerate(archs):
        a = ev[ev["widths"] == arch]
        for c, (metric, label) in enumerate(METRICS.items()):
            ax = axes[r][c]
            m = a[a.metric == metric]
            for mode in MODES:
                d = m[m["mode"] == mode]
                if len(d):
                    style.band(ax, d, "k", "value", mode, style.MODE_COLORS[mode], log_x=True)
            ws = m[m["mode"] == "weight_scaled"]["value"]
            if len(ws):
                ax.axhline(ws.mean(), color=style.MODE_COLORS["weight_scaled"], ls="--", label="weight_scaled")
            if metric == "error":
                style.percent(ax)
            ax.set_xlabel("k (subnetworks averaged)")
            ax.set_ylabel(label)
            ax.set_title(f"MLP {arch}", fontsize=9)
            if (r, c) == (0, 0):
                ax.legend(fontsize=7)
            elif ax.get_legend():
                ax.get_legend().remove()
    n = style.n_runs(ev)
    caption = (
        "Metrics of the average of k subnetworks against k (log scale); each run's subnetwork streams are averaged "
        f"first, then lines are means over runs with 95% Student-t bands; dashed: the weight-scaled network. n = {n} "
        "runs. Counterpart of Srivastava et al. 2014, Figure 11."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("mc_convergence", draw))
