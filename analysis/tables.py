"""Collect one study's tidy tables from the run store: ``python -m analysis.tables STUDY --profile P``.

Writes reports/P/tables/STUDY/{runs, tuning, evaluations, subnetworks, coadaptation, shift, ...}.parquet:
every table of every run of the study, concatenated, with the runs table's config columns carried
on every row so that each table can be filtered and grouped with plain pandas. A study with deep
ensembles also gets their rows in its robustness tables (shift, ood, entropy_hist; mode
`ensemble`), computed here from the members' stored predictions, and a `members` table; every row
of those tables carries `replicate` and `group` (dropout, no dropout). `tuning` lists each arm's
tuning runs (`harness.sweep.tuning`) and the learning rate chosen on validation.

The folder's `manifest.json` (`harness.store.output_manifest`) records every file's size and SHA-256 and
is written last; every reader of the tables (`load`, `read_bytes`, `analysis.presentation`) checks
the bytes it reads against it, and a missing or damaged table stops the reader (TableError, exit
status 2) with the command that collects the study again.
"""

from __future__ import annotations

import argparse
import io
import sys

import pandas as pd

from harness.files import atomic_write
from harness.store import output_manifest
from harness.store.output_manifest import MANIFEST, manifest_bytes

from .paths import ROOT, tables_dir

CONFIG_COLUMNS = [
    "experiment",
    "profile",
    "dataset",
    "model",
    "widths",
    "depth",
    "width",
    "p_drop_input",
    "p_drop_hidden",
    "p_drop_sites",
    "seed",
    "train_size",
    "lr",
    "stopped_by",
    "status",
]


def collect(study: str, profile: str, store, dataset: str | None = None, exp=None) -> dict[str, pd.DataFrame]:
    """Every table of the study's runs from `store` (a harness.store.runs.RunStore), on `dataset`
    (None: the study's own data); a study skipped on that data has one empty `runs` table."""
    # the library (and torch) is imported here, not at module level: figure scripts import `load`
    # from this module and need only pandas
    from harness.errors import ConfigError
    from harness.store.identity import run_id
    from harness.sweep.evaluations import KINDS
    from harness.sweep.experiment import load_experiment, resolve
    from harness.sweep.run import run_state
    from harness.sweep.tuning import tuning_table

    if exp is None:  # main passes the experiment it loaded for adaptation.json: loaded once
        exp = load_experiment(ROOT / "experiments" / f"{study}.py", profile, dataset)
    if exp.skipped:
        return {"runs": pd.DataFrame({"run_id": pd.Series(dtype=str)})}
    flags = (
        f"--profile {profile}"
        + (f" --dataset {dataset}" if dataset else "")
        + (f" --look {exp.look}" if exp.look else "")
    )
    try:
        tuned = resolve(exp, store)
    except ConfigError as exc:
        raise SystemExit(f"error: {study} ({profile}): {exc}") from None
    ids = [run_id(c) for c in tuned.configs]
    states = {
        i: run_state(store, i, tuned.evaluations, leased={}) for i in ids
    }  # every file checked against its manifest
    damaged = {i: st for i, st in states.items() if st.damage}
    if damaged:  # never a table collected from partial data: the claims would be computed on the rest
        listed = "\n".join(
            f"  run {i}: " + "; ".join(f"{name} ({what})" for name, what in st.damage.items())
            for i, st in damaged.items()
        )
        raise SystemExit(
            f"error: {len(damaged)} runs of {study} ({profile}) have damaged files, so its tables are not "
            f"collected:\n{listed}\nrepair: `python -m harness verify --repair --store {store.root}` (retrains "
            "damaged runs, computes damaged evaluations again), or run `python -m harness run "
            f"experiments/{study}.py {flags}` again"
        )
    # a run not trained, or whose evaluation is unfinished (tables without their settings file)
    missing = [i for i, st in states.items() if not st.trained or st.pending.kinds()]
    if missing:
        raise SystemExit(
            f"error: {len(missing)} runs of {study} ({profile}) are not in the store {store.root} or lack "
            f"evaluations, e.g. {missing[0]}; run `python -m harness run experiments/{study}.py {flags}` first"
        )
    runs = store.read_table("run", ids)
    # runs are shared between studies: the collected tables carry this study's labels
    runs = runs.assign(experiment=exp.name, profile=profile).reset_index(drop=True)
    out = {"runs": runs}
    if len(exp.lr_grid) > 1:
        out["tuning"] = tuning_table(exp.configs, exp.lr_grid, store)
    config = runs[["run_id"] + [c for c in CONFIG_COLUMNS if c in runs.columns]]
    # only the tables of the evaluations this study asks for (and so verified above): a shared run
    # may hold other studies' evaluations too, which are theirs to check and collect
    for name in [n for kind in tuned.evaluations.kinds() for n in KINDS[kind].collected]:
        df = store.read_table(name, ids)
        if not df.empty:
            out[name] = df.merge(config, on="run_id", how="left")
    if tuned.ensembles:
        out |= ensemble_tables(tuned, store, out, runs)
    late = [why for rid, why in store.damaged.items() if rid in set(ids)]
    if late:  # damaged since the check above (read_table skipped the file): refused as above
        raise SystemExit(
            f"error: files of {study} ({profile}) were damaged while they were collected:\n"
            + "\n".join(f"  {why}" for why in late)
        )
    return out


