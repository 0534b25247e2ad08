"""The one figure style: seaborn, colorblind palette, labeled axes with units, PDF + PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from .paths import figures_dir  # noqa: E402

PALETTE = sns.color_palette("colorblind")
MODE_COLORS = {
    "weight_scaled": PALETTE[0],
    "mc_shared": PALETTE[1],
    "geometric": PALETTE[2],
    "mc_per_example": PALETTE[3],
    "exact": PALETTE[4],
    "exact_geometric": PALETTE[5],
}
DROPOUT_COLORS = {"no dropout": PALETTE[7], "dropout": PALETTE[0]}


def setup() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight", "pdf.fonttype": 42})


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.2, **kw):
    setup()
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained", **kw)


def save(fig, name: str, profile: str, caption: str) -> None:
    """Write figures/<profile>/<name>.pdf and .png, and the caption beside them for the report."""
    out = figures_dir(profile)
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("pdf", "png"):
        tmp = out / f".{name}.tmp.{ext}"
        fig.savefig(tmp, format=ext)
        tmp.replace(out / f"{name}.{ext}")
    (out / f"{name}.txt").write_text(caption.strip() + "\n")
    plt.close(fig)


def band(ax, df, x: str, y: str, label: str, color, log_x: bool = False):
    """Mean line with a 95% bootstrap confidence band of `y` over repeats at each `x`."""
    sns.lineplot(data=df, x=x, y=y, ax=ax, label=label, color=color, errorbar=("ci", 95), n_boot=1000, seed=0, marker="o", markersize=3)
    if log_x:
        ax.set_xscale("log")
    return ax


def percent(ax, axis: str = "y"):
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{100 * v:.3g}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)
    return ax


def run(name: str, draw, argv: list[str] | None = None) -> int:
    """Command line of a figure script: ``python -m analysis.fig_NAME --profile P``.
    `draw(profile)` returns (figure, caption)."""
    import argparse

    ap = argparse.ArgumentParser(prog=f"python -m analysis.fig_{name}")
    ap.add_argument("--profile", default="quick")
    args = ap.parse_args(argv)
    fig, caption = draw(args.profile)
    save(fig, name, args.profile, caption)
    print(f"figures/{args.profile}/{name}.pdf, .png")
    return 0


def n_runs(df, col: str = "run_id") -> int:
    return int(df[col].nunique())
