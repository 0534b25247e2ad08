"""Where dropout goes in a CNN, evaluated by weight scaling and by Monte-Carlo averaging."""

import sys

import numpy as np

from . import style
from .labels import label_placement
from .tables import load

ORDER = ["none", "fc_only", "everywhere"]


def draw(profile: str):
    ev = label_placement(load(profile, "placement", "evaluations"))
    e = ev[(ev.metric == "error") & ev["mode"].isin(["weight_scaled", "mc_shared"])]
    k = int(e[e["mode"] == "mc_shared"].k.max())
    e = e[(e["mode"] == "weight_scaled") | (e.k == k)]
    fig, axes = style.figure(width=4.6, height=3.2)
    ax = axes[0][0]
    width = 0.38
    for j, mode in enumerate(["weight_scaled", "mc_shared"]):
        d = e[e["mode"] == mode]
        stats = {p: (m, lo, hi) for p, m, lo, hi, _ in style.intervals(d, "placement", "value")}
        xs = np.arange(len(ORDER)) + (j - 0.5) * width
        means = np.array([stats.get(p, (np.nan,) * 3)[0] for p in ORDER])
        err = np.array(
            [
                [m - stats.get(p, (np.nan,) * 3)[1], stats.get(p, (np.nan,) * 3)[2] - m]
                for p, m in zip(ORDER, means, strict=False)
            ]
        ).T
        ax.bar(
            xs,
            means,
            width,
            yerr=err,
            capsize=3,
            color=style.MODE_COLORS[mode],
            label=mode if mode == "weight_scaled" else f"mc_shared (k={k})",
        )
    ax.set_xticks(np.arange(len(ORDER)), ORDER)
    ax.legend(title="inference", fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    style.percent(ax)
    ax.set_xlabel("dropout placement")
    ax.set_ylabel("test error (%)")
    caption = (
        "Test error of a LeNet-style CNN without dropout, with dropout after the fully connected layer only, and "
        f"after every conv block too (inputs never dropped); weight scaling against the average of {k} subnetworks "
        f"(streams averaged within a run); 95% Student-t intervals over seeds; n = {style.n_runs(ev)} runs "
        f"({ev.seed.nunique()} seeds per bar)."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("placement", draw))
