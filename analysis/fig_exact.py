"""Exact enumeration: Monte-Carlo averages converge to the exact ensemble at the 1/sqrt(k) rate."""

import sys

import numpy as np

from . import style
from .tables import load


def draw(profile: str):
    ev = load(profile, "exact", "evaluations")
    fig, axes = style.figure(ncols=2, width=4.2, height=3.2)
    ax = axes[0][0]
    d = ev[ev.metric == "l2_to_exact"]
    for mode in ("mc_shared", "geometric", "mc_per_example"):
        m = d[d["mode"] == mode]
        if len(m):
            style.band(ax, m, "k", "value", f"{mode} vs exact", style.MODE_COLORS[mode], log_x=True)
    ks = np.array(sorted(d.k.unique()))
    first = d[(d["mode"] == "mc_shared") & (d.k == ks[0])]["value"].mean()
    ax.plot(ks, first * np.sqrt(ks[0] / ks), color="black", ls=":", label="1/sqrt(k)")
    ax.set_yscale("log")
    ax.set_xlabel("k (subnetworks averaged)")
    ax.set_ylabel("mean L2 distance to exact mean")
    ax.legend(fontsize=7)
    ax = axes[0][1]
    err = ev[
        (ev.metric == "error")
        & (
            (ev["mode"].isin(["weight_scaled", "exact", "exact_geometric"]))
            | (ev.k == ev.k[ev["mode"] == "mc_shared"].max())
        )
    ]
    err = err[err["mode"] != "mc_per_example"]
    order = ["weight_scaled", "exact_geometric", "exact", "mc_shared", "geometric"]
    means = err.groupby("mode")["value"].mean().reindex([o for o in order if o in set(err["mode"])])
    ax.bar(means.index, 100 * means.values, color=[style.MODE_COLORS[m] for m in means.index])
    lo, hi = 100 * means.min(), 100 * means.max()
    ax.set_ylim(max(0.0, lo - 1.0), hi + 0.5)  # the modes differ by tenths of a point: show them
    ax.set_ylabel("test error (%, axis cut)")
    ax.tick_params(axis="x", rotation=30)
    for label in ax.get_xticklabels():
        label.set_ha("right")
    count = int(ev[ev["mode"] == "exact"].k.max())
    caption = (
        f"A one-hidden-layer MLP whose {count} subnetworks are all enumerated. Left: distance of the Monte-Carlo "
        "averages from the exact arithmetic (mc_shared, mc_per_example) and geometric (geometric) means against k, "
        f"with the 1/sqrt(k) rate dotted; right: test error of each inference mode; n = {style.n_runs(ev)} runs."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("exact", draw))
