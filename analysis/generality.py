"""Generality: do the claims hold on more than one dataset?

``python -m analysis.generality --profile quick --datasets mnist5k,mnist1d,digits`` reads the
collected tables of each setting (the profile's design on one dataset, `harness.sweep.setting`:
reports/<setting>/tables/<study>/*.parquet), computes every claim's values per setting
(`analysis.claims.claim_specs`) and decides the specs of ALL settings as one family
(`analysis.claims.decide_specs`): Holm's adjustment covers every tested statistic of every setting,
so a claim that "holds in every setting" has survived the correction for being looked at once per
setting. (Each setting's own report adjusts within the setting only, so its p (Holm) are smaller.)
It writes

- reports/generality/claims.csv: one row per claim statistic and setting, the columns of
  `analysis.claims.COLUMNS` plus `setting`, `dataset`, `key`, `consistency`, `claim_consistency`
  and `untested_in`;
- figures/generality/verdicts.pdf and .png: the verdict matrix (`analysis.fig_verdicts`);
- reports/generality/index.html: what was compared, the matrix, the claims x settings table, a
  summary per claim, and each setting's own rows with a link to its own report.

The statistics are matched across settings by their `key`, labelled by their pattern of verdicts
and pooled over the settings by a random-effects model: the consistency rule of
`analysis.consistency`.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from collections.abc import Mapping
from datetime import UTC, datetime

import pandas as pd

from harness.files import atomic_write
from harness.stats.intervals import ALPHA
from harness.sweep.setting import GENERALITY, Setting

from .claims import CLAIMS, COLUMNS, claim_specs, decide_specs, holm_family_size
from .consistency import DESCRIPTIVE, EVERY, HOLDS, WITHHELD, claim_verdicts, consistency, pooled_table
from .fig_forest import draw as draw_forest
from .fig_verdicts import NAME, draw
from .paths import figures_dir, report_dir
from .presentation import (
    UNITS,
    claims_html,
    design_text,
    estimate_text,
    html_table,
    load_setting,
    page,
    setting_dataset,
    show_claims,
    study_adaptation,
    unit_scale,
)
from .style import save
from .tables import TableError

EXTRA = ["key", "sd", "consistency", "claim_consistency", "untested_in"]
GENERALITY_COLUMNS = ["setting", "dataset"] + COLUMNS + EXTRA


def generality_table(
    tables: Mapping[str, dict[str, dict[str, pd.DataFrame]]], datasets: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The claims of every setting decided as one family: `tables[setting][study][name]` (the
    settings in column order), `datasets[setting]` the dataset each ran on (default: the setting's
    name). One row per claim statistic and setting, columns GENERALITY_COLUMNS, ordered by claim,
    then statistic, then setting."""
    settings = list(tables)
    datasets = dict(datasets or {s: s for s in settings})
    specs = [(m | {"setting": s, "dataset": datasets[s]}, v, h) for s in settings for m, v, h in claim_specs(tables[s])]
    if not specs:
        return pd.DataFrame(columns=GENERALITY_COLUMNS)
    df = decide_specs(specs)
    twice = df[df.duplicated(["claim", "key", "setting"], keep=False)]
    if not twice.empty:
        raise ValueError(
            "statistics that match more than one row of a setting (claim, key): "
            f"{sorted(set(zip(twice.claim, twice.key, strict=False)))}"
        )
    keys = {k: i for i, k in enumerate(dict.fromkeys(zip(df.claim, df.key, strict=False)))}
    rank = {s: i for i, s in enumerate(settings)}
    order = {c: i for i, c in enumerate(CLAIMS)}
    df = df.assign(
        _c=df.claim.map(order), _k=[keys[k] for k in zip(df.claim, df.key, strict=False)], _s=df.setting.map(rank)
    )
    df = df.sort_values(["_c", "_k", "_s"], kind="stable").drop(columns=["_c", "_k", "_s"]).reset_index(drop=True)
    pooled = pooled_table(df)
    differ = {(c, k): bool(p < ALPHA) for c, k, p in zip(pooled.claim, pooled.key, pooled.q_p_holm, strict=False)}
    labels, missing = {}, {}
    for (claim, key), g in df.groupby(["claim", "key"], sort=False):
        at = dict(zip(g.setting, g.verdict, strict=False))
        missing[claim, key] = ", ".join(s for s in settings if at.get(s) in (None, WITHHELD))
        labels[claim, key] = (
            DESCRIPTIVE
            if (g.test == "descriptive").all()
            else consistency({s: at.get(s) for s in settings}, differ.get((claim, key), False))
        )
    by_claim = {
        c: consistency(v, any(d for (cc, _), d in differ.items() if cc == c))
        for c, v in claim_verdicts(df, settings).items()
    }
    return df.assign(
        consistency=[labels[k] for k in zip(df.claim, df.key, strict=False)],
        claim_consistency=df.claim.map(by_claim).fillna(DESCRIPTIVE),
        untested_in=[missing[k] for k in zip(df.claim, df.key, strict=False)],
    )[GENERALITY_COLUMNS]


