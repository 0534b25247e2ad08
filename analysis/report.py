"""The report: ``python -m analysis.report --profile P [--dataset D]`` writes reports/S/, S the
setting (`harness.sweep.setting.Setting(P, D).name`: P itself without D), with

- index.html: one self-contained page (figures embedded) naming its setting and dataset, with the
  claims table, and per study how it was adapted to the dataset, its setup, its tables and its
  figures (a study the setting skipped: the reason instead);
- report.md and one CSV per table (numbers unformatted) for further work.

Every number is a mean over runs (streams averaged within a run first) with its 95% interval, the
interval's method and n; every table is generated from the collected tables, never typed.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from datetime import UTC, datetime

import pandas as pd

from harness.files import atomic_write
from harness.inference.coadaptation import compare
from harness.stats.intervals import interval
from harness.stats.sequential import CONDITIONAL_POWER_FLOOR
from harness.sweep.experiment import load_experiment
from harness.sweep.setting import Setting
from harness.sweep.tuning import TIE_SE

from . import reference
from .claims import (
    ARM_PATIENCE,
    BANDS,
    CONVERGED_SHARE,
    MILD_SHARE,
    SESOI,
    SEVERE_SHARE,
    claims_table,
    n_classes_of,
    per_replicate,
    severity_bands,
)
from .labels import label_keep, label_method, label_placement, sort_methods
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
from .tables import TableError

PERCENT = {"error", "train_error", "test_error", "ece", "overconfidence"}


UNIT_RANGE = {
    "auroc",
    "aupr",
    "fpr95",
    "error",
    "ece",
    "disagreement",
    "train_error",
    "test_error",
}  # quantities in [0, 1]


def summarize(df: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Per group: n, and per value column the mean with its 95% interval over rows (one row per run),
    and the interval's method. Intervals of quantities in [0, 1] (UNIT_RANGE) are cut to it: the
    mean lies in it, so the cut interval covers it exactly when the uncut one does."""
    rows = []
    for key, g in df.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=False))
        methods = set()
        for v in values:
            iv = interval(g[v])
            lo, hi = (max(iv.low, 0.0), min(iv.high, 1.0)) if v in UNIT_RANGE else (iv.low, iv.high)
            row |= {f"{v}": iv.estimate, f"{v}_ci_low": lo, f"{v}_ci_high": hi}
            methods.add(iv.method)
        row["n"] = len(g)
        row["interval"] = ", ".join(sorted(methods))
        rows.append(row)
    return pd.DataFrame(rows)


def mode_summary(ev: pd.DataFrame, by: list[str], metrics=("error", "nll", "ece", "inference_gap")) -> pd.DataFrame:
    """Inference modes at their largest k: one value per run (mean over repeats), then summarize."""
    e = ev[ev.metric.isin(metrics)].copy()
    e = e[e.k == e.groupby("mode")["k"].transform("max")]
    per_run = e.groupby(by + ["mode", "k", "run_id", "metric"])["value"].mean().unstack("metric").reset_index()
    return summarize(per_run, by + ["mode", "k"], [m for m in metrics if m in per_run.columns])


