"""How results are laid out for reading: the pieces that the claims command, the report and the
generality page share, kept below all three so that none imports another in a circle.

- STUDIES: the studies in report order, each with the figures drawn from its tables;
- a setting's dataset in words (`setting_dataset`); reading its collected tables (`load_study`,
  `load_setting`) and what its studies' `adaptation.json` say (`study_adaptation`);
- the claims table for reading: UNITS, `unit_scale`, `estimate_text`, `show_claims` (a table for
  a page or a CSV) and `claim_lines` (a terminal);
- Markdown and HTML: `to_markdown`, `html_table`, `claims_html`, `page`.

It imports nothing of analysis but `paths` and `tables` (which read files and draw nothing).
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.stats.verdicts import VERDICTS
from harness.store import output_manifest
from harness.sweep import studies
from harness.sweep.setting import DEFAULT_DATASETS, Setting, dataset_label

from .paths import tables_dir
from .tables import TableError, adaptation, read_bytes, rebuild_command

STUDIES = studies.STUDIES  # study: figures drawn from its tables, in report order
UNITS = {
    "error": "points of %",
    "r": "r",
    "fraction": "%",
    "L2": "L2",
    "nats": "nats",
    "brier": "Brier",
    "ece": "ECE points (%)",
    "auroc": "AUROC",
    "overconfidence": "points of % (confidence - accuracy)",
}  # how a claim's unit is shown
PERCENT_UNITS = {"error", "fraction", "ece", "overconfidence"}  # stored as fractions, shown in points of %


# -- a setting's tables --------------------------------------------------------------------------


def setting_dataset(setting: Setting) -> str:
    """The dataset a setting runs on, in words: its own, the profile's only one, or each study's own."""
    if setting.dataset is not None:
        return dataset_label(setting.dataset)
    return DEFAULT_DATASETS.get(setting.profile, "each study's own data")


def load_study(setting: str, study: str) -> dict[str, pd.DataFrame]:
    """Every collected table of one study, by name ({} when the folder does not exist), each checked
    against the folder's manifest: a TableError names every file that is missing, damaged or not
    listed, and the command that collects the study again."""
    folder = tables_dir(setting, study)
    if not folder.is_dir():
        return {}
    damage = output_manifest.damage(folder)
    if damage:
        listed = "; ".join(f"{name}: {what}" for name, what in damage.items())
        raise TableError(
            f"the collected tables of {study} ({setting}) in {folder} are damaged or incomplete: {listed}; collect "
            f"them again: {rebuild_command(setting, study)}"
        )
    files, _ = output_manifest.load(folder)
    return {
        Path(name).stem: pd.read_parquet(io.BytesIO(read_bytes(setting, study, name)))
        for name in sorted(files)
        if name.endswith(".parquet")
    }


def load_setting(setting: str) -> dict[str, dict[str, pd.DataFrame]]:
    """The tables of every study of STUDIES that has been collected (its folder holds any file), in
    STUDIES order: `tables[study][name]`. A study its setting skipped is here too, with an empty
    runs table. A damaged or incomplete folder raises TableError (`load_study`): the claims family
    spans every study, so none is left out for its damage."""
    return {
        s: load_study(setting, s)
        for s in STUDIES
        if tables_dir(setting, s).is_dir() and any(tables_dir(setting, s).iterdir())
    }


@dataclass(frozen=True)
class Adaptation:
    """What a study's `adaptation.json` says: the dataset it ran on, why its setting skipped it
    (None when it ran) and how it was adapted to the data, in words (empty when unchanged)."""

    dataset: str | None = None
    skipped: str | None = None
    notes: tuple[str, ...] = ()


def study_adaptation(setting: str, study: str) -> Adaptation:
    """The study's `adaptation.json` in its setting's tables folder; without one, a study that ran
    on its own data unchanged."""
    raw = adaptation(setting, study)
    path = tables_dir(setting, study) / "adaptation.json"
    expected = 'expected {"dataset": str, "skipped": null or a reason string, "notes": [strings]}'
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: {expected}, got {raw!r}")
    dataset, skipped, notes = raw.get("dataset"), raw.get("skipped"), raw.get("notes") or []
    if dataset is not None and not isinstance(dataset, str):
        raise ValueError(f"{path}: `dataset` must be a string, got {dataset!r}; {expected}")
    if skipped is not None and not isinstance(skipped, str):
        raise ValueError(f"{path}: `skipped` must be null or a reason string, got {skipped!r}; {expected}")
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ValueError(f"{path}: `notes` must be a list of strings, got {notes!r}; {expected}")
    return Adaptation(dataset, skipped or None, tuple(notes))


# -- the claims table for reading ----------------------------------------------------------------


def unit_scale(unit: str) -> float:
    """The factor from a claim's stored unit to the unit it is shown in (UNITS): 100 for fractions."""
    return 100.0 if unit in PERCENT_UNITS else 1.0


