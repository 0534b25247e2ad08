"""The report: ``python -m analysis.report --profile P [--dataset D]`` writes reports/S/, S the
setting (`harness.sweep.setting.Setting(P, D).name`: P itself without D), with

- index.html: one self-contained page (figures embedded) naming its setting and dataset, with the
  claims table, and per study how it was adapted to the dataset, its setup, its tables and its
  figures (a study the setting skipped: the reason instead);
- report.md and one CSV per table (numbers unformatted) for further work.

Every number is a mean over runs (streams averaged within a run first) with its 95% interval, the
interval's method and n (`analysis.summaries`); every table is generated from the collected tables,
never typed.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from harness.files import atomic_write
from harness.stats.sequential import CONDITIONAL_POWER_FLOOR
from harness.sweep.experiment import load_experiment
from harness.sweep.setting import Setting
from harness.sweep.tuning import TIE_SE

from . import reference
from .claims import ARM_PATIENCE, CONVERGED_SHARE, SESOI, claims_table
from .paths import ROOT, figures_dir, report_dir
from .presentation import (
    STUDIES,
    claim_lines,
    claims_html,
    design_text,
    html_table,
    load_setting,
    page,
    setting_dataset,
    show_claims,
    study_adaptation,
    to_markdown,
)
from .summaries import study_tables
from .tables import TableError

PERCENT = {"error", "train_error", "test_error", "ece", "overconfidence"}


def setup_line(study: str, runs: pd.DataFrame) -> str:
    arch = ", ".join(sorted(set(runs["model"] + " " + runs["widths"])))
    seeds = sorted(runs["seed"].unique())
    epochs = sorted(runs["epochs"].unique())
    trained = f"epochs: {', '.join(map(str, epochs))}" if len(epochs) <= 4 else f"epochs: {epochs[0]} to {epochs[-1]}"
    if "steps" in runs:
        steps = sorted(runs["steps"].unique())
        trained += (
            f"; steps: {', '.join(map(str, steps))}" if len(steps) <= 4 else f"; steps: {steps[0]} to {steps[-1]}"
        )
    return (
        f"data: {', '.join(sorted(runs.dataset.unique()))}; networks: {arch}; {trained}; seeds: "
        f"{', '.join(map(str, seeds))}; {len(runs)} runs ({(runs.status == 'ok').sum()} ok); machine: "
        f"{'; '.join(sorted(runs.machine.unique())) if 'machine' in runs else 'unknown'}; training time: "
        f"{runs.wall_time_s.sum() / 60:.1f} min in all; {convergence(runs)}"
    )


def convergence(runs: pd.DataFrame) -> str:
    """How the study's runs stopped, and their learning rates (chosen per arm on validation)."""
    if "stopped_by" not in runs:
        return "stopping not recorded"
    counts = runs.stopped_by.value_counts()
    share = counts.get("patience", 0) / len(runs)
    rates = (
        ", ".join(f"{r:g} ({n} runs)" for r, n in runs.lr.value_counts().sort_index().items()) if "lr" in runs else "?"
    )
    flag = " (caution: most runs hit the training budget)" if share < CONVERGED_SHARE else ""
    return (
        f"stopped by patience: {share:.0%} ({', '.join(f'{n} {k}' for k, n in counts.items())}){flag}; best epoch: "
        f"median {runs.best_epoch.median():g}; learning rates chosen on validation: {rates}"
    )


def fmt_cell(df: pd.DataFrame) -> pd.DataFrame:
    """`mean [low, high]` strings for display; errors in percent."""
    out = df.copy()
    for c in list(out.columns):
        if f"{c}_ci_low" in out.columns:
            scale = 100 if c.split(" ")[0] in PERCENT else 1
            out[c] = [
                _cell(m, lo, hi, scale)
                for m, lo, hi in zip(out[c], out[f"{c}_ci_low"], out[f"{c}_ci_high"], strict=False)
            ]
            out = out.drop(columns=[f"{c}_ci_low", f"{c}_ci_high"])
            if c.split(" ")[0] in PERCENT:
                out = out.rename(columns={c: f"{c} (%)"})
    return out


def _cell(m: float, lo: float, hi: float, scale: float) -> str:
    if pd.isna(m):
        return "-"
    if pd.isna(lo):
        return f"{scale * m:.3g}"
    return f"{scale * m:.3g} [{scale * lo:.3g}, {scale * hi:.3g}]"


def sesoi_text() -> str:
    """The smallest effects of interest per unit, as the report shows them."""
    from .presentation import UNITS, unit_scale

    return ", ".join(f"{v * unit_scale(u):g} {UNITS.get(u, u)}" for u, v in SESOI.items())


