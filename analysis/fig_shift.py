"""Calibration under shift (Ovadia et al. 2019 style): error, NLL, ECE and signed calibration
(overconfidence: mean confidence minus accuracy) against rotation angle, and ECE over every
corruption, per method."""

import sys

import pandas as pd

from . import style
from .labels import label_method
from .tables import load

SHOWN = [
    "single net",
    "weight scaling",
    "temperature scaling",
    "subnetworks (k = T)",
    "per-example masks (k = T)",
    "dropout ensemble",
    "dropout ensemble of subnetwork averages",
    "deep ensemble",
]


def rotation_rows(shift: pd.DataFrame) -> pd.DataFrame:
    """Rows of the test split (angle 0) and its rotations, with `angle`."""
    d = shift[(shift["set"] == "test") | (shift["shift"] == "rotation")]
    return d.assign(angle=d.intensity.where(d["shift"] == "rotation", 0.0))


CURVES = {
    "error": "test error (%)",
    "nll": "NLL (nats)",
    "ece": "ECE (%)",
    "overconfidence": "overconfidence (points of %)",
}


def plot(shift: pd.DataFrame):
    """The figure and its caption from a collected `shift` table (run_id, set, shift, intensity,
    mode, k, metric, value, group, replicate; analysis.tables)."""
    shift = label_method(shift)
    shift = shift[shift.method.isin(SHOWN)]
    rot = rotation_rows(shift)
    fig, axes = style.figure(ncols=len(CURVES) + 1, width=3.4, height=3.2)
    for ax, (metric, label) in zip(axes[0], CURVES.items(), strict=False):
        d = rot[rot.metric == metric]
        for method in SHOWN:
            m = d[d.method == method]
            if len(m):
                # replicates are the bands' unit: a replicate's runs are averaged first
                style.band(ax, m, "angle", "value", method, style.METHOD_COLORS[method], unit="replicate")
        if metric == "overconfidence":
            ax.axhline(0.0, color="black", lw=0.8, zorder=1)  # above: confidence exceeds accuracy
        if metric != "nll":
            style.percent(ax)
        ax.set_xlabel("rotation (degrees)")
        ax.set_ylabel(label)
        ax.set_xticks(range(0, 181, 30))
        if ax is not axes[0][0] and ax.get_legend() is not None:
            ax.get_legend().remove()
    axes[0][0].legend(fontsize=6)
    ax = axes[0][len(CURVES)]
    c = shift[(shift["shift"] == "corruption") & (shift.metric == "ece")]
    per = c.groupby(["method", "set", "replicate"])["value"].mean().reset_index()
    order = [m for m in SHOWN if m in set(per.method)][::-1]  # top to bottom as in the legend
    boxes = ax.boxplot(
        [per.loc[per.method == m, "value"] for m in order],
        orientation="horizontal",
        patch_artist=True,
        widths=0.6,
        flierprops={"markersize": 2},
        medianprops={"color": "black"},
    )
    for patch, m in zip(boxes["boxes"], order, strict=False):
        patch.set_facecolor(style.METHOD_COLORS[m])
    ax.set_yticks(range(1, len(order) + 1), order)
    style.percent(ax, "x")
    ax.set_xlabel("ECE (%) over corruptions")
    ax.set_ylabel("")
    members = int(shift.loc[shift["mode"] == "ensemble", "k"].max())
    t = int(shift.loc[shift["mode"] == "mc_shared", "k"].max())
    n_rep = shift.replicate.nunique()
    kinds = c["set"].str.rsplit("_", n=1).str[0].nunique()  # sets are named corruption_severity
    caption = (
        "Left four: test error, NLL, expected calibration error and overconfidence (mean confidence minus accuracy, "
        "in points of %: above zero the method is overconfident, below underconfident) against the rotation of the "
        f"test images, per method; lines are means over {n_rep} replicates with 95% Student-t bands (a replicate's "
        f"{members} dropout nets are averaged first). Subnetwork averages use T = {t}; ensembles have M = {members} "
        f"members, trained independently. Right: ECE over {c['set'].nunique()} corrupted test sets ({kinds} "
        "MNIST-C-style corruptions at the stated severities), one point per replicate and set."
    )
    return fig, caption


def draw(profile: str):
    return plot(load(profile, "shift", "shift"))


if __name__ == "__main__":
    sys.exit(style.run("shift", draw))
