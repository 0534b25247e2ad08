"""The verdict matrix of the generality family: tested claim statistics down, settings across;
each cell the estimate with its 95% interval in the statistic's unit, its verdict and n, coloured
by the verdict (Holm's adjustment across every tested row of every setting), and at the right the
statistic's consistency across settings (`analysis.generality`).

``python -m analysis.fig_verdicts`` draws it from reports/generality/claims.csv into
figures/generality/verdicts.pdf and .png; ``python -m analysis.generality`` draws it as well.
"""

from __future__ import annotations

import sys
import textwrap

import pandas as pd
from matplotlib.colors import to_rgba
from matplotlib.patches import Patch, Rectangle

from .claims import holm_family_size
from .paths import report_dir
from .presentation import UNITS, estimate_text
from .style import PALETTE, figure, save

NAME = "generality"  # the folder of the generality family under reports/ and figures/
VERDICT_COLORS = {
    "supported": PALETTE[2],
    "contradicted": PALETTE[3],
    "negligible": PALETTE[0],
    "inconclusive": PALETTE[7],
    "withheld": PALETTE[8],
}
POOLED = "pooled"  # the column of the random-effects pooled rows
UNTESTED = "not tested"  # a cell whose setting has no such row (its study skipped there)
FILL_ALPHA = 0.45  # light enough for black text on every verdict colour
LABEL_WIDTH = 58  # characters per line of a row label


def tested_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The matrix's rows: one per tested statistic (claim, key), in the table's order."""
    return (
        table[table.test != "descriptive"]
        .drop_duplicates(["claim", "key"])[["claim", "key", "unit", "consistency"]]
        .reset_index(drop=True)
    )


def row_label(claim: str, key: str, unit: str) -> str:
    """A statistic's label: its claim, its key wrapped to LABEL_WIDTH, and its unit as shown."""
    return f"{claim}: " + "\n".join(textwrap.wrap(f"{key} [{UNITS.get(unit, unit)}]", LABEL_WIDTH))


def draw(
    table: pd.DataFrame,
    settings: list[str] | None = None,
    names: dict[str, str] | None = None,
    pooled: pd.DataFrame | None = None,
    reasons: dict[tuple[str, str, str], str] | None = None,
):
    """The matrix of the generality table `table` (`analysis.generality.generality_table`:
    columns setting, claim, key, unit, test, estimate, ci_low, ci_high, n, verdict, consistency);
    `settings` in column order (default: their order in the table), shown by `names`; `pooled`
    (`analysis.consistency.pooled_table`) adds a last column; `reasons[claim, key, setting]` says
    in a hatched cell why the setting has no such row. Returns (figure, caption)."""
    settings = list(dict.fromkeys(table["setting"])) if settings is None else list(settings)
    names = dict(names or {s: s for s in settings})
    reasons = reasons or {}
    rows = tested_rows(table)
    cells = {(r.claim, r.key, r.setting): r for r in table[table.test != "descriptive"].itertuples(index=False)}
    if pooled is not None:
        cells |= {(r.claim, r.key, POOLED): r for r in pooled.itertuples(index=False)}
        settings = settings + [POOLED]
        names[POOLED] = "pooled (random effects)"
    nr, nc = max(1, len(rows)), max(1, len(settings))
    fig, axes = figure(width=2.0 * nc + 6.5, height=0.5 * nr + 1.4)
    ax = axes[0][0]
    for i, row in rows.iterrows():
        for j, s in enumerate(settings):
            c = cells.get((row.claim, row.key, s))
            if c is None:
                why = "fewer than two settings to pool" if s == POOLED else reasons.get((row.claim, row.key, s), "")
                untested_cell(ax, i, j, why)
            else:
                verdict_cell(ax, i, j, c, s == POOLED)
        ax.text(nc + 0.08, i + 0.5, row.consistency, ha="left", va="center", fontsize=7, color="0.2")
    frame(ax, rows, [names[s] for s in settings])
    legend(ax, nr)
    return fig, caption_text(table, len(rows), [names[s] for s in settings if s != POOLED], pooled is not None)


