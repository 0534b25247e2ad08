"""Srivastava et al. 2014 Figure 10: test error against training-set size, with and without dropout."""

import sys

from . import style
from .labels import label_dropout
from .tables import load


def draw(profile: str):
    runs = label_dropout(load(profile, "data_size", "runs"))
    widths = sorted(runs["width"].unique())
    fig, axes = style.figure(ncols=len(widths), width=3.4, height=3.0, sharey=True)
    for ax, w in zip(axes[0], widths, strict=False):
        d = runs[runs["width"] == w]
        for kind, color in style.DROPOUT_COLORS.items():
            style.band(ax, d[d["dropout"] == kind], "train_size", "test_error", kind, color, log_x=True)
        style.percent(ax)
        ax.set_xlabel("training examples")
        ax.set_ylabel("test error (%)")
        ax.set_title(f"2 hidden layers of {w}", fontsize=9)
        if w != widths[0] and ax.get_legend():
            ax.get_legend().remove()
    caption = (
        "Test error against the number of training examples (log scale) for three widths, with dropout (0.2 input, "
        "0.5 hidden) and without; equal optimisation steps and learning-rate schedule for every size; 95% Student-t "
        f"bands over seeds; n = {style.n_runs(runs)} runs ({runs.seed.nunique()} seeds per point). Counterpart of "
        "Srivastava et al. 2014, Figure 10."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("data_size", draw))
