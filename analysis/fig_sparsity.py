"""Srivastava et al. 2014 Figure 8: mean activations of hidden units and the distribution of
activation values, without and with dropout."""

import sys

import seaborn as sns

from . import style
from .labels import label_dropout
from .tables import load


def draw(profile: str):
    units = label_dropout(load(profile, "features", "units"))
    hist = label_dropout(load(profile, "features", "activation_hist"))
    co = label_dropout(load(profile, "features", "coadaptation"))
    fig, axes = style.figure(ncols=2, width=4.2, height=3.2)
    ax = axes[0][0]
    sns.histplot(
        data=units,
        x="mean_activation",
        hue="dropout",
        palette=style.DROPOUT_COLORS,
        bins=30,
        stat="density",
        common_norm=False,
        element="step",
        ax=ax,
    )
    ax.set_xlabel("mean activation of a hidden unit")
    ax.set_ylabel("density of units")
    ax = axes[0][1]
    for kind, color in style.DROPOUT_COLORS.items():
        d = hist[hist["dropout"] == kind]
        h = d.groupby("bin_left")["count"].sum()
        centers = h.index.to_numpy() + (d["bin_right"] - d["bin_left"]).iloc[0] / 2
        ax.plot(centers, h.to_numpy() / h.sum(), color=color, label=kind, drawstyle="steps-mid")
    ax.set_yscale("log")
    ax.set_xlabel("activation value (5 and above in the last bin)")
    ax.set_ylabel("fraction of activations")
    zero = co[co.metric == "zero_fraction"].groupby("dropout")["value"].mean()
    ax.legend(title=" / ".join(f"{k}: {100 * v:.0f}% zeros" for k, v in zero.items()), fontsize=7, title_fontsize=7)
    caption = (
        "Left: mean activation of each hidden unit over the test set; right: the distribution of all activation "
        f"values (log scale), pooled over seeds; n = {style.n_runs(units)} runs. Counterpart of Srivastava et al. "
        "2014, Figure 8."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("sparsity", draw))
