"""The one figure style: seaborn, colorblind palette, labeled axes with units, PDF + PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from harness.stats.intervals import interval  # noqa: E402

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
METHOD_COLORS = {  # the methods of the robustness studies (analysis.labels.METHODS)
    "single net": PALETTE[7],
    "weight scaling": PALETTE[0],
    "temperature scaling": PALETTE[9],
    "subnetworks (k = T)": PALETTE[1],
    "subnetworks (k = M)": PALETTE[1],
    "per-example masks (k = T)": PALETTE[3],
    "dropout ensemble": PALETTE[4],
    "dropout ensemble of subnetwork averages": PALETTE[5],
    "deep ensemble": PALETTE[2],
}


def setup() -> None:
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight", "pdf.fonttype": 42})


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.2, **kw):
    setup()
    return plt.subplots(
        nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, layout="constrained", **kw
    )


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


def per_run(df, by: list[str], y: str, unit: str = "run_id"):
    """One row per run and group: a run's rows (its subnetwork streams) are averaged first, so a
    band or bar counts runs, never streams."""
    return df.groupby(by + [unit], sort=True)[y].mean().reset_index() if unit in df else df


def intervals(df, x: str, y: str, unit: str = "run_id"):
    """Per value of `x`: (x, mean, low, high, n) of `y` over runs, with the harness's interval."""
    rows = []
    for xv, g in per_run(df, [x], y, unit).groupby(x, sort=True):
        iv = interval(g[y])
        rows.append((xv, iv.estimate, iv.low, iv.high, iv.n))
    return rows


def band(ax, df, x: str, y: str, label: str, color, log_x: bool = False, unit: str = "run_id"):
    """Mean line with the 95% interval band of `y` over runs at each `x` (Student-t at small n;
    harness.stats.intervals.interval)."""
    rows = intervals(df, x, y, unit)
    xs = [r[0] for r in rows]
    ax.plot(xs, [r[1] for r in rows], color=color, label=label, marker="o", markersize=3)
    ax.fill_between(xs, [r[2] for r in rows], [r[3] for r in rows], color=color, alpha=0.2, linewidth=0)
    if log_x:
        ax.set_xscale("log")
    ax.legend(fontsize=7)
    return ax


def percent(ax, axis: str = "y"):
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{100 * v:.3g}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)
    return ax


def run(name: str, draw, argv: list[str] | None = None) -> int:
    """Command line of a figure script: ``python -m analysis.fig_NAME --profile P [--dataset D]``.
    `draw(setting)` returns (figure, caption), where `setting` names the tables' folder (the profile,
    or `harness.sweep.setting.Setting(profile, dataset).name`). A figure of a study that its setting's
    dataset does not allow is a panel that says why."""
    import argparse

    from harness.sweep.setting import setting_name

    from .tables import StudySkipped, TableError

    ap = argparse.ArgumentParser(prog=f"python -m analysis.fig_{name}")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--dataset", help="the setting's dataset (default: each study's own)")
    args = ap.parse_args(argv)
    setting = setting_name(args.profile, args.dataset)
    try:
        fig, caption = draw(setting)
    except StudySkipped as why:
        fig, caption = skipped_figure(str(why))
    except (
        TableError
    ) as exc:  # a missing or damaged table: named with the command that collects it again, never drawn from
        import sys

        print(f"error: {exc}", file=sys.stderr)
        return 2
    save(fig, name, setting, caption)
    print(f"figures/{setting}/{name}.pdf, .png")
    return 0


def skipped_figure(reason: str):
    """A small panel saying why a figure has nothing to show in this setting."""
    import textwrap

    fig, axes = figure(width=5.0, height=1.6)
    ax = axes[0][0]
    ax.axis("off")
    ax.text(
        0.5,
        0.5,
        "Not drawn in this setting:\n" + textwrap.fill(reason, 70),
        ha="center",
        va="center",
        fontsize=8,
        wrap=True,
    )
    return fig, f"Not drawn in this setting: {reason}."


def n_runs(df, col: str = "run_id") -> int:
    return int(df[col].nunique())