def study_doc(study: str, profile: str) -> str:
    return load_experiment(ROOT / "experiments" / f"{study}.py", profile).doc


@dataclass
class Document:
    """The report as it is written: Markdown lines and HTML lines, section by section."""

    md: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)

    def add(self, md: list[str], html_: list[str]) -> None:
        self.md += md
        self.html += html_


def header(doc: Document, name: str, profile: str, on: str) -> None:
    """The title, when and from what the report was made, its setting, and the paper-check warning."""
    title = f"{name}: {profile} profile on {on}"
    made = f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the tables in reports/{name}/tables."
    setting = f"Setting: {name}, the {profile} profile's study design; dataset: {on}."
    doc.add(
        [f"# Dropout harness report ({title})", "", made, "", setting, ""],
        [
            f"<h1>Dropout harness report <small>({html.escape(title)})</small></h1>",
            f"<p>{html.escape(made)}</p>",
            f"<p class='setup'>{html.escape(setting)}</p>",
        ],
    )
    from harness.sweep.setting import CHECK_STEPS, checking

    if checking():  # `make paper-check`: every number below comes from stand-in data and a few steps
        warn = (
            f"paper-check: stand-in data in the paper's layout, every run cut to {CHECK_STEPS} optimizer steps with "
            "narrower nets and fewer subnetworks. This report proves that every study, table and figure of the "
            "profile runs end to end; its numbers are not results."
        )
        doc.add([f"**{warn}**", ""], [f"<p><strong>{html.escape(warn)}</strong></p>"])


def claims_intro(claims: pd.DataFrame) -> str:
    """How the claims table was made: replicates, looks, tests, Holm, withheld rows and power."""
    return (
        "Claims: each statistic is computed per seed (the replicate; design cells averaged within a seed; for C9 "
        "and C10 the replicate is a group of M seeds: an ensemble and the M dropout nets trained beside it), then "
        "its mean, 95% interval (method named) and n seeds. Directional claims use a two-sided t-test; C2 two "
        "one-sided tests against its equivalence margin; C5 a non-inferiority test against its margin, with the "
        f"best cell chosen per seed on that seed's validation error. Seeds come in looks: {design_text(claims)}. A "
        "study gets the next look's seeds only while one of its rows is undecided and could still be decided at the "
        f"largest n (conditional power there at least {CONDITIONAL_POWER_FLOOR:g}). Each row is decided by a "
        "group-sequential design: Lan-DeMets alpha spending with O'Brien-Fleming-type boundaries (Lan and DeMets "
        "1983) and Holm's step-down on the repeated p-values across the tested claims (Maurer and Bretz 2013); the "
        "adjusted repeated p decides, at the look named, from the n seeds of that look. Directional claims can also "
        "be negligible: the interval inside plus or minus the smallest effect of interest stated in advance "
        f"({sesoi_text()}). A tested claim is withheld when fewer than {ARM_PATIENCE:.0%} of the runs of an arm it "
        "reads stopped by patience. Power at Holm's strictest level: MDE, the smallest effect (distance from 0 or "
        "from the margin) detected with 80% power at this n; seeds needed, to detect the observed effect with 80% "
        "power."
    )


def claims_section(doc: Document, claims: pd.DataFrame, name: str) -> None:
    """The claims table; for the paper profile's own data, the published numbers after it."""
    shown, intro = show_claims(claims), claims_intro(claims)
    doc.add(["## Claims", "", intro, "", to_markdown(shown), ""], ["<h2>Claims</h2>"] + claims_html(shown, intro))
    if name == "paper":  # the published numbers are of the paper profile's own data
        doc.add(
            ["## Published reference numbers", "", reference.NOTE, "", to_markdown(reference.REFERENCE), ""],
            [
                "<h2>Published reference numbers</h2>",
                f"<p>{html.escape(reference.NOTE)}</p>",
                html_table(reference.REFERENCE),
            ],
        )


TUNING_TITLE = (
    "learning rate of each arm chosen on validation (tuning runs: the arm at every rate of the grid on each of its "
    "tuning seeds, none of them a replicate; the rate with the lowest mean monitored value is chosen, or the "
    f"smallest rate within {TIE_SE:g} standard errors of it (tie: the margin is inside the tuning seeds' noise, so a "
    "stated rule decides, not float rounding; a margin close to the band can still fall either side of it); margin: "
    "the other rates' best mean minus the chosen one's, margin_se its standard error: per-seed differences pooled "
    "over the study's arms, with se_df degrees of freedom)"
)


