"""Srivastava et al. 2014 Figure 7: first-layer features without and with dropout."""

import sys


from harness.coadaptation import tile_images

from . import style
from .tables import load


def draw(profile: str):
    feats = load(profile, "features", "features")
    runs = load(profile, "features", "runs")
    seed = runs["seed"].min()
    fig, axes = style.figure(ncols=2, width=4.0, height=4.2)
    for ax, dropout in zip(axes[0], (False, True)):
        run = runs[(runs["seed"] == seed) & (runs["p_drop_hidden"].gt(0) == dropout)].iloc[0]
        f = feats[feats.run_id == run.run_id].sort_values(["unit", "y", "x"])
        n, h, w = f.unit.nunique(), f.y.max() + 1, f.x.max() + 1
        ax.imshow(tile_images(f["value"].to_numpy().reshape(n, h, w)), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{'dropout (0.2 / 0.5)' if dropout else 'no dropout'}: test error {100 * run.test_error:.2f}%", fontsize=9)
        ax.axis("off")
        ax.grid(False)
    caption = (
        f"Incoming weights of the first {n} hidden units of a one-hidden-layer MLP ({int(runs['width'].iloc[0])} units, seed {seed}), "
        "each scaled to its own range, without and with dropout. Counterpart of Srivastava et al. 2014, Figure 7."
    )
    return fig, caption


if __name__ == "__main__":
    sys.exit(style.run("features", draw))