def claim_summary(table: pd.DataFrame, settings: list[str], names: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Per claim with a tested statistic: its consistency, and the settings (shown by `names`) where
    it holds, is contradicted, is negligible, is not shown, and was not tested."""
    names = dict(names or {s: s for s in settings})
    rows = []
    statements = table.drop_duplicates("claim").set_index("claim")["statement"]
    labels = table.drop_duplicates("claim").set_index("claim")["claim_consistency"]
    for claim, at in claim_verdicts(table, settings).items():

        def where(*verdicts, at=at):
            return ", ".join(names[s] for s, v in at.items() if v in verdicts) or "-"

        rows.append(
            {
                "claim": claim,
                "statement": statements[claim],
                "consistency": labels[claim],
                "holds in": where(HOLDS),
                "contradicted in": where("contradicted"),
                "negligible in": where("negligible"),
                "not shown in": where("inconclusive"),
                "not tested in": where(None),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "claim",
            "statement",
            "consistency",
            "holds in",
            "contradicted in",
            "negligible in",
            "not shown in",
            "not tested in",
        ],
    )


def wide_table(
    table: pd.DataFrame, settings: list[str], pooled: pd.DataFrame | None = None, names: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """The tested statistics, one row each, with per setting the estimate [95% interval] (in the
    unit the report shows) and the verdict ("not tested" where the setting lacks it), the pooled
    estimate with its Hartung-Knapp interval, tau^2, I^2 and verdict, then n per setting and the
    consistency. `names` shows each setting under another name (its column header)."""
    names = dict(names or {s: s for s in settings})
    tested = table[table.test != "descriptive"]
    pool = {} if pooled is None else {(r.claim, r.key): r for r in pooled.itertuples(index=False)}
    rows = []
    for (claim, key), g in tested.groupby(["claim", "key"], sort=False):
        at = {r.setting: r for r in g.itertuples(index=False)}
        first = g.iloc[0]
        row = {"claim": claim, "statistic": key, "unit": first.unit, "test": first.test}
        for s in settings:
            r = at.get(s)
            row[names[s]] = "-" if r is None else estimate_text(r.estimate, r.ci_low, r.ci_high, r.unit)
            row[f"{names[s]} verdict"] = "not tested" if r is None else r.verdict
        if pooled is not None:
            r = pool.get((claim, key))
            row["pooled"] = "-" if r is None else estimate_text(r.estimate, r.ci_low, r.ci_high, r.unit)
            row["tau2, I2"] = "-" if r is None else f"{r.tau2 * unit_scale(r.unit) ** 2:.3g}, {r.i2:.0%}"
            row["pooled verdict"] = "not pooled" if r is None else r.verdict
        row[f"n at look ({' / '.join(names[s] for s in settings)})"] = " / ".join(
            "-" if s not in at else f"{at[s].n} at {_look_text(at[s])}" for s in settings
        )
        row["consistency"] = first.consistency
        rows.append(row)
    return pd.DataFrame(rows).assign(unit=lambda d: d.unit.map(UNITS)) if rows else pd.DataFrame(rows)


def _look_text(r) -> str:
    """The look a row's verdict came at, in words ("look 2"), or "-" when it has none."""
    look = getattr(r, "look", 0)
    return f"look {int(look)}" if look == look and look else "-"


def display_names(settings: list[str], on: Mapping[str, str], profile: str) -> dict[str, str]:
    """Each setting as the page shows it: the default setting (named after the profile alone)
    with its dataset, "quick-mnist5k" beside "quick-mnist1d"."""
    return {s: f"{s}-{on[s]}" if s == profile else s for s in settings}


def missing_reasons(
    table: pd.DataFrame,
    settings: list[str],
    skipped: Mapping[str, Mapping[str, str]],
    studies: Mapping[str, set[str]] | None = None,
) -> dict[tuple[str, str, str], str]:
    """Why a tested statistic has no row in a setting, by (claim, key, setting): its study skipped
    there (the study's reason), its study not run there (no tables; `studies[setting]` the studies
    with tables), no shifted set in its severity band (C10), or its tables lack what it reads."""
    tested = table[table.test != "descriptive"].drop_duplicates(["claim", "key"])
    have = set(zip(table.claim, table.key, table.setting, strict=False))
    out = {}
    for r in tested.itertuples(index=False):
        for s in settings:
            if (r.claim, r.key, s) in have:
                continue
            why = skipped.get(s, {}).get(r.study)
            band = next((b for b in ("mild", "moderate", "severe") if f" {b} shift" in r.key), None)
            absent = studies is not None and r.study not in studies.get(s, set())
            out[r.claim, r.key, s] = (
                f"{r.study} skipped: {why}"
                if why
                else f"no {r.study} tables there"
                if absent
                else f"no {band} shifted set there"
                if band
                else "its tables lack what it reads"
            )
    return out


def load_settings(
    profile: str, datasets: list[str]
) -> tuple[dict[Setting, dict[str, dict[str, pd.DataFrame]]], dict[str, dict[str, str]]]:
    """Each setting's collected tables (`analysis.presentation.load_setting`) without the studies
    it skipped, and those studies' reasons by setting name; an error names every setting without
    tables and the command that makes them."""
    settings = [Setting(profile, d) for d in datasets]
    names = [s.name for s in settings]
    if len(set(names)) < len(names):
        raise SystemExit(
            f"error: --datasets {','.join(datasets)} names a setting twice ({', '.join(names)}); give each dataset once"
        )
    tables = {s: load_setting(s.name) for s in settings}
    missing = [(s, d) for (s, t), d in zip(tables.items(), datasets, strict=False) if not t]
    if missing:
        raise TableError(
            "no collected tables of "
            + "; ".join(
                f"setting {s.name} (reports/{s.name}/tables): run `make all PROFILE={profile} DATASET={d}`"
                for s, d in missing
            )
            + " first"
        )
    skipped = {
        s.name: {study: why for study in t if (why := study_adaptation(s.name, study).skipped)}
        for s, t in tables.items()
    }
    return {
        s: {study: st for study, st in t.items() if study not in skipped[s.name]} for s, t in tables.items()
    }, skipped


def n_text(table: pd.DataFrame, settings: list[str]) -> str:
    """n of the tested statistics per setting: "quick 5, quick-digits 3 to 5"."""
    tested = table[table.test != "descriptive"]
    parts = []
    for s in settings:
        n = tested.loc[tested.setting == s, "n"]
        parts.append(f"{s} -" if n.empty else f"{s} {n.min()}" + ("" if n.min() == n.max() else f" to {n.max()}"))
    return ", ".join(parts)


def build(profile: str, datasets: list[str]) -> list[str]:
    """Write reports/generality/claims.csv and pooled.csv, figures/generality/verdicts.{pdf,png}
    and forest.{pdf,png}, and reports/generality/index.html; the paths written, relative to the
    output folder. The figures are drawn before any file is written, so a failure leaves the
    previous files together."""
    loaded, skipped = load_settings(profile, datasets)
    settings = [s.name for s in loaded]
    on = {s.name: setting_dataset(s) for s in loaded}
    names = display_names(settings, on, profile)
    table = generality_table({s.name: t for s, t in loaded.items()}, on)
    pooled = pooled_table(table)
    studies = {s.name: set(t) for s, t in loaded.items()}
    fig, caption = draw(
        table, settings, names=names, pooled=pooled, reasons=missing_reasons(table, settings, skipped, studies)
    )
    forest, forest_caption = draw_forest(table, pooled, settings, names)
    save(fig, "verdicts", NAME, caption)
    save(forest, "forest", NAME, forest_caption)
    out = report_dir(NAME)
    atomic_write(out / "claims.csv", table.to_csv(index=False).encode())
    atomic_write(out / "pooled.csv", pooled.to_csv(index=False).encode())
    body = index_body(table, profile, settings, on, skipped, caption, pooled=pooled, forest_caption=forest_caption)
    atomic_write(out / "index.html", page(body, f"Generality of the dropout claims ({profile})").encode())
    return [
        f"reports/{NAME}/claims.csv",
        f"reports/{NAME}/pooled.csv",
        f"figures/{NAME}/verdicts.pdf",
        f"figures/{NAME}/verdicts.png",
        f"figures/{NAME}/forest.pdf",
        f"figures/{NAME}/forest.png",
        f"reports/{NAME}/index.html",
    ]


def index_body(
    table: pd.DataFrame,
    profile: str,
    settings: list[str],
    on: Mapping[str, str],
    skipped: Mapping[str, Mapping[str, str]],
    caption: str,
    pooled: pd.DataFrame | None = None,
    forest_caption: str = "",
) -> str:
    """The body of reports/generality/index.html: `on[setting]` its dataset, `skipped[setting]` its
    skipped studies' reasons, `caption` the matrix's and `forest_caption` the forest plot's (read
    from figures/generality/), `pooled` the pooled rows (`pooled_table`)."""
    names = display_names(settings, on, profile)
    pooled = pooled_table(table) if pooled is None else pooled
    body = intro_html(table, profile, settings, on, names, len(pooled))
    body += figures_html({"verdicts": ("Verdict matrix", caption), "forest": ("Forest plots", forest_caption)})
    body += across_html(table, settings, pooled, names)
    body += per_claim_html(table, settings, names)
    body += settings_html(table, settings, on, skipped, names)
    return "\n".join(body)


def intro_html(
    table: pd.DataFrame,
    profile: str,
    settings: list[str],
    on: Mapping[str, str],
    names: Mapping[str, str],
    pooled: int,
) -> list[str]:
    """The page's title, its sources, what was compared and decided as one family, and how the
    `pooled` rows were pooled and the consistency judged."""
    family = holm_family_size(table)
    listed = ", ".join(f"{names[s]} ({on[s]})" for s in settings)
    return [
        f"<h1>Generality of the dropout claims <small>({html.escape(profile)} profile on {len(settings)} "
        "datasets)</small></h1>",
        f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the tables in "
        + ", ".join(f"reports/{html.escape(s)}/tables" for s in settings)
        + ".</p>",
        "<p>"
        + html.escape(
            f"The {profile} profile's study design run on {len(settings)} datasets; settings (dataset): {listed}. "
            "Every claim statistic is computed per setting from that setting's tables, then all are decided as one "
            f"family: Holm's adjustment across the {family} tested rows of all settings (each setting's own report "
            "adjusts within the setting, so its p (Holm) are smaller and a verdict there can differ). n per claim "
            f"(seeds; for C9 and C10 groups of M seeds), by setting: {n_text(table, settings)}; seeds in looks "
            f"({design_text(table)}), and a setting's study gets the next look only while one of its rows is open; "
            "no verdict below the first look."
        )
        + "</p>",
        "<p>"
        + html.escape(
            "Pooled: each tested statistic over the settings that tested it, by a random-effects model "
            "(Paule-Mandel tau², Hartung-Knapp 95% interval with k - 1 degrees of freedom, I², Cochran's Q, and the "
            f"95% prediction interval for a new setting with k - 2 degrees of freedom); the {pooled} pooled rows are "
            "decided as a family of their own under Holm, with each statistic's own test. Consistency is judged "
            "from the estimates, not by comparing verdicts: setting-dependent only when the settings' estimates "
            "differ beyond chance (Q, Holm-adjusted across the pooled statistics, below 0.05); otherwise "
            "contradicted in k of m, holds in every setting (or where tested), negligible everywhere (within "
            "+-SESOI), holds (or negligible) in k of m and not shown elsewhere, or not shown (undecided wherever "
            "tested: not shown, not false). A claim holds in a setting when every tested statistic it has there "
            "holds."
        )
        + "</p>",
    ]


def figures_html(figures: Mapping[str, tuple[str, str]]) -> list[str]:
    """The figures of figures/generality/ that were drawn, `figures[stem]` = (title, caption),
    embedded as PNG with a link to the PDF."""
    body = []
    for stem, (title, cap) in figures.items():
        png = figures_dir(NAME) / f"{stem}.png"
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode()
            body += [
                f"<h2>{title}</h2>",
                f"<figure><img src='data:image/png;base64,{data}' alt='{stem}'><figcaption>{html.escape(cap)} (<a "
                f"href='../../figures/{NAME}/{stem}.pdf'>PDF</a>)</figcaption></figure>",
            ]
    return body


def across_html(table: pd.DataFrame, settings: list[str], pooled: pd.DataFrame, names: Mapping[str, str]) -> list[str]:
    """The tested statistics across settings (`wide_table`), verdicts highlighted."""
    wide = wide_table(table, settings, pooled, names)
    return [
        "<h2>Claims across settings</h2>",
        "<p>Tested statistics only (estimates in the unit shown; the descriptive rows are in each setting's table "
        "below and in claims.csv; the pooled rows in full in pooled.csv).</p>",
        html_table(
            wide,
            highlight=tuple(f"{names[s]} verdict" for s in settings) + ("pooled verdict",),
            classes="t claims",
            wrap=("statistic",),
        )
        if not wide.empty
        else "<p>No tested statistic in any setting.</p>",
    ]


def per_claim_html(table: pd.DataFrame, settings: list[str], names: Mapping[str, str]) -> list[str]:
    """Which claims hold in every setting, and each claim's summary (`claim_summary`)."""
    summary = claim_summary(table, settings, names)
    every = summary.loc[summary.consistency == EVERY, "claim"].tolist()
    others = [f"{c} ({k})" for c, k in zip(summary.claim, summary.consistency, strict=False) if k != EVERY]
    return [
        "<h2>Per claim</h2>",
        f"<p>Hold in every setting: {html.escape(', '.join(every) or 'none')}. Not in every setting: "
        f"{html.escape(', '.join(others) or 'none')}.</p>",
        html_table(summary, classes="t claims", wrap=("statement",)),
    ]


def settings_html(
    table: pd.DataFrame,
    settings: list[str],
    on: Mapping[str, str],
    skipped: Mapping[str, Mapping[str, str]],
    names: Mapping[str, str],
) -> list[str]:
    """Each setting's own rows (decided in the family of all settings), the studies it skipped, and
    a link to its own report."""
    family = holm_family_size(table)
    body = ["<h2>Each setting</h2>"]
    for s in settings:
        rows = table[table.setting == s]
        body += [
            f"<h3 id='{html.escape(s)}'>{html.escape(names[s])} <small>({html.escape(on[s])})</small></h3>",
            "<p class='setup'>Its own report: <a "
            f"href='../{html.escape(s)}/index.html'>reports/{html.escape(s)}/index.html</a></p>",
        ]
        if skipped.get(s):
            body += [
                "<ul class='setup'>"
                + "".join(f"<li>{html.escape(st)} skipped: {html.escape(why)}</li>" for st, why in skipped[s].items())
                + "</ul>"
            ]
        body += (
            claims_html(
                show_claims(rows),
                f"The rows of {names[s]}, decided in the family of all {len(settings)} settings (p (Holm) across "
                f"{family} tested rows).",
                legend=False,
            )
            if not rows.empty
            else ["<p>No claims computed.</p>"]
        )
    return body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.generality", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument(
        "--datasets",
        default=",".join(GENERALITY),
        help=f"comma-separated datasets, one setting each (default: {','.join(GENERALITY)})",
    )
    args = ap.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if len(datasets) < 2:
        raise SystemExit(
            f"error: --datasets names {len(datasets)} dataset(s); generality compares at least two settings"
        )
    written = build(args.profile, datasets)
    table = pd.read_csv(report_dir(NAME) / "claims.csv")
    for claim, label in table.drop_duplicates("claim")[["claim", "claim_consistency"]].itertuples(index=False):
        print(f"  {claim:<4} {label}")
    print(f"wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    from .tables import exit_2

    sys.exit(exit_2(main))