def ensemble_tables(exp, store, collected: dict[str, pd.DataFrame], runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The robustness tables with every deep ensemble's rows added (computed from its members'
    stored predictions), and the `members` table: ensemble, group, replicate, run_id."""
    from harness.inference.ensembles import evaluate_ensemble
    from harness.sweep.evaluations import KINDS

    members = pd.DataFrame(
        [(e.name, e.group, e.replicate, r) for e in exp.ensembles for r in e.run_ids],
        columns=["ensemble", "group", "replicate", "run_id"],
    )
    member_ids = list(members.run_id.unique())
    predictions = store.read_table("predictions", member_ids)
    bins = exp.evaluations.robustness.bins
    parts = {name: [collected[name]] for name in KINDS["robustness"].collected if name in collected}
    by_id = runs.set_index("run_id")
    for e in exp.ensembles:
        # an ensemble carries its members' config columns (they differ only in the seed)
        config = {c: by_id.at[e.run_ids[0], c] for c in CONFIG_COLUMNS if c in runs.columns} | {"seed": -1}
        for name, df in evaluate_ensemble(e, predictions, bins=bins).items():
            parts.setdefault(name, []).append(df.assign(**config))
    out = {"members": members}
    info = members.drop_duplicates("run_id").set_index("run_id")[["group", "replicate"]]
    by_name = members.drop_duplicates("ensemble").set_index("ensemble")[["group", "replicate"]].rename_axis("run_id")
    info = pd.concat([info, by_name])
    for name, dfs in parts.items():
        df = pd.concat(dfs, ignore_index=True)
        out[name] = df.join(info, on="run_id")
    return out


def write(tables: dict[str, pd.DataFrame], folder, adapted: dict | None = None) -> None:
    """Write every table atomically, then the folder's manifest (`harness.store.output_manifest`: size and
    SHA-256 of each file), last. The old manifest goes first, so a collection killed half-way leaves
    a folder that every reader refuses and make collects again, never tables taken as whole.
    `adapted` (how the study was moved onto its setting's dataset) goes to adaptation.json;
    without it none is left."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)
    for stale in folder.glob(
        "*.parquet"
    ):  # a table an earlier collection wrote and this one does not (e.g. now skipped)
        if stale.stem not in tables:
            stale.unlink()
    written = {}
    if adapted:
        written[ADAPTATION] = (json.dumps(adapted, indent=2) + "\n").encode()
        atomic_write(folder / ADAPTATION, written[ADAPTATION])
    else:
        (folder / ADAPTATION).unlink(missing_ok=True)
    for name, df in sorted(tables.items(), key=lambda item: item[0] == "runs"):
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        written[f"{name}.parquet"] = buf.getvalue()
        atomic_write(folder / f"{name}.parquet", buf.getvalue())
    atomic_write(folder / MANIFEST, manifest_bytes(written))


class TableError(SystemExit):
    """A collected table that is missing or does not match its folder's manifest: the message names
    it and the make command that rebuilds it. A SystemExit, so that no reader goes on without it;
    the commands that read tables exit with status 2 for it (`exit_2`)."""


def exit_2(main, argv: list[str] | None = None) -> int:
    """Run a reader's `main`, turning a TableError into its message on stderr and exit status 2
    (an uncaught SystemExit with a message would exit with 1, the status of a failed computation)."""
    try:
        return main(argv)
    except TableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def rebuild_command(setting: str, study: str) -> str:
    """The commands that collect a study's tables of a setting again (`harness.store.output_manifest`)."""
    import os

    return output_manifest.rebuild_command(
        setting, study, os.environ.get("HARNESS_OUT") or None, tables_dir(setting, study)
    )


def read_bytes(setting: str, study: str, name: str) -> bytes:
    """One file of a study's collected tables, checked against the folder's manifest; a TableError
    naming the file, what is wrong and the command that rebuilds it."""
    folder = tables_dir(setting, study)
    if not folder.is_dir():
        raise TableError(
            f"the tables of {study} ({setting}) are not collected: {folder} does not exist; collect them: "
            f"{rebuild_command(setting, study)}"
        )
    data, what = output_manifest.read(folder, name)
    if data is None:
        raise TableError(
            f"the collected tables of {study} ({setting}) in {folder} are damaged or incomplete: {what}; collect "
            f"them again: {rebuild_command(setting, study)}"
        )
    return data


def load(profile: str, study: str, name: str) -> pd.DataFrame:
    """Read one collected table (what figure and report scripts use), checked against its folder's
    manifest; `profile` is a setting's name (`harness.sweep.setting.Setting.name`). A study its setting
    skipped raises StudySkipped; a missing or damaged table, TableError."""
    skipped = adaptation(profile, study).get("skipped")
    if skipped:
        raise StudySkipped(skipped)
    return pd.read_parquet(io.BytesIO(read_bytes(profile, study, f"{name}.parquet")))


ADAPTATION = "adaptation.json"  # beside a study's tables: its dataset, how it was adapted to it, or why it was skipped


class StudySkipped(Exception):
    """A figure or table asked of a study that its setting's dataset does not allow (the reason)."""


def adaptation(setting: str, study: str) -> dict:
    """What `adaptation.json` of a study's tables says ({} when the study ran on its own data),
    checked against the folder's manifest (a folder without tables yet has neither)."""
    import json

    folder = tables_dir(setting, study)
    if not folder.is_dir():
        return {}
    files, _ = output_manifest.load(folder)
    if files is not None and ADAPTATION not in files and not (folder / ADAPTATION).exists():
        return {}
    return json.loads(read_bytes(setting, study, ADAPTATION))


def _look(text: str) -> int | None:
    """--look's value: a positive int, or empty for every listed run (a stamp written before looks)."""
    if not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a look number: give 1, 2, ... (the profile's looks)"
        ) from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.tables", description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("--profile", default="quick")
    ap.add_argument(
        "--dataset", help="the setting's dataset (as given to `harness run --dataset`); default: the study's own"
    )
    ap.add_argument("--store", help="run store folder (default: $HARNESS_STORE or runs/)")
    ap.add_argument(
        "--look",
        type=_look,
        default=None,
        metavar="K",
        help="collect the runs of the first K looks (the look `analysis.looks` reached; empty: every listed run)",
    )
    args = ap.parse_args(argv)
    from pyarrow.lib import ArrowException

    from harness.config import PROFILES
    from harness.errors import HarnessError
    from harness.store.runs import RunStore

    # checked before the store is opened (which creates its folder): a refused command writes nothing
    known = sorted(p.stem for p in (ROOT / "experiments").glob("*.py") if not p.name.startswith("_"))
    if args.study not in known:
        ap.error(f"unknown study {args.study!r}; studies: {', '.join(known)}")
    if args.profile not in PROFILES:
        ap.error(f"--profile {args.profile!r} is not known; profiles: {', '.join(PROFILES)}")
    try:
        from harness.sweep.setting import Setting

        setting = Setting(args.profile, args.dataset)
        where = tables_dir(setting.name, args.study)
        from harness.sweep.experiment import load_experiment

        exp = load_experiment(ROOT / "experiments" / f"{args.study}.py", args.profile, setting.dataset, look=args.look)
        exp_notes = (
            {"dataset": setting.dataset, "skipped": exp.skipped, "notes": exp.notes}
            if setting.dataset or exp.notes
            else None
        )
        tables = collect(args.study, args.profile, RunStore(args.store), setting.dataset, exp)
        try:
            write(tables, where, exp_notes)
        except OSError as exc:  # only the writing: an Arrow error there is a bug, and shows its traceback
            print(
                f"error: {args.study} ({setting.name}): cannot write {getattr(exc, 'filename', None) or where} "
                f"({exc.strerror or exc}); make {where} writable",
                file=sys.stderr,
            )
            return 2
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # collect's refusals (runs missing, rates not chosen) carry their message
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise
    except (OSError, ArrowException) as exc:  # a damaged stored table, or a reports folder that cannot be written
        where = getattr(exc, "filename", None) or "a table of the store or a file of the reports folder"
        print(
            f"error: {args.study} ({args.profile}): cannot read or write {where} ({type(exc).__name__}: {exc}); "
            f"rerun the study's sweep to repair the store (`make {args.study}`), or make the reports folder writable",
            file=sys.stderr,
        )
        return 2
    print(f"{args.study} ({setting.name}): {', '.join(f'{k} {len(v)} rows' for k, v in tables.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