ZERO = 1e-9  # a shown value this close to 0 is rounding (a difference of equal floats), printed as 0


def _num(v: float, k: float = 1.0) -> str:
    return "-" if pd.isna(v) else f"{_zeroed(v * k):.3g}"


def _zeroed(x: float) -> float:
    return 0.0 if abs(x) < ZERO else x


def interval_text(low: float, high: float, unit: str) -> str:
    """`[low, high]` in the unit the claim is shown in, to 3 significant digits ("-" without one)."""
    k = unit_scale(unit)
    return "-" if pd.isna(low) else f"[{_zeroed(low * k):.3g}, {_zeroed(high * k):.3g}]"


def estimate_text(estimate: float, low: float, high: float, unit: str) -> str:
    """`estimate [low, high]` in the unit the claim is shown in: "1.2 [0.5, 1.9]" for an error
    difference of 0.012 [0.005, 0.019]; the estimate alone without an interval."""
    if pd.isna(estimate):
        return "-"
    return (
        _num(estimate, unit_scale(unit))
        if pd.isna(low)
        else f"{_num(estimate, unit_scale(unit))} {interval_text(low, high, unit)}"
    )


def show_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """The claims table for reading: estimates, intervals, margins and MDE in the unit the report
    shows (points of % for errors), p-values to 3 digits, seeds needed as a count."""
    scale = claims["unit"].map(unit_scale)
    return pd.DataFrame(
        {
            "claim": claims["claim"],
            "statement": claims["statement"],
            "statistic": claims["statistic"],
            "unit": claims["unit"].map(UNITS),
            "test": claims["test"],
            "margin": [_num(v, k) for v, k in zip(claims["margin"], scale, strict=False)],
            "estimate": [_num(v, k) for v, k in zip(claims["estimate"], scale, strict=False)],
            "95% interval": [
                interval_text(lo, hi, u)
                for lo, hi, u in zip(claims["ci_low"], claims["ci_high"], claims["unit"], strict=False)
            ],
            "method": claims["method"],
            "n": claims["n"],
            "look": [
                "-" if pd.isna(v) or v == 0 else f"{v:.0f}"
                for v in claims.get("look", pd.Series(0, index=claims.index))
            ],
            "p": [_num(v) for v in claims["p_value"]],
            "p (Holm)": [_num(v) for v in claims["p_adjusted"]],
            "effect (sd)": [_num(v) for v in claims["effect_sd"]],
            "MDE": [_num(v, k) for v, k in zip(claims["mde"], scale, strict=False)],
            "seeds needed": [
                "-" if pd.isna(v) else ("> 100000" if v == float("inf") else f"{v:.0f}") for v in claims["seeds_needed"]
            ],
            "stopped by patience": ["-" if pd.isna(v) else f"{v:.0%}" for v in claims["stopped_by_patience"]],
            "verdict": claims["verdict"],
            "reason": claims["reason"],
        }
    )


def design_text(claims: pd.DataFrame) -> str:
    """The sequential design the claims were decided by, in words (one per distinct design)."""
    designs = [d for d in dict.fromkeys(claims.get("design", pd.Series(dtype=str)).dropna()) if d]
    return "; ".join(designs) or "no tested claims"


def claim_lines(shown: pd.DataFrame) -> list[str]:
    """One line per row of the claims table as `show_claims` formats it."""
    return [
        f"  {row['claim']:<4} {row['verdict']:<13} {row['statistic']}: {row['estimate']} {row['95% interval']} "
        f"({row['unit']}, n={row['n']}, look {row.get('look', '-')}, p Holm={row['p (Holm)']})"
        for _, row in shown.iterrows()
    ]


# -- Markdown and HTML ---------------------------------------------------------------------------


def to_markdown(df: pd.DataFrame) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "\\|")  # a pipe would end the cell

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


ESTIMATE_CELL = re.compile(r"(\S+) (\[\S+, \S+\])")  # a cell "mean [low, high]" (report.fmt_cell, estimate_text)


