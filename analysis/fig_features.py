"""Srivastava et al. 2014 Figure 7: first-layer features without and with dropout.

On images the features are tiles of incoming weights, as in the paper; on 1-D signals they are
curves over the signal's positions, and on flat features a heat map of units by inputs."""

import sys

from harness.inference.coadaptation import tile_images

from . import style
from .tables import load

SIGNAL_UNITS = 16  # curves per panel: more overlap into a band nobody can read


def data_kind(dataset: str, feats) -> str:
    """image, signal or features: from the dataset's description (metadata, no arrays read for a
    standard dataset), else from the table (one row per unit means non-image data)."""
    try:
        from harness.data.datasets import describe

        return describe(dataset, files=False).kind
    except Exception:  # a user's file no longer there: the table still tells images from the rest
        return "image" if feats.y.max() > 0 else "features"


def draw_units(ax, f, kind: str):
    """One panel of features `f` (rows unit, y, x, value sorted), drawn for data of `kind`; returns
    the number of units shown."""
    n, h, w = f.unit.nunique(), f.y.max() + 1, f.x.max() + 1
    values = f["value"].to_numpy().reshape(n, h, w)
    if kind == "image":
        ax.imshow(tile_images(values), cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
        ax.grid(False)
        return n
    if kind == "signal":
        shown = min(n, SIGNAL_UNITS)
        for i in range(shown):  # each unit's curve in its own lane, scaled to [0, 1] within it
            ax.plot(range(w), values[i, 0] * 0.9 + i, color=style.PALETTE[i % 2 * 7], linewidth=0.9)
        ax.set_xlabel("position in the signal")
        ax.set_ylabel("hidden unit (weights scaled to [0, 1] each)")
        ax.set_yticks(range(0, shown, 4))
        return shown
    ax.imshow(values[:, 0], cmap="gray", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xlabel("input feature")
    ax.set_ylabel("hidden unit")
    ax.grid(False)
    return n


def draw(profile: str):
    feats = load(profile, "features", "features")
    runs = load(profile, "features", "runs")
    seed = runs["seed"].min()
    kind = data_kind(str(runs["dataset"].iloc[0]), feats)
    fig, axes = style.figure(ncols=2, width=4.0, height=4.2)
    for ax, dropout in zip(axes[0], (False, True), strict=False):
        run = runs[(runs["seed"] == seed) & (runs["p_drop_hidden"].gt(0) == dropout)].iloc[0]
        f = feats[feats.run_id == run.run_id].sort_values(["unit", "y", "x"])
        n = draw_units(ax, f, kind)
        ax.set_title(
            f"{'dropout (0.2 / 0.5)' if dropout else 'no dropout'}: test error {100 * run.test_error:.2f}%", fontsize=9
        )
    drawn = {
        "image": "tiled as images",
        "signal": "drawn as curves over the signal's positions, one lane per unit",
        "features": "drawn as a heat map of units (rows) by input features (columns)",
    }[kind]
    caption = (
        f"Incoming weights of the first {n} hidden units of a one-hidden-layer MLP ({int(runs['width'].iloc[0])} "
        f"units, seed {seed}), each scaled to its own range and {drawn}, without and with dropout. Counterpart of "
        "Srivastava et al. 2014, Figure 7."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("features", draw))
