"""Co-adaptation measures against the hidden drop rate, per layer, with 95% bands over seeds."""

import sys

from . import style
from .tables import load

METRICS = {
    "mean_abs_r": "mean |r| between units",
    "decov_normalized": "DeCov / (total variance)^2",
    "effective_rank": "effective rank",
    "interaction_abs_mean": "mean |interaction| (nats)",
}


def draw(profile: str):
    co = load(profile, "coadaptation", "coadaptation")
    fig, axes = style.figure(ncols=len(METRICS), width=3.3, height=3.0)
    for ax, (metric, label) in zip(axes[0], METRICS.items(), strict=False):
        d = co[co.metric == metric]
        for i, layer in enumerate(sorted(d.layer.unique())):
            style.band(ax, d[d.layer == layer], "p_drop_hidden", "value", layer, style.PALETTE[i])
        ax.set_xlabel("hidden drop probability")
        ax.set_ylabel(label)
        if metric != "mean_abs_r" and ax.get_legend():
            ax.get_legend().remove()
    per_rate = co.groupby("p_drop_hidden").run_id.nunique().min()
    caption = (
        "Co-adaptation measures of each hidden layer against the hidden drop rate (inputs kept); 95% Student-t "
        f"bands over seeds; n = {style.n_runs(co)} runs ({per_rate} per rate)."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("coadaptation", draw))