def untested_cell(ax, i: int, j: int, why: str) -> None:
    """The hatched cell of a statistic a setting did not test, with the reason."""
    ax.add_patch(Rectangle((j, i), 1, 1, facecolor="white", edgecolor="0.75", hatch="///", linewidth=0.0))
    ax.text(
        j + 0.5,
        i + 0.5,
        "\n".join([UNTESTED, *textwrap.wrap(why, 30)[:2]]),
        ha="center",
        va="center",
        fontsize=6,
        color="0.35",
    )


def verdict_cell(ax, i: int, j: int, c, pooled: bool) -> None:
    """A tested cell, coloured by its verdict: the estimate with its interval, the verdict and n
    (k settings for a `pooled` row)."""
    ax.add_patch(Rectangle((j, i), 1, 1, facecolor=to_rgba(VERDICT_COLORS[c.verdict], FILL_ALPHA), linewidth=0.0))
    ax.text(
        j + 0.5,
        i + 0.42,
        estimate_text(c.estimate, c.ci_low, c.ci_high, c.unit),
        ha="center",
        va="center",
        fontsize=7.5,
    )
    n = f"k = {len(c.settings.split(', '))} settings" if pooled else f"n = {c.n}"
    ax.text(j + 0.5, i + 0.75, f"{c.verdict}, {n}", ha="center", va="center", fontsize=6.5, color="0.25")


def frame(ax, rows: pd.DataFrame, columns: list[str]):
    """The matrix's grid, column headers on top, row labels at the left and the consistency header."""
    nr, nc = max(1, len(rows)), max(1, len(columns))
    for k in range(1, nc):
        ax.axvline(k, color="white", linewidth=2)
    for k in range(1, nr):
        ax.axhline(k, color="white", linewidth=1)
    if rows.empty:
        ax.text(nc / 2, 0.5, "no tested statistic in any setting", ha="center", va="center", fontsize=9)
    ax.set_xlim(0, nc)
    ax.set_ylim(nr, 0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xticks([j + 0.5 for j in range(len(columns))], columns, fontsize=9)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.set_yticks(
        [i + 0.5 for i in range(len(rows))], [row_label(r.claim, r.key, r.unit) for r in rows.itertuples()], fontsize=7
    )
    ax.text(nc + 0.08, -0.15, "consistency", ha="left", va="bottom", fontsize=8, transform=ax.transData)
    return ax


def legend(ax, nr: int):
    """The verdicts' colours and the hatch of an untested cell, below the matrix of `nr` rows."""
    handles = [Patch(facecolor=to_rgba(c, FILL_ALPHA), label=v) for v, c in VERDICT_COLORS.items()]
    handles.append(Patch(facecolor="white", edgecolor="0.75", hatch="///", label=UNTESTED))
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02 / max(1, nr / 20)),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
    )
    return ax


def caption_text(table: pd.DataFrame, tested: int, shown: list[str], pooled: bool) -> str:
    """The matrix's caption: `tested` statistics in the settings `shown`, with a pooled column or not."""
    return (
        f"Verdicts of the dropout claims in {len(shown)} settings ({', '.join(shown)}): {tested} tested statistics "
        "(rows; unit in brackets) by setting (columns). Each cell: the estimate and its 95% interval (unadjusted, "
        "by the method the setting's claims table names per row) in the statistic's unit (points of % for errors "
        "and ECE), its verdict and n replicates; colour: the verdict after Holm's adjustment across all "
        f"{holm_family_size(table)} tested rows of all settings; hatched: not tested in that setting, with the "
        "reason. "
        + (
            "Last column: the settings pooled by a random-effects model (Hartung-Knapp interval), decided as a "
            "family of their own. "
            if pooled
            else ""
        )
        + "Right: the statistic's consistency across settings."
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.fig_verdicts``: the matrix of reports/generality/claims.csv."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m analysis.fig_verdicts", description=main.__doc__.splitlines()[0])
    ap.parse_args(argv)
    path = report_dir(NAME) / "claims.csv"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing; run `python -m analysis.generality` (or `make generality`) first")
    pooled = report_dir(NAME) / "pooled.csv"
    fig, caption = draw(pd.read_csv(path), pooled=pd.read_csv(pooled) if pooled.is_file() else None)
    save(fig, "verdicts", NAME, caption)
    print(f"figures/{NAME}/verdicts.pdf, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
