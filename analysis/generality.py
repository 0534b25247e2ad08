"""Generality: do the claims hold on more than one dataset?

``python -m analysis.generality --profile quick --datasets mnist5k,mnist1d,digits`` reads the
collected tables of each setting (the profile's design on one dataset, `harness.setting`:
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

Consistency rule. A statistic is matched across settings by its `key` (its text without what the
setting decides: sizes, widths, the cell chosen on validation). It HOLDS in a setting when its
verdict there is `supported`, which `harness.verdicts` gives only when the claim is shown: a
directional effect on the claim's side, equivalence within the margin (TOST), non-inferiority
within the margin. `contradicted` and `inconclusive` do not hold there. A setting without the
statistic (its study skipped there, or its tables lack what the statistic reads), or where it was
`withheld` (too few replicates for a verdict), is NOT TESTED there: no evidence either way, so it counts neither for nor against,
and `untested_in` names it. Over the settings where the statistic was tested:

- "holds in every setting": tested in every setting, and holds in each;
- "holds where tested": holds wherever tested, but not tested in some setting;
- "setting-dependent": holds in some settings and not in others;
- "holds in none": holds in no setting where it was tested (the verdicts say whether it was
  contradicted there or undecided);
- "no verdict in any setting": withheld or untested everywhere;
- "descriptive": an estimate without a test gets no label (nothing was decided).

A claim (C1 to C10) holds in a setting when it has a tested statistic there and every tested
statistic it has there holds; the same rule over settings gives its `claim_consistency`.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from collections.abc import Mapping
from datetime import datetime, timezone

import pandas as pd

from harness.files import atomic_write
from harness.setting import GENERALITY, Setting
from harness.verdicts import MIN_N

from .claims import CLAIMS, COLUMNS, claim_specs, decide_specs, holm_family_size
from .fig_verdicts import NAME, draw
from .paths import figures_dir, report_dir
from .presentation import UNITS, claims_html, estimate_text, html_table, load_setting, page, setting_dataset, show_claims, study_adaptation
from .style import save
from .tables import TableError

EVERY, WHERE_TESTED, DEPENDENT, NONE, DESCRIPTIVE = ("holds in every setting", "holds where tested", "setting-dependent", "holds in none",
                                                     "descriptive")
NO_VERDICT = "no verdict in any setting"  # tested nowhere with enough replicates
WITHHELD = "withheld"
HOLDS = "supported"  # the one verdict that shows a claim: the effect, the equivalence or the non-inferiority it states
EXTRA = ["key", "consistency", "claim_consistency", "untested_in"]
GENERALITY_COLUMNS = ["setting", "dataset"] + COLUMNS + EXTRA


def consistency(verdicts: Mapping[str, str | None]) -> str:
    """The consistency label of one statistic (or claim) from its verdict in each setting of the
    family, None where it was not tested (see the module docstring): "holds in every setting",
    "holds where tested", "setting-dependent" or "holds in none"."""
    # withheld (fewer than MIN_N replicates) is no verdict: like a setting that did not test it
    tested = [v for v in verdicts.values() if v not in (None, WITHHELD)]
    if not tested:
        return NO_VERDICT
    held = [v == HOLDS for v in tested]
    if all(held):
        return EVERY if len(tested) == len(verdicts) else WHERE_TESTED
    return DEPENDENT if any(held) else NONE


def claim_verdicts(table: pd.DataFrame, settings: list[str]) -> dict[str, dict[str, str | None]]:
    """Per claim, per setting: `supported` when every tested statistic of the claim there is
    supported, "not supported" when one is not, None when it has none there."""
    tested = table[table.test != "descriptive"]
    out = {}
    for claim, g in tested.groupby("claim", sort=False):
        g = g[g.verdict != WITHHELD]  # no verdict there: as if not tested
        by = g.groupby("setting")["verdict"].agg(lambda v: HOLDS if (v == HOLDS).all() else "not supported")
        out[claim] = {s: by.get(s) for s in settings}
    return out


def generality_table(tables: Mapping[str, dict[str, dict[str, pd.DataFrame]]], datasets: Mapping[str, str] | None = None,
                     min_n: int = MIN_N) -> pd.DataFrame:
    """The claims of every setting decided as one family: `tables[setting][study][name]` (the
    settings in column order), `datasets[setting]` the dataset each ran on (default: the setting's
    name). One row per claim statistic and setting, columns GENERALITY_COLUMNS, ordered by claim,
    then statistic, then setting."""
    settings = list(tables)
    datasets = dict(datasets or {s: s for s in settings})
    specs = [(m | {"setting": s, "dataset": datasets[s]}, v, h) for s in settings for m, v, h in claim_specs(tables[s])]
    if not specs:
        return pd.DataFrame(columns=GENERALITY_COLUMNS)
    df = decide_specs(specs, min_n=min_n)
    twice = df[df.duplicated(["claim", "key", "setting"], keep=False)]
    if not twice.empty:
        raise ValueError(f"statistics that match more than one row of a setting (claim, key): {sorted(set(zip(twice.claim, twice.key)))}")
    keys = {k: i for i, k in enumerate(dict.fromkeys(zip(df.claim, df.key)))}
    rank = {s: i for i, s in enumerate(settings)}
    order = {c: i for i, c in enumerate(CLAIMS)}
    df = df.assign(_c=df.claim.map(order), _k=[keys[k] for k in zip(df.claim, df.key)], _s=df.setting.map(rank))
    df = df.sort_values(["_c", "_k", "_s"], kind="stable").drop(columns=["_c", "_k", "_s"]).reset_index(drop=True)
    by_claim = {c: consistency(v) for c, v in claim_verdicts(df, settings).items()}
    labels, missing = {}, {}
    for (claim, key), g in df.groupby(["claim", "key"], sort=False):
        at = dict(zip(g.setting, g.verdict))
        missing[claim, key] = ", ".join(s for s in settings if at.get(s) in (None, WITHHELD))
        labels[claim, key] = DESCRIPTIVE if (g.test == "descriptive").all() else consistency({s: at.get(s) for s in settings})
    return df.assign(consistency=[labels[k] for k in zip(df.claim, df.key)],
                     claim_consistency=df.claim.map(by_claim).fillna(DESCRIPTIVE),
                     untested_in=[missing[k] for k in zip(df.claim, df.key)])[GENERALITY_COLUMNS]


def claim_summary(table: pd.DataFrame, settings: list[str]) -> pd.DataFrame:
    """Per claim with a tested statistic: its consistency, and the settings where it holds, where
    it does not, and where it was not tested."""
    rows = []
    statements = table.drop_duplicates("claim").set_index("claim")["statement"]
    for claim, at in claim_verdicts(table, settings).items():
        rows.append({"claim": claim, "statement": statements[claim], "consistency": consistency(at),
                     "holds in": ", ".join(s for s, v in at.items() if v == HOLDS) or "-",
                     "does not hold in": ", ".join(s for s, v in at.items() if v is not None and v != HOLDS) or "-",
                     "not tested in": ", ".join(s for s, v in at.items() if v is None) or "-"})
    return pd.DataFrame(rows, columns=["claim", "statement", "consistency", "holds in", "does not hold in", "not tested in"])


def wide_table(table: pd.DataFrame, settings: list[str]) -> pd.DataFrame:
    """The tested statistics, one row each, with per setting the estimate [95% interval] (in the
    unit the report shows) and the verdict ("not tested" where the setting lacks it), then n per
    setting and the consistency."""
    tested = table[table.test != "descriptive"]
    rows = []
    for (claim, key), g in tested.groupby(["claim", "key"], sort=False):
        at = {r.setting: r for r in g.itertuples(index=False)}
        first = g.iloc[0]
        row = {"claim": claim, "statistic": key, "unit": first.unit, "test": first.test}
        for s in settings:
            r = at.get(s)
            row[s] = "-" if r is None else estimate_text(r.estimate, r.ci_low, r.ci_high, r.unit)
            row[f"{s} verdict"] = "not tested" if r is None else r.verdict
        row[f"n ({' / '.join(settings)})"] = " / ".join("-" if s not in at else str(at[s].n) for s in settings)
        row["consistency"] = first.consistency
        rows.append(row)
    return pd.DataFrame(rows).assign(unit=lambda d: d.unit.map(UNITS)) if rows else pd.DataFrame(rows)


def load_settings(profile: str, datasets: list[str]) -> tuple[dict[Setting, dict[str, dict[str, pd.DataFrame]]], dict[str, dict[str, str]]]:
    """Each setting's collected tables (`analysis.presentation.load_setting`) without the studies
    it skipped, and those studies' reasons by setting name; an error names every setting without
    tables and the command that makes them."""
    settings = [Setting(profile, d) for d in datasets]
    names = [s.name for s in settings]
    if len(set(names)) < len(names):
        raise SystemExit(f"error: --datasets {','.join(datasets)} names a setting twice ({', '.join(names)}); give each dataset once")
    tables = {s: load_setting(s.name) for s in settings}
    missing = [(s, d) for (s, t), d in zip(tables.items(), datasets) if not t]
    if missing:
        raise TableError("no collected tables of " + "; ".join(
            f"setting {s.name} (reports/{s.name}/tables): run `make all PROFILE={profile} DATASET={d}`" for s, d in missing) + " first")
    skipped = {s.name: {study: why for study in t if (why := study_adaptation(s.name, study).skipped)} for s, t in tables.items()}
    return {s: {study: st for study, st in t.items() if study not in skipped[s.name]} for s, t in tables.items()}, skipped


def n_text(table: pd.DataFrame, settings: list[str]) -> str:
    """n of the tested statistics per setting: "quick 5, quick-digits 3 to 5"."""
    tested = table[table.test != "descriptive"]
    parts = []
    for s in settings:
        n = tested.loc[tested.setting == s, "n"]
        parts.append(f"{s} -" if n.empty else f"{s} {n.min()}" + ("" if n.min() == n.max() else f" to {n.max()}"))
    return ", ".join(parts)


def build(profile: str, datasets: list[str], min_n: int = MIN_N) -> list[str]:
    """Write reports/generality/claims.csv, figures/generality/verdicts.{pdf,png} and
    reports/generality/index.html; the paths written, relative to the output folder."""
    loaded, skipped = load_settings(profile, datasets)
    settings = [s.name for s in loaded]
    on = {s.name: setting_dataset(s) for s in loaded}
    table = generality_table({s.name: t for s, t in loaded.items()}, on, min_n=min_n)
    out = report_dir(NAME)
    atomic_write(out / "claims.csv", table.to_csv(index=False).encode())
    fig, caption = draw(table, settings)
    save(fig, "verdicts", NAME, caption)
    atomic_write(out / "index.html", page(index_body(table, profile, settings, on, skipped, caption), f"Generality of the dropout claims ({profile})").encode())
    return [f"reports/{NAME}/claims.csv", f"figures/{NAME}/verdicts.pdf", f"figures/{NAME}/verdicts.png", f"reports/{NAME}/index.html"]


def index_body(table: pd.DataFrame, profile: str, settings: list[str], on: Mapping[str, str], skipped: Mapping[str, Mapping[str, str]],
               caption: str) -> str:
    """The body of reports/generality/index.html: `on[setting]` its dataset, `skipped[setting]` its
    skipped studies' reasons, `caption` the figure's (read from figures/generality/verdicts.png)."""
    family = holm_family_size(table)
    listed = ", ".join(f"{s} ({on[s]})" for s in settings)
    body = [f"<h1>Generality of the dropout claims <small>({html.escape(profile)} profile on {len(settings)} datasets)</small></h1>",
            f"<p>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the tables in "
            + ", ".join(f"reports/{html.escape(s)}/tables" for s in settings) + ".</p>",
            "<p>" + html.escape(
                f"The {profile} profile's study design run on {len(settings)} datasets; settings (dataset): {listed}. Every claim statistic "
                f"is computed per setting from that setting's tables, then all are decided as one family: Holm's adjustment across the "
                f"{family} tested rows of all settings (each setting's own report adjusts within the setting, so its p (Holm) are smaller "
                f"and a verdict there can differ). n per claim (seeds; for C9 and C10 groups of M seeds), by setting: "
                f"{n_text(table, settings)}; no verdict below {MIN_N}.") + "</p>",
            "<p>" + html.escape(
                "Consistency: a statistic holds in a setting when its verdict there is supported (the effect on the claim's side, "
                "equivalence or non-inferiority within its margin); contradicted, inconclusive and withheld do not. Over the settings "
                "where it was tested: holds in every setting (tested and supported in all), holds where tested (supported wherever "
                "tested, not tested in some setting, e.g. its study skipped there), setting-dependent (supported in some, not in "
                "others), holds in none. A claim holds in a setting when every tested statistic it has there holds.") + "</p>"]
    png = figures_dir(NAME) / "verdicts.png"
    if png.is_file():
        data = base64.b64encode(png.read_bytes()).decode()
        body += ["<h2>Verdict matrix</h2>", f"<figure><img src='data:image/png;base64,{data}' alt='verdicts'><figcaption>{html.escape(caption)} "
                 f"(<a href='../../figures/{NAME}/verdicts.pdf'>PDF</a>)</figcaption></figure>"]
    wide = wide_table(table, settings)
    body += ["<h2>Claims across settings</h2>", "<p>Tested statistics only (estimates in the unit shown; the descriptive rows are in "
             "each setting's table below and in claims.csv).</p>",
             html_table(wide, highlight=tuple(f"{s} verdict" for s in settings), classes="t claims", wrap=("statistic",)) if not wide.empty
             else "<p>No tested statistic in any setting.</p>"]
    summary = claim_summary(table, settings)
    every = summary.loc[summary.consistency == EVERY, "claim"].tolist()
    others = [f"{c} ({k})" for c, k in zip(summary.claim, summary.consistency) if k != EVERY]
    body += ["<h2>Per claim</h2>",
             f"<p>Hold in every setting: {html.escape(', '.join(every) or 'none')}. Not in every setting: {html.escape(', '.join(others) or 'none')}.</p>",
             html_table(summary, classes="t claims", wrap=("statement",))]
    body += ["<h2>Each setting</h2>"]
    for s in settings:
        rows = table[table.setting == s]
        body += [f"<h3 id='{html.escape(s)}'>{html.escape(s)} <small>({html.escape(on[s])})</small></h3>",
                 f"<p class='setup'>Its own report: <a href='../{html.escape(s)}/index.html'>reports/{html.escape(s)}/index.html</a></p>"]
        if skipped.get(s):
            body += ["<ul class='setup'>" + "".join(f"<li>{html.escape(st)} skipped: {html.escape(why)}</li>" for st, why in skipped[s].items()) + "</ul>"]
        body += claims_html(show_claims(rows), f"The rows of {s}, decided in the family of all {len(settings)} settings (p (Holm) across "
                                               f"{family} tested rows).", legend=False) if not rows.empty else ["<p>No claims computed.</p>"]
    return "\n".join(body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.generality", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--datasets", default=",".join(GENERALITY), help=f"comma-separated datasets, one setting each (default: {','.join(GENERALITY)})")
    args = ap.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    if len(datasets) < 2:
        raise SystemExit(f"error: --datasets names {len(datasets)} dataset(s); generality compares at least two settings")
    written = build(args.profile, datasets)
    table = pd.read_csv(report_dir(NAME) / "claims.csv")
    for claim, label in table.drop_duplicates("claim")[["claim", "claim_consistency"]].itertuples(index=False):
        print(f"  {claim:<4} {label}")
    print(f"wrote {', '.join(written)}")
    return 0


if __name__ == "__main__":
    from .tables import exit_2

    sys.exit(exit_2(main))
