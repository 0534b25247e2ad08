"""Verdicts on the claims of the dropout story, computed from the collected tables.

Every claim statistic is an entry of `analysis.claim_specs.SPECS`: a pure function from the tables to
one value per independent replicate (a seed: runs that share a seed are matched pairs, and design
cells such as architectures, sizes, widths or keep probabilities are averaged within the seed first;
`analysis.claim_values`), tested by `harness.stats.verdicts` with the right kind of test, Holm's
adjustment across the family and a power analysis. n is always the number of seeds. Nothing is typed
by hand: flip the data and the verdict flips.

`claim_specs` gives each statistic's values and hypothesis, and a `key` that names it without what
its setting decides (sizes, widths, the chosen cell), so the same statistic can be matched across
settings; `decide_specs` decides any list of specs as one Holm family (one setting's, in
`claims_table`, or every setting's, in `analysis.generality`).

Margins are stated in advance (in the statistic's unit, fractions of error): EQUIVALENCE_MARGIN
for C2, NONINFERIORITY_MARGIN for C5. C5's "best cell" is chosen per seed on that seed's validation
error and compared on its test error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.stats.sequential import Design, decide_in_looks
from harness.stats.verdicts import MIN_N, Hypothesis
from harness.sweep.profiles import LOOKS
from harness.sweep.setting import setting_name
from harness.sweep.studies import STUDIES

from .claim_specs import SPECS, Margins, Spec, Study
from .presentation import claim_lines, load_setting, show_claims, study_adaptation
from .tables import TableError

EQUIVALENCE_MARGIN = 0.005  # C2: weight scaling within 0.5 points of error of the ensemble
NONINFERIORITY_MARGIN = 0.005  # C5: the recommended rates at most 0.5 points worse than the best
# Smallest effects of interest of the directional claims, by unit, stated in advance: "no effect"
# is said only when a claim's interval lies within +- this; otherwise too few seeds.
SESOI = {"error": 0.005, "r": 0.02, "nats": 0.02, "brier": 0.002, "ece": 0.01}

CLAIMS = {
    "C1": "the trained net behaves like an ensemble: averaging subnetworks beats the average subnetwork",
    "C2": "weight scaling approximates averaging the ensemble",
    "C3": "dropout prevents co-adaptation: hidden units correlate less",
    "C4": "dropout reduces overfitting (lower test error)",
    "C4b": "... most where data are scarce",
    "C5": "good rates: drop about 0.2 of the inputs and 0.5 of the hidden units",
    "C6": "with dropout, widen layers by 1/keep",
    "C7": "dropout after convolutions can hurt; it belongs after fully connected layers",
    "C8": "bigger networks benefit more from dropout",
    "C9": "the dropout subnetworks are a weaker ensemble than the same number of independently trained networks",
    "C10": "under shift, averaging subnetworks is better calibrated than weight scaling, and a true ensemble is "
    "better still",
}
COLUMNS = [
    "claim",
    "statement",
    "study",
    "statistic",
    "unit",
    "test",
    "margin",
    "estimate",
    "ci_low",
    "ci_high",
    "method",
    "n",
    "look",
    "design",
    "p_value",
    "repeated_p",
    "p_adjusted",
    "conditional_power",
    "asks_more",
    "effect_sd",
    "mde",
    "seeds_needed",
    "stopped_by_patience",
    "verdict",
    "reason",
]
CONVERGED_SHARE = 0.5  # a study whose runs mostly hit the budget is flagged in the report's run summary
# a tested claim is withheld unless, in every arm it reads, at least this share of the runs stopped by
# patience: an arm cut short by the budget is not at its best, and "dropout hurts" may be the budget speaking
ARM_PATIENCE = 0.9
ARM_COLUMNS = [
    "model",
    "widths",
    "depth",
    "width",
    "p_drop_input",
    "p_drop_hidden",
    "p_drop_sites",
    "train_size",
    "lr",
    "dataset",
]


def claim_specs(
    tables: dict[str, dict[str, pd.DataFrame]],
    equivalence_margin: float = EQUIVALENCE_MARGIN,
    noninferiority_margin: float = NONINFERIORITY_MARGIN,
) -> list[tuple[dict, pd.Series, Hypothesis]]:
    """(row metadata, values per seed, hypothesis) for every row of the entries of SPECS whose study
    is in `tables` (`tables[study][name]`) with the tables they need, in the order of SPECS; a
    missing study is skipped, so a partial suite still gets verdicts."""
    margins = Margins(equivalence_margin, noninferiority_margin)
    studies = {name: Study(t) for name, t in tables.items()}
    specs = []
    for spec in SPECS:
        study = studies.get(spec.study)
        if study is None or not study.has(*spec.needs):
            continue
        h = spec_hypothesis(spec, margins)
        used = spec.runs(study) if spec.runs else None
        specs += [
            (row_meta(spec, study, statistic, key, used), v, h) for statistic, key, v in spec.rows(study, margins)
        ]
    return specs


def spec_hypothesis(spec: Spec, margins: Margins) -> Hypothesis:
    """What an entry's rows are tested for: a directional claim against its unit's SESOI, C2 and C5
    against their margins."""
    if spec.test == "directional":
        return Hypothesis("directional", sesoi=SESOI[spec.unit])
    margin = {"equivalence": margins.equivalence, "noninferiority": margins.noninferiority}.get(spec.test)
    return Hypothesis(spec.test) if margin is None else Hypothesis(spec.test, margin)


def row_meta(spec: Spec, study: Study, statistic: str, key: str, runs: pd.DataFrame | None) -> dict:
    """A row's metadata: `runs` the runs the statistic reads (None: all of the study's), for its
    convergence share and weakest arm; `key` the statistic named without what its setting decides."""
    used = runs if runs is not None else study.get("runs")
    return {
        "claim": spec.claim,
        "statement": CLAIMS[spec.claim],
        "study": spec.study,
        "statistic": statistic,
        "unit": spec.unit,
        "stopped_by_patience": patience_share(used),
        "weakest_arm": weakest_arm(used),
        "key": key,
        "profile": profile_of(study.tables),
    }


def tested_entries(study: str) -> int | None:
    """How many tested entries of SPECS `study` has, None when one makes a row per hidden layer (C3)."""
    tested = [s for s in SPECS if s.study == study and s.test != "descriptive"]
    for s in tested:
        if s.each and s.each != "hidden layer":
            raise ValueError(f"{s.claim}: count the tested rows per {s.each} in analysis.claims.tested_rows_at_most")
    return None if any(s.each for s in tested) else len(tested)


# The most tested rows `claim_specs` gives each study, known before its tables exist: the looks
# driver counts every other study's rows at p = 1 in Holm's family (tests/test_suite.py checks the
# bound on every study's collected tables). An entry of SPECS gives at most one row, except
# coadaptation's, one per hidden site of its MLPs (None here); shift's C10 entries give two tested
# rows per tested band (fewer when no shifted set falls in a band).
TESTED_ROWS = {study: tested_entries(study) for study in STUDIES}


def tested_rows_at_most(study: str, configs: list, skipped: bool = False) -> int:
    """At most how many tested rows `claim_specs` gives `study` whose runs are `configs` (the
    experiment's, as `harness.sweep.experiment.load_experiment` lists them): 0 for a study its setting
    skips, one per hidden layer for coadaptation."""
    if skipped:
        return 0
    if study not in TESTED_ROWS:
        raise ValueError(f"study {study!r} is not in harness.sweep.studies.STUDIES: add it there")
    if TESTED_ROWS[study] is None:
        if any(c.model.kind != "mlp" for c in configs):
            raise ValueError(
                f"{study}'s tested rows are counted per hidden layer of an MLP; count a CNN's sites in "
                "tested_rows_at_most"
            )
        return max((len(c.model.widths) for c in configs), default=0)
    return TESTED_ROWS[study]


def profile_of(study_tables: dict[str, pd.DataFrame]) -> str | None:
    """The profile a study's tables were collected for (its runs table says), else None."""
    runs = study_tables.get("runs")
    if runs is None or "profile" not in runs or runs.empty:
        return None
    return str(runs.profile.iloc[0])


def design_of(specs: list[tuple[dict, pd.Series, Hypothesis]]) -> tuple[Design, str]:
    """The sequential design the specs' values were collected under, and its description: the
    profile's looks (`harness.sweep.profiles.LOOKS`) whenever the tables say their profile (a row that
    lost a replicate, to a diverged run say, is tested at the looks it still fills, never at a look
    that did not happen); otherwise (tables of an experiment of your own) one look per replicate
    count found among the tested rows, said so in the description."""
    profiles = {m.get("profile") for m, _, _ in specs} - {None}
    planned = LOOKS.get(profiles.pop()) if len(profiles) == 1 else None
    if planned:
        design, how = Design(planned), "planned"
    else:
        ns = sorted({int(v.notna().sum()) for _, v, h in specs if h.kind != "descriptive"})
        design, how = (
            Design(tuple(n for n in ns if n >= MIN_N) or (MIN_N,)),
            "from the replicate counts found (no planned looks)",
        )
    looks = ", ".join(map(str, design.looks))
    text = (
        f"looks at {looks} replicates ({how}); O'Brien-Fleming-type alpha spending (Lan-DeMets), Holm on repeated "
        "p-values"
        if len(design.looks) > 1
        else f"one look at {looks} replicates ({how}); t-test, Holm"
    )
    return design, text


def patience_share(runs: pd.DataFrame | None) -> float:
    """The share of `runs` whose training stopped by patience (NaN without a runs table that says
    why runs stopped)."""
    if runs is None or "stopped_by" not in runs or runs.empty:
        return float("nan")
    return float((runs.stopped_by == "patience").mean())


def weakest_arm(runs: pd.DataFrame | None) -> tuple[float, str]:
    """The arm (runs that differ only in their seed) with the smallest share of runs stopped by
    patience: (share, the arm in words); (NaN, "") without a runs table that says why runs stopped."""
    if runs is None or "stopped_by" not in runs or runs.empty:
        return float("nan"), ""
    cols = [c for c in ARM_COLUMNS if c in runs]
    keyed = runs.assign(**{c: runs[c].map(str) for c in cols})
    shares = (
        keyed.groupby(cols, sort=True, dropna=False).stopped_by.agg(lambda s: float((s == "patience").mean()))
        if cols
        else pd.Series([float((runs.stopped_by == "patience").mean())], index=["all runs"])
    )
    arm = shares.idxmin()
    parts = arm if isinstance(arm, tuple) else (arm,)
    shown = {c: v for c, v in zip(cols, parts, strict=False) if v not in ("nan", "None", "")}
    return float(shares.min()), ", ".join(f"{c} {v}" for c, v in shown.items() if c != "dataset") or "all runs"


def budget_withheld(meta: dict, h: Hypothesis) -> str:
    """Why a tested row is withheld for its training budget ("" when every arm it reads stopped by
    patience often enough, or the tables do not say how runs stopped)."""
    share, arm = meta.get("weakest_arm", (float("nan"), ""))
    if h.kind == "descriptive" or not share < ARM_PATIENCE:
        return ""
    return (
        f"withheld: only {share:.0%} of the runs of one arm it reads ({arm}) stopped by patience, fewer than "
        f"{ARM_PATIENCE:.0%}; the rest hit the training budget or diverged, so the arms may not be at their best: "
        "raise the setting's budget (train.epochs, or train.steps) until they stop by patience (or lower a rate "
        "that diverges)"
    )


def claims_table(tables: dict[str, dict[str, pd.DataFrame]], **margins) -> pd.DataFrame:
    """The claims table: one row per tested or described statistic, with the columns of COLUMNS."""
    return decide_specs(claim_specs(tables, **margins))[COLUMNS]


def decide_specs(specs: list[tuple[dict, pd.Series, Hypothesis]], best_case: bool = False) -> pd.DataFrame:
    """Verdicts on `specs` (as `claim_specs` returns them, from one setting or several) decided as
    ONE family: Holm's adjustment covers every tested row of every spec. One row per spec with its
    metadata (every key, COLUMNS' and any other, such as a setting), the verdict procedure's
    output and the test and margin, in the order of CLAIMS (stable: the specs' own order within a
    claim). A tested row is withheld when an arm it reads stopped by patience in fewer than ARM_PATIENCE
    of its runs (`budget_withheld`). `best_case`: conditional power at the whole alpha
    (`harness.stats.sequential.replay`; the looks driver's rule)."""
    if not specs:
        return pd.DataFrame(columns=COLUMNS)
    design, described = design_of(specs)
    withheld = [budget_withheld(m, h) for m, _, h in specs]
    # values in replicate order, NaN for a replicate a row lacks, so that a look's replicates are the
    # first n positions for every row; a row withheld for its budget enters no test (a descriptive row
    # is estimated, not tested)
    planned = "(planned)" in described  # the profile's looks: replicate r sits at position r
    values = [replicate_positions(v, design) if planned else v.sort_index().to_numpy(dtype=float) for _, v, _ in specs]
    rows = decide_in_looks(
        values,
        [Hypothesis("descriptive") if why else h for (_, _, h), why in zip(specs, withheld, strict=False)],
        design,
        best_case,
    )
    out = []
    for (m, _, h), r, why in zip(specs, rows, withheld, strict=False):
        row = (
            m
            | r
            | {
                "test": h.kind,
                "margin": h.margin if h.kind in ("equivalence", "noninferiority") else float("nan"),
                "design": described,
            }
        )
        if why:
            row |= {"verdict": "withheld", "reason": why, "look": 0}
        out.append(row)
    order = {c: i for i, c in enumerate(CLAIMS)}
    df = pd.DataFrame(out)
    return df.sort_values("claim", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


def replicate_positions(values: pd.Series, design: Design) -> np.ndarray:
    """A row's values (indexed by replicate) at their positions in the design: replicate r at
    position r (`harness.sweep.experiment.in_looks` puts replicate r in the first look whose n exceeds
    it), NaN where the row lacks one, up to the smallest look that holds its largest replicate. A
    replicate lost from every row of a study still leaves its gap. (Without planned looks, as for
    an experiment of your own, values keep their order.)"""
    index = values.index
    if len(index) == 0 or not all(isinstance(r, (int, np.integer)) and r >= 0 for r in index):
        return values.sort_index().to_numpy(dtype=float)
    top = int(max(index)) + 1
    n = next((k for k in design.looks if k >= top), top)
    return values.reindex(range(n)).to_numpy(dtype=float)


def holm_family_size(claims: pd.DataFrame) -> int:
    """The rows of a decided claims table that entered Holm's adjustment: tested, with a repeated
    p-value (`harness.stats.sequential.decide_in_looks`'s family)."""
    return int(((claims.test != "descriptive") & claims.repeated_p.notna()).sum())


def main(argv: list[str] | None = None) -> int:
    """``python -m analysis.claims --profile P [--dataset D] [--study S]``: the claims table from
    the collected tables of a setting, printed; Holm's family is every tested row of the studies
    whose tables exist."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m analysis.claims", description=main.__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--dataset", help="the setting's dataset (default: each study's own)")
    ap.add_argument("--study", help="print only the rows of this study")
    args = ap.parse_args(argv)
    setting = setting_name(args.profile, args.dataset)
    tables = load_setting(setting)
    skipped = {s: why for s in tables if (why := study_adaptation(setting, s).skipped)}
    if args.study in skipped:
        print(f"claims ({setting}): {args.study} was skipped on this dataset: {skipped[args.study]}")
        return 0
    tables = {s: t for s, t in tables.items() if s not in skipped}
    if args.study and args.study not in tables:
        make = f"make {args.study} PROFILE={args.profile}" + (
            f" DATASET={args.dataset}" if setting != args.profile else ""
        )
        raise TableError(f"no tables of {args.study} ({setting}); run `{make}` first")
    claims = claims_table(tables)
    family = holm_family_size(claims)  # the rows that entered the adjustment, not every tested one
    shown = show_claims(claims[claims.study == args.study] if args.study else claims)
    print(f"claims ({setting}; Holm across the {family} tested rows of {len(tables)} studies with tables):")
    print("\n".join(claim_lines(shown)))
    return 0


if __name__ == "__main__":
    import sys

    from .tables import exit_2

    sys.exit(exit_2(main))
