"""Forest plots of the generality family: one panel per tested claim statistic, grouped by claim;
in each, every setting's estimate with its 95% interval, the random-effects pooled estimate with
its Hartung-Knapp interval (diamond) and the 95% prediction interval for a new setting (thin line),
beside 0 and the statistic's margin or smallest effect of interest (dashed).

`analysis.generality` draws it into figures/generality/forest.pdf and .png.
"""

from __future__ import annotations

import math
import textwrap

import pandas as pd

from .claims import SESOI
from .presentation import UNITS, unit_scale
from .style import PALETTE, figure

COLUMNS = 3  # panels per row
WIDTH = 34  # characters per line of a panel title


def draw(table: pd.DataFrame, pooled: pd.DataFrame, settings: list[str], names: dict[str, str] | None = None):
    """Panels for the tested statistics of the generality table `table`, with the pooled rows of
    `pooled` (`analysis.consistency.pooled_table`); settings in `settings` order, shown by `names`.
    Returns (figure, caption)."""
    names = dict(names or {s: s for s in settings})
    tested = table[(table.test != "descriptive") & table.estimate.notna()]
    keys = list(dict.fromkeys(zip(tested.claim, tested.key, strict=False)))
    pool = {(r.claim, r.key): r for r in pooled.itertuples(index=False)}
    n = max(1, len(keys))
    rows = math.ceil(n / COLUMNS)
    fig, axes = figure(ncols=min(COLUMNS, n), nrows=rows, width=4.2, height=2.3)
    flat = [ax for line in axes for ax in line]
    for ax, (claim, key) in zip(flat, keys, strict=False):
        g = tested[(tested.claim == claim) & (tested.key == key)]
        k = unit_scale(g.unit.iloc[0])
        labels = []
        for y, s in enumerate(settings):
            r = g[g.setting == s]
            labels.append(names[s])
            if r.empty:
                continue
            r = r.iloc[0]
            ax.plot([r.ci_low * k, r.ci_high * k], [y, y], color=PALETTE[0], linewidth=1.5)
            ax.plot(r.estimate * k, y, "o", color=PALETTE[0], markersize=4)
        p = pool.get((claim, key))
        labels.append("pooled")
        y = len(settings)
        if p is not None:
            if not math.isnan(p.pred_low):
                ax.plot([p.pred_low * k, p.pred_high * k], [y, y], color="0.4", linewidth=0.8)
            ax.fill(
                [p.ci_low * k, p.estimate * k, p.ci_high * k, p.estimate * k],
                [y, y - 0.25, y, y + 0.25],
                color=PALETTE[3],
                alpha=0.8,
            )
        ax.axvline(0, color="0.3", linewidth=0.8)
        bound = g.margin.iloc[0] if g.test.iloc[0] in ("equivalence", "noninferiority") else SESOI.get(g.unit.iloc[0])
        if bound is not None and not pd.isna(bound):
            for b in (bound, -bound) if g.test.iloc[0] != "noninferiority" else (bound,):
                ax.axvline(b * k, color="0.5", linewidth=0.8, linestyle="--")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(UNITS.get(g.unit.iloc[0], g.unit.iloc[0]), fontsize=7)
        verdict = "" if p is None else f" [pooled: {p.verdict}]"
        ax.set_title("\n".join(textwrap.wrap(f"{claim}: {key}{verdict}", WIDTH)[:4]), fontsize=7)
    for ax in flat[len(keys) :]:
        ax.axis("off")
    if not keys:
        flat[0].text(
            0.5, 0.5, "no tested statistic in any setting", ha="center", va="center", transform=flat[0].transAxes
        )
    caption = (
        f"Forest plots of the {len(keys)} tested claim statistics across {len(settings)} settings: each setting's "
        "estimate and 95% interval (dots and lines, unadjusted), the random-effects pooled estimate with its "
        "Hartung-Knapp 95% interval (diamond) and the 95% prediction interval for a new setting (thin grey line; "
        "none below three settings), in the statistic's unit (points of % for errors and ECE). Dashed: the margin "
        "of an equivalence or non-inferiority claim, or the smallest effect of interest of a directional one."
    )
    return fig, caption
