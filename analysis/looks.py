"""A study run in looks.

``python -m analysis.looks STUDY --profile P [--dataset D] [--stamp FILE] [harness run flags]``

For look k = 1, 2, ... of the profile's design (`harness.sweep.profiles.LOOKS`): train and evaluate the
first k looks' replicates (`harness run --look k`: the store caches every finished run, so a
killed look resumes where it stopped), collect the study's tables in memory
(`analysis.tables.collect`), decide its claim rows on the design (`harness.stats.sequential`,
in one Holm family with the most tested rows the setting's other studies give, at p = 1: `judge`)
and go on to look k + 1 only while one of them is undecided and could still be decided at the
largest n (its conditional power there at least `harness.stats.sequential.CONDITIONAL_POWER_FLOOR`, at
the whole alpha: the level it faces once every other row is decided). A study without tested rows
stops at its first look. The looks a study runs depend on its own values only: not on the order
make runs the studies in, nor on tables an earlier build left.

The look reached is written to `--stamp` (make's target for the study's runs: the first line is
the look, the second says it in words), which `analysis.tables --look` reads to collect the same
runs. The report decides every study's rows again as one family from the collected tables. A row
the driver calls decided is decided there too, at the same look or earlier (the rows it counted at
p = 1 have lower p-values there, or are fewer), and the report asks no more seeds of a study the
driver stopped (its conditional power there is computed at a level no higher). Stopping early only
removes chances to reject, so the family's error control holds whatever the continuation rule
(`tests/test_sequential.py`); it costs power, never error.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.files import atomic_write
from harness.stats.sequential import Design
from harness.stats.verdicts import Hypothesis
from harness.sweep.profiles import LOOKS as PLANNED
from harness.sweep.profiles import looks

from .claims import claim_specs, decide_specs, tested_rows_at_most
from .paths import ROOT


@dataclass(frozen=True)
class LookResult:
    """After a look: its number, the replicates it holds, and the study's tested rows by state."""

    look: int
    replicates: int
    decided: int
    open: int  # undecided, asking for the next look's seeds
    stopped: int  # undecided or withheld, not asking (futility, the largest n, or a budget the runs hit)

    def line(self, study: str, of: int) -> str:
        return (
            f"looks {study}: look {self.look} of {of} ({self.replicates} replicates): {self.decided} decided, "
            f"{self.open} open (asking for more seeds), {self.stopped} undecided and not asking"
        )

    def asks_more(self) -> bool:
        return self.open > 0


def judge(study: str, tables: dict, look: int, replicates: int, pending: int = 0) -> LookResult:
    """The study's tested rows decided from its collected tables as the claims table decides them
    (`analysis.claims.decide_specs`: the profile's design, rows withheld for their budget), in a
    family that also holds `pending` rows at p = 1 at every look: the most tested rows the
    setting's other studies give (`pending_rows`). The report decides the same rows of this study
    in the family of every study, where the others' rows have p-values of at most 1 (or are fewer),
    and Holm with Maurer and Bretz's recycling rejects more when p-values fall: a row this judge
    calls decided is decided in the report too, at this look or earlier. Other studies' tables are
    not read, so the looks a study runs depend on its own values only, never on the order make runs
    the studies in or on tables left by an earlier build.

    A row asks for the next look when its conditional power at the largest n reaches the floor at
    the whole alpha, the level it would face once every other row of the family is decided: the
    report, whose level is never higher, asks no more of a study that stopped."""
    specs = [s for s in claim_specs({study: tables}) if s[2].kind != "descriptive"]
    if specs and pending:
        slots = max(max(n) for n in PLANNED.values())  # NaN at every position: p = 1 at every look of any design
        blank = pd.Series(np.nan, index=range(slots))
        specs += [({"claim": "", "study": "", "statistic": "a row of another study"}, blank, Hypothesis())] * pending
    rows = decide_specs(specs, best_case=True) if specs else None
    rows = rows[rows.study == study] if rows is not None else None
    if rows is None or rows.empty:
        return LookResult(look, replicates, 0, 0, 0)
    decided = int(rows.verdict.isin(["supported", "contradicted", "negligible"]).sum())
    asking = int(rows.asks_more.astype(bool).sum())
    return LookResult(look, replicates, decided, asking, len(rows) - decided - asking)


def pending_rows(profile: str, dataset: str | None, study: str) -> int:
    """The most tested rows the setting's studies other than `study` give
    (`analysis.claims.tested_rows_at_most`, from their experiment files; a study the setting skips
    gives none)."""
    from harness.sweep.experiment import load_experiment

    from .presentation import STUDIES

    count = 0
    for other in STUDIES:
        if other == study:
            continue
        exp = load_experiment(ROOT / "experiments" / f"{other}.py", profile, dataset, need_data=False)
        count += tested_rows_at_most(other, exp.configs, bool(exp.skipped))
    return count


def drive(
    study: str,
    profile: str,
    dataset: str | None = None,
    store: str | None = None,
    run_flags: list[str] = (),
    stamp: str | None = None,
) -> int:
    """Run `study` look by look until no row asks for more seeds or the last look is done; write
    the look reached to `stamp`. Returns harness run's exit status when a look's sweep fails."""
    from harness.cli import main as harness_main
    from harness.store.runs import RunStore
    from harness.sweep.experiment import load_experiment

    from .tables import collect

    design = Design(looks(profile))
    pending = pending_rows(profile, dataset, study)
    path = ROOT / "experiments" / f"{study}.py"
    common = (
        ["--profile", profile] + (["--dataset", dataset] if dataset else []) + (["--store", store] if store else [])
    )
    reached = None
    for k in range(1, len(design.looks) + 1):
        rc = harness_main(["run", str(path), "--look", str(k), *common, *run_flags])
        if rc != 0:
            return rc
        exp = load_experiment(path, profile, dataset, look=k)
        if exp.skipped:
            reached = LookResult(k, 0, 0, 0, 0)
            break
        reached = judge(study, collect(study, profile, RunStore(store), dataset, exp), k, exp.replicates, pending)
        print(reached.line(study, len(design.looks)), flush=True)
        if not reached.asks_more():
            break
    if stamp:
        atomic_write(
            stamp,
            f"{reached.look}\nlook {reached.look} of {len(design.looks)}: {reached.replicates} replicates\n".encode(),
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m analysis.looks",
        description=__doc__.splitlines()[0],
        epilog="Other flags (--executor, --workers, --threads, ...) go to `harness run` as they are.",
    )
    ap.add_argument("study")
    ap.add_argument("--profile", default="quick")
    ap.add_argument(
        "--dataset", help="the setting's dataset (as given to `harness run --dataset`); default: the study's own"
    )
    ap.add_argument("--store", help="run store folder (default: $HARNESS_STORE or runs/)")
    ap.add_argument("--stamp", help="write the look reached here (make's target for the study's runs)")
    args, run_flags = ap.parse_known_args(argv)
    known = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if not p.name.startswith("_"))
    if args.study not in known:
        ap.error(f"unknown study {args.study!r}; studies: {', '.join(known)}")
    from harness.errors import HarnessError

    try:
        looks(args.profile)
        return drive(args.study, args.profile, args.dataset, args.store, run_flags, args.stamp)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    from .tables import exit_2

    sys.exit(exit_2(main))
