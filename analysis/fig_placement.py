"""Where dropout goes in a CNN, evaluated by weight scaling and by Monte-Carlo averaging."""

import sys

import seaborn as sns

from . import style
from .labels import label_placement
from .tables import load


def draw(profile: str):
    ev = label_placement(load(profile, "placement", "evaluations"))
    e = ev[(ev.metric == "error") & ev["mode"].isin(["weight_scaled", "mc_shared"])]
    e = e[(e["mode"] == "weight_scaled") | (e.k == e.k.max())]
    fig, axes = style.figure(width=4.6, height=3.2)
    ax = axes[0][0]
    sns.barplot(data=e, x="placement", y="value", hue="mode", order=["none", "fc_only", "everywhere"], palette=style.MODE_COLORS,
                errorbar=("ci", 95), n_boot=1000, seed=0, ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1), title="inference")
    style.percent(ax)
    ax.set_xlabel("dropout placement")
    ax.set_ylabel("test error (%)")
    caption = (
        f"Test error of a LeNet-style CNN without dropout, with dropout after the fully connected layer only, and after every "
        f"conv block too; weight scaling against the average of {int(e.k.max())} subnetworks; 95% bootstrap intervals; "
        f"n = {style.n_runs(ev)} runs."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("placement", draw))