def study_intro(doc: Document, study: str, profile: str, how, on: str) -> None:
    """A study's heading, how it was adapted to the dataset, its experiment's description, and why
    it was skipped (`how`: its `analysis.tables.adaptation`)."""
    text = study_doc(study, profile)
    doc.add([f"## {study}", ""], [f"<h2 id='{study}'>{study}</h2>"])
    if how.notes:
        doc.add(
            [f"Adapted to {how.dataset or on}:", ""] + [f"- {n}" for n in how.notes] + [""],
            [
                f"<p class='setup'>Adapted to {html.escape(how.dataset or on)}:</p>",
                "<ul class='setup'>" + "".join(f"<li>{html.escape(n)}</li>" for n in how.notes) + "</ul>",
            ],
        )
    doc.add([text, ""], ["<p>" + html.escape(text).replace("\n\n", "</p><p>") + "</p>"])
    if how.skipped:
        doc.add(
            [f"Skipped on {how.dataset or on}: {how.skipped}", ""],
            [f"<p class='setup skipped'>Skipped on {html.escape(how.dataset or on)}: {html.escape(how.skipped)}</p>"],
        )


def study_results(doc: Document, study: str, t: dict[str, pd.DataFrame], csv) -> None:
    """A study's setup, then its summary tables and its tuning table, each also written by
    `csv(file, table)`."""
    setup = setup_line(study, t["runs"])
    doc.add([f"Setup: {setup}", ""], [f"<p class='setup'>Setup: {html.escape(setup)}</p>"])
    summaries = study_tables(study, t)
    if "tuning" in t:
        summaries[TUNING_TITLE] = t["tuning"].drop(columns=["run_id"])
    for title, df in summaries.items():
        csv(f"{study}__{title.split(' (')[0].replace(' ', '_')}", df)
        shown = fmt_cell(df)
        doc.add([f"### {title}", "", to_markdown(shown), ""], [f"<h3>{html.escape(title)}</h3>", html_table(shown)])


def study_figures(doc: Document, name: str, figs) -> None:
    """A study's figures that were drawn, with their captions (PNG embedded in the page)."""
    for fig in figs:
        png = figures_dir(name) / f"{fig}.png"
        if not png.is_file():
            continue
        txt = figures_dir(name) / f"{fig}.txt"
        caption = txt.read_text().strip() if txt.is_file() else ""
        data = base64.b64encode(png.read_bytes()).decode()
        doc.add(
            [f"![{fig}](../../figures/{name}/{fig}.png)", "", caption, ""],
            [
                f"<figure><img src='data:image/png;base64,{data}' alt='{fig}'><figcaption>{html.escape(caption)} (<a "
                f"href='../../figures/{name}/{fig}.pdf'>PDF</a>)</figcaption></figure>"
            ],
        )


def build(profile: str, dataset: str | None = None) -> list[str]:
    """Write reports/<setting>/ (the setting: `profile`'s design on `dataset`, default each study's
    own data); the files written, by name."""
    setting = Setting(profile, dataset)
    name = setting.name
    out = report_dir(name)
    tables = load_setting(name)
    adapted = {s: study_adaptation(name, s) for s in tables}
    if not tables:
        make = f"make tables PROFILE={profile}" + (f" DATASET={dataset}" if setting.dataset is not None else "")
        raise TableError(f"no tables under {out / 'tables'}; run `{make}` first")
    written = []

    def csv(file: str, df: pd.DataFrame) -> None:
        atomic_write(out / f"{file}.csv", df.to_csv(index=False).encode())
        written.append(f"{file}.csv")

    claims = claims_table({s: t for s, t in tables.items() if not adapted[s].skipped})
    csv("claims", claims)
    on = setting_dataset(setting)
    doc = Document()
    header(doc, name, profile, on)
    claims_section(doc, claims, name)
    for study, figs in STUDIES.items():
        if study not in tables:
            continue
        study_intro(doc, study, profile, adapted[study], on)
        if not adapted[study].skipped:
            study_results(doc, study, tables[study], csv)
            study_figures(doc, name, figs)
    atomic_write(out / "report.md", "\n".join(doc.md).encode())
    atomic_write(out / "index.html", page("\n".join(doc.html), f"Dropout harness report ({name})").encode())
    return written + ["report.md", "index.html"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--dataset", help="the setting's dataset (default: each study's own)")
    args = ap.parse_args(argv)
    name = Setting(args.profile, args.dataset).name
    files = build(args.profile, args.dataset)
    print(f"reports/{name}/: {', '.join(files)}")
    print("\n".join(claim_lines(show_claims(pd.read_csv(report_dir(name) / "claims.csv")))))
    print(f"open {report_dir(name) / 'index.html'}")
    return 0


if __name__ == "__main__":
    from .tables import exit_2

    sys.exit(exit_2(main))