def method_summary(df: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """Robustness-table rows (metric, value, method, replicate, run_id): one value per replicate
    (its runs averaged, over the chosen sets too), then mean and interval over replicates per
    group, in the order of analysis.labels.METHOD_ORDER."""
    d = df[df.metric.isin(metrics) & df.method.notna()]
    per_rep = per_replicate(d, by + ["metric"]).unstack("metric").reset_index()
    return sort_methods(summarize(per_rep, by, [m for m in metrics if m in per_rep.columns]))


def side_by_side(groups: dict[str, pd.DataFrame], by: list[str], metrics: list[str], name: str) -> pd.DataFrame:
    """`method_summary` of each group of rows (e.g. one per set), side by side: one column (with
    its interval) per group and metric, named by `name` ("{metric} at {group}"); n and the interval
    method are those of the first group."""
    summaries = {g: method_summary(df, by, metrics).set_index(by) for g, df in groups.items()}
    columns = []
    for g, summary in summaries.items():
        rename = {
            f"{m}{end}": name.format(metric=m, group=g) + end for m in metrics for end in ("", "_ci_low", "_ci_high")
        }
        columns.append(summary[list(rename)].rename(columns=rename))
    first = next(iter(summaries.values()))
    return sort_methods(pd.concat(columns, axis=1).join(first[["n", "interval"]]).reset_index())


# ensemble loss: (member loss, diversity term); loss = member loss - term, per example (harness.measures.diversity)
DECOMPOSITION_TITLE = (
    "loss decomposition of the ensembles on the test split (each row: nll_arithmetic = member_nll - nll_gap, "
    "nll_geometric = member_nll - ce_diversity, brier = member_brier - brier_diversity; one value per replicate)"
)
DECOMPOSITIONS = {
    "nll_arithmetic": ("member_nll", "nll_gap"),
    "nll_geometric": ("member_nll", "ce_diversity"),
    "brier": ("member_brier", "brier_diversity"),
}
# the harness's names of the two ensemble NLLs: `nll` is that of the mean of probabilities (the
# prediction every method reports), `geometric_nll` that of the normalized geometric mean
DECOMPOSED_NLL = {"nll": "nll_arithmetic", "geometric_nll": "nll_geometric"}


def loss_decomposition(rows: pd.DataFrame) -> pd.DataFrame:
    """`method_summary` of robustness-table rows with `method` (those of averages, which carry the
    decomposition terms): per decomposition of DECOMPOSITIONS the member loss, the diversity term
    and the ensemble's loss, so every row adds up (exact per example, hence for the means over runs
    and replicates up to rounding; the Brier score is that of the mean of probabilities); then the
    label-free disagreement and pairwise KL."""
    d = rows.assign(metric=rows["metric"].replace(DECOMPOSED_NLL))
    columns = list(dict.fromkeys(c for loss, terms in DECOMPOSITIONS.items() for c in (*terms, loss)))
    return method_summary(d, ["method"], columns + ["disagreement", "pairwise_kl"])


def study_tables(study: str, t: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The summary tables of one study, by title."""
    runs = t.get("runs", pd.DataFrame())
    if study == "ensemble_vs_dropout" and "shift" in t:
        sh = label_method(t["shift"])
        test = sh[sh["set"] == "test"]
        return {
            "methods on the test split (one value per replicate)": method_summary(
                test, ["method"], ["error", "nll", "ece", "brier"]
            ),
            DECOMPOSITION_TITLE: loss_decomposition(
                test[test["mode"].isin(["mc_shared", "mc_per_example", "ensemble"])]
            ),
        }
    if study == "shift" and "shift" in t:
        sh = label_method(t["shift"])
        ece = sh[sh.metric == "ece"]
        at = {"test": "0 degrees"} | {
            f"rotation_{a}": f"{a} degrees" for a in (60, 90, 180) if f"rotation_{a}" in set(ece["set"])
        }
        groups = {w: ece[ece["set"] == s] for s, w in at.items()} | {
            "all corruptions": ece[ece["shift"] == "corruption"]
        }
        out = {
            "ECE by rotation and over corruptions (one value per replicate)": side_by_side(
                groups, ["method"], ["ece"], "{metric} at {group}"
            )
        }
        k = n_classes_of(t.get("runs"))
        bands = severity_bands(sh, k)
        out[
            "severity bands of the shifted sets (where the weight-scaled dropout nets' error lies between their "
            "clean error and chance "
            f"1 - 1/{k}: mild below {MILD_SHARE:.0%} of the way, severe from {SEVERE_SHARE:.0%}; rule fixed in "
            "advance, the same on every "
            "dataset)"
        ] = bands.rename("band").reset_index().groupby("band", sort=False)["set"].agg(", ".join).reset_index()
        by_band = {b: sh[sh["set"].isin(bands.index[bands == b])] for b in BANDS if (bands == b).any()}
        out["ECE and overconfidence (mean confidence - accuracy) by severity band (one value per replicate)"] = (
            side_by_side(by_band, ["method"], ["ece", "overconfidence"], "{metric} {group}")
        )
        if "ood" in t:
            ood = label_method(t["ood"])
            out["out-of-distribution detection against the test split (one value per replicate)"] = side_by_side(
                dict(list(ood.groupby("set"))), ["method", "score"], ["auroc", "aupr", "fpr95"], "{metric} {group}"
            )
        return out
    if study in ("mc_vs_ws", "exact") and "evaluations" in t:
        return {"inference modes at the largest k": mode_summary(t["evaluations"], ["widths"])}
    if study == "placement" and "evaluations" in t:
        return {
            "placement and inference": mode_summary(
                label_placement(t["evaluations"]), ["placement"], ("error", "nll", "ece")
            )
        }
    if study == "keep_sweep":
        r = label_keep(runs)
        return {"error against keep": summarize(r, ["keep", "width"], ["train_error", "test_error"])}
    if study == "data_size":
        r = runs.assign(dropout=runs.p_drop_hidden > 0)
        return {
            "test error by size, width and dropout": summarize(
                r, ["width", "train_size", "dropout"], ["train_error", "test_error"]
            )
        }
    if study == "rate_grid":
        return {"test error by drop rates": summarize(runs, ["p_drop_input", "p_drop_hidden"], ["test_error"])}
    if study == "features" and "coadaptation" in t:
        co = t["coadaptation"][t["coadaptation"].metric.isin(["zero_fraction", "mean_activation", "mean_abs_r"])]
        wide = co.pivot_table(
            index=["run_id", "p_drop_hidden", "layer"], columns="metric", values="value"
        ).reset_index()
        return {
            "activation statistics": summarize(
                wide, ["p_drop_hidden", "layer"], ["zero_fraction", "mean_activation", "mean_abs_r"]
            )
        }
    if study == "coadaptation" and "coadaptation" in t:
        co = t["coadaptation"]
        keep = [
            "mean_abs_r",
            "frac_abs_r_gt_0.5",
            "n_dead",
            "decov_normalized",
            "participation_ratio",
            "effective_rank",
            "interaction_abs_mean",
        ]
        cmp = compare(co[["run_id", "layer", "metric", "value"]], runs, "p_drop_hidden")
        cmp = cmp[cmp.metric.isin(keep)]
        return {"difference from no dropout (95% Welch-t interval, Mann-Whitney U, Benjamini-Hochberg adjusted p)": cmp}
    return {}


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
        f"data: {', '.join(sorted(runs.dataset.unique()))}; networks: {arch}; {trained}; "
        f"seeds: {', '.join(map(str, seeds))}; {len(runs)} runs ({(runs.status == 'ok').sum()} ok); "
        f"machine: {'; '.join(sorted(runs.machine.unique())) if 'machine' in runs else 'unknown'}; "
        f"training time: {runs.wall_time_s.sum() / 60:.1f} min in all; {convergence(runs)}"
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
        f"stopped by patience: {share:.0%} ({', '.join(f'{n} {k}' for k, n in counts.items())}){flag}; "
        f"best epoch: median {runs.best_epoch.median():g}; learning rates chosen on validation: {rates}"
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

    def csv(name: str, df: pd.DataFrame) -> None:
        atomic_write(out / f"{name}.csv", df.to_csv(index=False).encode())
        written.append(f"{name}.csv")

    claims = claims_table({s: t for s, t in tables.items() if not adapted[s].skipped})
    csv("claims", claims)
    on = setting_dataset(setting)
    title = f"{name}: {profile} profile on {on}"
    md = [
        f"# Dropout harness report ({title})",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC from the tables in reports/{name}/tables.",
        "",
    ]
    page_ = [f"<h1>Dropout harness report <small>({html.escape(title)})</small></h1>", f"<p>{html.escape(md[2])}</p>"]
    md += [f"Setting: {name}, the {profile} profile's study design; dataset: {on}.", ""]
    page_ += [f"<p class='setup'>{html.escape(md[-2])}</p>"]
    from harness.sweep.setting import CHECK_STEPS, checking

    if checking():  # `make paper-check`: every number below comes from stand-in data and a few steps
        warn = (
            f"paper-check: stand-in data in the paper's layout, every run cut to {CHECK_STEPS} optimizer steps with "
            "narrower nets "
            "and fewer subnetworks. This report proves that every study, table and figure of the profile runs end to "
            "end; "
            "its numbers are not results."
        )
        md += [f"**{warn}**", ""]
        page_ += [f"<p><strong>{html.escape(warn)}</strong></p>"]
    claims_show = show_claims(claims)
    intro = (
        "Claims: each statistic is computed per seed (the replicate; design cells averaged within a seed; for C9 and "
        "C10 the "
        "replicate is a group of M seeds: an ensemble and the M dropout nets trained beside it), then its mean, "
        "95% interval (method named) and n seeds. Directional claims use a two-sided t-test; C2 two one-sided tests "
        "against "
        "its equivalence margin; C5 a non-inferiority test against its margin, with the best cell chosen per seed on "
        "that seed's validation error. "
        f"Seeds come in looks: {design_text(claims)}. A study gets the next look's seeds only while one of its rows is "
        "undecided and could still be decided at the largest n (conditional power there at least "
        f"{CONDITIONAL_POWER_FLOOR:g}). "
        "Each row is decided by a group-sequential design: Lan-DeMets alpha spending with O'Brien-Fleming-type "
        "boundaries "
        "(Lan and DeMets 1983) and Holm's step-down on the repeated p-values across the tested claims (Maurer and "
        "Bretz 2013); "
        "the adjusted repeated p decides, at the look named, from the n seeds of that look. Directional claims can "
        "also be "
        "negligible: the interval inside plus or minus the smallest effect of interest stated in advance "
        f"({sesoi_text()}). "
        f"A tested claim is withheld when fewer than {ARM_PATIENCE:.0%} of the runs of an arm it reads stopped by "
        "patience. "
        "Power at Holm's strictest level: MDE, the smallest effect (distance from 0 or from the margin) "
        "detected with 80% power at this n; seeds needed, to detect the observed effect with 80% power."
    )
    md += ["## Claims", "", intro, "", to_markdown(claims_show), ""]
    page_ += ["<h2>Claims</h2>"] + claims_html(claims_show, intro)
    if name == "paper":  # the published numbers are of the paper profile's own data
        md += ["## Published reference numbers", "", reference.NOTE, "", to_markdown(reference.REFERENCE), ""]
        page_ += [
            "<h2>Published reference numbers</h2>",
            f"<p>{html.escape(reference.NOTE)}</p>",
            html_table(reference.REFERENCE),
        ]
    for study, figs in STUDIES.items():
        if study not in tables:
            continue
        t, how = tables[study], adapted[study]
        doc = study_doc(study, profile)
        md += [f"## {study}", ""]
        page_ += [f"<h2 id='{study}'>{study}</h2>"]
        if how.notes:
            md += [f"Adapted to {how.dataset or on}:", ""] + [f"- {n}" for n in how.notes] + [""]
            page_ += [
                f"<p class='setup'>Adapted to {html.escape(how.dataset or on)}:</p>",
                "<ul class='setup'>" + "".join(f"<li>{html.escape(n)}</li>" for n in how.notes) + "</ul>",
            ]
        md += [doc, ""]
        page_ += ["<p>" + html.escape(doc).replace("\n\n", "</p><p>") + "</p>"]
        if how.skipped:
            md += [f"Skipped on {how.dataset or on}: {how.skipped}", ""]
            page_ += [
                f"<p class='setup skipped'>Skipped on {html.escape(how.dataset or on)}: {html.escape(how.skipped)}</p>"
            ]
            continue
        setup = setup_line(study, t["runs"])
        md += [f"Setup: {setup}", ""]
        page_ += [f"<p class='setup'>Setup: {html.escape(setup)}</p>"]
        summaries = study_tables(study, t)
        if "tuning" in t:
            summaries[
                "learning rate of each arm chosen on validation (tuning runs: the arm at every rate of the grid on "
                "each of its "
                "tuning seeds, none of them a replicate; the rate with the lowest mean monitored value is chosen, or "
                "the smallest rate "
                f"within {TIE_SE:g} standard errors of it (tie: the margin is inside the tuning seeds' noise, so a "
                "stated rule decides, "
                "not float rounding; a margin close to the band can still fall either side of it); margin: the other "
                "rates' best "
                "mean minus the chosen one's, margin_se its standard error: per-seed differences pooled over the "
                "study's arms, with se_df "
                "degrees of freedom)"
            ] = t["tuning"].drop(columns=["run_id"])
        for title, df in summaries.items():
            file = f"{study}__{title.split(' (')[0].replace(' ', '_')}"
            csv(file, df)
            shown = fmt_cell(df)
            md += [f"### {title}", "", to_markdown(shown), ""]
            page_ += [f"<h3>{html.escape(title)}</h3>", html_table(shown)]
        for fig in figs:
            png = figures_dir(name) / f"{fig}.png"
            if not png.is_file():
                continue
            caption = (
                (figures_dir(name) / f"{fig}.txt").read_text().strip()
                if (figures_dir(name) / f"{fig}.txt").is_file()
                else ""
            )
            md += [f"![{fig}](../../figures/{name}/{fig}.png)", "", caption, ""]
            data = base64.b64encode(png.read_bytes()).decode()
            page_ += [
                f"<figure><img src='data:image/png;base64,{data}' alt='{fig}'><figcaption>{html.escape(caption)} "
                f"(<a href='../../figures/{name}/{fig}.pdf'>PDF</a>)</figcaption></figure>"
            ]
    atomic_write(out / "report.md", "\n".join(md).encode())
    atomic_write(out / "index.html", page("\n".join(page_), f"Dropout harness report ({name})").encode())
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