def html_table(
    df: pd.DataFrame, highlight: str | tuple[str, ...] | None = None, classes: str = "t", wrap: tuple[str, ...] = ()
) -> str:
    """`df` as an HTML table inside a box that scrolls sideways when the table is wider than the
    page, so the page itself never does. Every cell has the class of its column (`column_class`),
    so the style addresses columns by name, not position. Cells stay on one line, except those of
    the `wrap` columns (long text, which wraps) and a cell "m [lo, hi]", which may break before
    its interval only (an interval broken inside misreads). A cell of a `highlight` column (one
    name or several) holding a verdict also has the verdict as class."""
    marked = {highlight} if isinstance(highlight, str) else set(highlight or ())
    columns = [column_class(c) for c in df.columns]
    head = "".join(
        f"<th class='{c}'>{html.escape(str(name))}</th>" for c, name in zip(columns, df.columns, strict=False)
    )
    rows = []
    for row in df.itertuples(index=False):
        cells = []
        for name, c, v in zip(df.columns, columns, row, strict=False):
            text = _html_value(v)
            estimate = ESTIMATE_CELL.fullmatch(text)
            classes_of = (
                [c]
                + ["wrap"] * (name in wrap)
                + ["est"] * bool(estimate)
                + [str(v)] * (name in marked and v in VERDICTS)
            )
            shown = (
                f"{html.escape(estimate[1])} <span class='ci'>{html.escape(estimate[2])}</span>"
                if estimate
                else html.escape(text)
            )
            cells.append(f"<td class='{' '.join(classes_of)}'>{shown}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    body = "".join(rows)
    table = f"<table class='{classes}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<div class='scroll'>{table}</div>"


def column_class(name: object) -> str:
    """A column's CSS class: `c-` and its name in lower case, other characters as '-' ("p (Holm)": c-p-holm)."""
    return "c-" + re.sub(r"[^0-9a-z]+", "-", str(name).lower()).strip("-")


def _html_value(v: object) -> str:
    if pd.api.types.is_float(v):  # Python and NumPy floats of any width
        return "-" if v != v else f"{v:.4g}"  # NaN is the only value unequal to itself
    return "-" if v is None or v is pd.NA else str(v)


def claims_html(shown: pd.DataFrame, intro: str, legend: bool = True) -> list[str]:
    """The claims table of `show_claims` as HTML: the intro paragraph, the claims' statements
    (with `legend`) and the table, its verdicts coloured. When every row has the same interval
    method, the method is named once in the intro and its column dropped, so the reason column
    keeps its room."""
    statements = shown.drop_duplicates("claim")[["claim", "statement"]]
    dl = "".join(
        f"<dt>{html.escape(str(c))}</dt><dd>{html.escape(str(t))}</dd>" for c, t in statements.itertuples(index=False)
    )
    table = shown.drop(columns="statement")
    methods = sorted(table["method"].dropna().unique())
    if len(methods) == 1:
        table, intro = table.drop(columns="method"), f"{intro} Every interval here is {methods[0]}."
    return (
        [f"<p>{html.escape(intro)}</p>"]
        + [f"<dl class='claims'>{dl}</dl>"] * legend
        + [
            html_table(
                table.rename(columns={"stopped by patience": "by patience"}),
                highlight="verdict",
                classes="t claims",
                wrap=("statistic", "reason"),
            )
        ]
    )


CSS = """
body{font-family:system-ui,sans-serif;max-width:1500px;margin:2em auto;padding:0 1em;color:#222}
dl.claims{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:0.9em} dl.claims dd{margin:0}
div.scroll{overflow-x:auto;margin:0.5em 0 1.5em}
table.t{border-collapse:collapse;font-size:0.85em}
table.t th,table.t td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;vertical-align:top}
table.t th{background:#f4f4f4} table.t td{white-space:nowrap}
table.t td.wrap{white-space:normal;overflow-wrap:anywhere;text-align:left;line-height:1.3}
table.t td.est{white-space:normal} table.t span.ci{white-space:nowrap}
table.claims{font-size:0.8em} table.claims th,table.claims td{padding:3px 4px}
table.claims td.c-unit,table.claims td.c-test{white-space:normal}
table.claims th.c-statistic,table.claims th.c-reason{text-align:left}
table.claims td.c-statistic{min-width:10em;max-width:22em} table.claims td.c-reason{min-width:15em;max-width:30em}
td.supported{background:#d9f0d3} td.contradicted{background:#f6d5d5}
td.inconclusive{background:#eee} td.negligible{background:#d6e6f4} td.withheld{background:#fbe9c7}
td.descriptive{color:#666}
figure{margin:1em 0} img{max-width:100%} figcaption{font-size:0.9em;color:#444}
.setup{font-size:0.9em;color:#555}"""


def page(body: str, title: str) -> str:
    """A self-contained HTML page: `body` under the shared style, with `title` in the tab."""
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"
