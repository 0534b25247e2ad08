"""Commands that train and keep runs: `train` (one run), `run` (an experiment file's sweep), `status`, `runs`
(the runs table) and `verify` (the store's files against their manifests, and repairs).
"""

from __future__ import annotations

import argparse
import os
import sys

import pandas as pd

from harness.cli.common import STORE_ARGS, _existing_store, _store, config_from_args, format_runs
from harness.cli.spec import Command, arg
from harness.errors import HarnessError
from harness.store.identity import run_id
from harness.store.leases import LEASES


def cmd_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.store.runs import default_root
    from harness.sweep.run import execute

    cfg = config_from_args(args)
    root = Path(args.store) if args.store else default_root()
    existed = root.exists()
    try:
        rec = execute(cfg, _store(args), force=args.force)
    except HarnessError:  # refused (bad data, a damaged store): a store folder made for this run alone goes again
        if not existed:
            try:
                root.rmdir()  # only when empty
            except OSError:
                pass
        raise
    state = "loaded from the store (use --force to retrain)" if rec.cached else "trained"
    print(f"run {rec.run_id} {state}: {rec.path}")
    print(format_runs(pd.DataFrame([rec.row])))
    if rec.row["status"] != "ok":
        print(f"status {rec.row['status']}: {rec.row['message']}", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.store.runs import default_root
    from harness.sweep.executors import check_sweep_flags
    from harness.sweep.experiment import load_experiment

    # a bad dataset or look is refused here, before the store folder is made
    exp = load_experiment(args.experiment, args.profile, args.dataset, look=args.look)
    check_sweep_flags(args.executor, args.workers, args.threads, args.wait_limit, args.task_cpus, args.task_gpus)
    where = args.profile + (f", {exp.dataset}" if exp.dataset else "")
    where += f", look {exp.look}: {exp.replicates} replicates" if exp.look else ""
    if exp.skipped:
        print(f"experiment {exp.name} ({where}): skipped: {exp.skipped}")
        return 0
    for note in exp.notes:
        print(f"experiment {exp.name} ({where}): {note}")
    for name in {
        c.data.name: None for c in exp.configs
    }:  # data files that are missing or broken: refused before the store is made
        run_id(next(c for c in exp.configs if c.data.name == name))
    root = Path(args.store) if args.store else default_root()
    existed = root.exists()
    try:
        return _run_study(args, exp, where, _store(args))
    except (
        HarnessError
    ):  # refused (data that fail when loaded for training): a store made for this command alone goes again
        if not existed:
            _remove_if_empty(root)
        raise


def _remove_if_empty(root) -> None:
    """Remove a store folder that holds nothing but an empty leases folder (and its lock file)."""
    leases = root / LEASES
    try:
        if leases.is_dir() and all(p.name == ".lock" for p in leases.iterdir()):
            (leases / ".lock").unlink(missing_ok=True)
            leases.rmdir()
        root.rmdir()  # only when empty
    except OSError:
        pass


def _run_study(args: argparse.Namespace, exp, where: str, store) -> int:
    from harness.sweep.evaluations import Evaluations
    from harness.sweep.executors import run_sweep
    from harness.sweep.experiment import resolve

    sweep = dict(
        executor=args.executor,
        workers=args.workers,
        threads=args.threads,
        force=args.force,
        retry_failed=args.retry_failed,
        ray_address=args.ray_address,
        task_cpus=args.task_cpus,
        task_gpus=args.task_gpus,
        wait=args.wait,
        wait_limit_s=args.wait_limit,
    )  # both sweeps below (tuning, then the tuned configs)
    failed = False
    tuning = exp.tuning_configs()
    if tuning:  # each arm's first seed at every rate of the grid, before the arms' other seeds
        summary = run_sweep(tuning, store, evaluations=Evaluations(), **sweep)
        print(
            f"experiment {exp.name} ({where}, {args.executor}): tuning the learning rate of each arm over "
            f"{', '.join(f'{r:g}' for r in exp.lr_grid)} on validation: {summary.line()}"
        )
        failed = _report_problems(summary)
        if failed:
            print(
                "error: the tuning runs above did not finish, so the arms' rates cannot be chosen; rerun when they "
                "are fixed",
                file=sys.stderr,
            )
            return 1
    exp = resolve(exp, store)
    summary = run_sweep(exp.configs, store, evaluations=exp.evaluations, **sweep)
    rows = pd.DataFrame([r.row for r in summary.records])
    print(f"experiment {exp.name} ({where}, {args.executor}): {summary.line()}")
    if not rows.empty:
        print(format_runs(rows))
    return 1 if _report_problems(summary) else 0


def _report_problems(summary) -> bool:
    """Print a sweep's failed and skipped runs; True when there were any."""
    for cfg, err in summary.failures:
        print(f"failed run {run_id(cfg)}: {err.splitlines()[0]}", file=sys.stderr)
    for cfg, why in summary.skipped:
        print(f"skipped run {run_id(cfg)}: {why}", file=sys.stderr)
    return bool(summary.failures or summary.skipped)


def cmd_status(args: argparse.Namespace) -> int:
    from harness.errors import ConfigError
    from harness.sweep.evaluations import Evaluations
    from harness.sweep.executors import sweep_status
    from harness.sweep.experiment import load_experiment, resolve

    exp = load_experiment(args.experiment, args.profile, args.dataset, look=args.look)
    if exp.skipped:
        print(f"experiment {exp.name} ({args.profile}, {exp.dataset}): skipped: {exp.skipped}")
        return 0
    for name in {
        c.data.name: None for c in exp.configs
    }:  # data files that are missing or broken: refused before the store is made
        run_id(next(c for c in exp.configs if c.data.name == name))
    store = _store(args)
    try:
        exp = resolve(exp, store)
        configs, what = exp.configs, "runs"
    except ConfigError:  # the arms' rates are not chosen yet: the tuning runs are what is pending
        configs, what = exp.tuning_configs(), "tuning runs (the other seeds wait for them)"
    table = sweep_status(configs, store, exp.evaluations if exp.tuned else Evaluations())
    counts = table["state"].value_counts()
    missing = (table["missing_evaluations"] != "").sum()
    broken = ((table["state"] == "done") & (table["note"] != "")).sum()  # done runs note only damaged evaluation files
    look = f", look {exp.look}: {exp.replicates} replicates" if exp.look else ""
    print(
        f"experiment {exp.name} ({args.profile}{look}): {len(table)} {what}: "
        + ", ".join(f"{n} {s}" for s, n in counts.items())
        + (f"; {missing} finished runs lack evaluations" if missing else "")
        + (f" ({broken} because of damaged files: the notes say which)" if broken else "")
    )
    shown = table if args.all else table[(table["state"] != "done") | (table["note"] != "")]
    if not shown.empty:
        print(shown.to_string(index=False))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from harness.sweep.run import run_state

    store = _existing_store(args)
    df = store.runs_table(args.experiment)  # warns of each run whose run.parquet is damaged, and leaves its row out
    if (
        store.damaged
    ):  # ... which is shown as a row marked damaged: nothing of it is read, so its study is unknown ("?")
        unread = pd.DataFrame({"run_id": sorted(store.damaged), "experiment": "?", "status": "damaged"})
        df = df.astype(
            {c: "Int64" for c in df.columns if pd.api.types.is_integer_dtype(df[c])}
        )  # integers stay integers beside the gaps
        df = unread if df.empty else pd.concat([df, unread], ignore_index=True)
    if not df.empty:  # runs whose row reads but another run file (or the manifest) is damaged: shown as damaged
        damaged = {
            rid: st.note
            for rid in df.run_id
            if rid not in store.damaged and (st := run_state(store, rid, leased={})).state == "damaged"
        }
        for note in damaged.values():
            print(f"warning: {note}", file=sys.stderr)
        df.loc[df.run_id.isin(damaged), "status"] = "damaged"
    if args.stale:
        stale = set(store.stale())
        df = df[df.run_id.isin(stale)] if not df.empty else df
        if df.empty:
            print("no stale runs: every run was trained by this harness's training code")
            return 0
        print(
            f"{len(df)} runs were trained by training code that has changed since (retrain with --force to refresh "
            "them):"
        )
    if df.empty:
        print("no runs in the store")
        return 0
    print(df.to_string(index=False) if args.all_columns else format_runs(df))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from harness.sweep.verify import verify

    if args.threads is not None and args.threads < 1:
        raise HarnessError(
            f"--threads {args.threads}: must be a positive integer (or left out for the threads each run was trained "
            "with)"
        )
    out = None
    if args.out is not None:
        from pathlib import Path

        out = Path(args.out)
        if not (out / "reports").is_dir():
            raise HarnessError(
                f"--out {args.out}: no reports/ folder there: name the folder that holds reports/ (make's OUT; the "
                "project folder by default)"
            )
    code = verify(_existing_store(args), do_repair=args.repair, threads=args.threads)
    if out is None:
        return code
    from harness.store.output_manifest import check_output

    checked, damaged = check_output(out)
    for line in damaged:
        print(line)
    print(
        f"{checked} table folders checked under {out / 'reports'}: "
        + (
            f"{len(damaged)} damaged or incomplete (see above)"
            if damaged
            else "every file matches its folder's manifest"
        )
    )
    return 1 if damaged else code


COMMANDS = (
    Command(
        "train",
        help="train one run from flags or a config file and print where its results are",
        func=cmd_train,
        args=(
            arg("--config", help="JSON or TOML file with a (partial) run config"),
            arg(
                "--set",
                dest="overrides",
                action="append",
                default=[],
                metavar="KEY=VALUE",
                help="override any field, e.g. --set model.widths=512,512 (repeatable)",
            ),
            arg("--experiment", help="experiment name recorded with the run"),
            arg("--dataset", help="dataset name (data.name)"),
            arg("--train-size", type=int, help="number of training examples (data.train_size)"),
            arg("--model", dest="kind", help="mlp or cnn (model.kind)"),
            arg("--widths", help="hidden widths, comma-separated (model.widths)"),
            arg("--p-drop-input", type=float, help="drop probability at the input (model.p_drop_input)"),
            arg(
                "--p-drop-hidden", help="drop probability of hidden layers, one or one per layer (model.p_drop_hidden)"
            ),
            arg("--epochs", type=int, help="training epochs (train.epochs)"),
            arg("--seed", type=int, help="seed of initialisation, dropout masks and batch order"),
            arg("--device", help="cpu (default), cuda, cuda:N"),
            *STORE_ARGS,
        ),
    ),
    Command(
        "run",
        help="run every config an experiment file lists (cached runs are loaded, not retrained)",
        func=cmd_run,
        args=(
            arg("experiment", help="path of an experiment file, e.g. experiments/baseline.py"),
            arg("--profile", default="quick", help="quick (default), paper or smoke"),
            arg(
                "--dataset",
                help="run the study on this dataset instead of its own: a name (harness data list) or the path of a "
                ".npz file with arrays x, y and optionally x_test, y_test; outputs go beside the default's "
                "(PROFILE-DATASET)",
            ),
            arg(
                "--look",
                type=int,
                metavar="K",
                help="run only the first K looks' replicates (harness.sweep.profiles.LOOKS; e.g. quick: "
                "--look 1 runs 5 seeds, --look 2 runs 10); default: every listed run (the largest look). `make` "
                "drives the looks",
            ),
            arg(
                "--executor",
                default=os.environ.get("HARNESS_EXECUTOR", "local"),
                help="local (default), processes or ray",
            ),
            arg("--workers", type=int, help="parallel runs for processes/ray (default: CPU count)"),
            arg(
                "--threads",
                type=int,
                help=(
                    "torch CPU threads per run (default: all cores for local, cores/workers otherwise); equal "
                    "threads give bit-identical runs"
                ),
            ),
            arg("--retry-failed", action="store_true", help="retry runs that raised or diverged before"),
            arg("--ray-address", help="existing Ray cluster ('auto' or host:port); default: start a local one"),
            arg("--task-cpus", type=float, default=1.0, help="CPUs per Ray task (default 1)"),
            arg(
                "--task-gpus", type=float, default=0.0, help="GPUs per Ray task, fractional to share a GPU (default 0)"
            ),
            arg(
                "--no-wait",
                dest="wait",
                action="store_false",
                help="skip runs another sweep is computing (exit 1) instead of waiting for them and reading their "
                "results",
            ),
            arg(
                "--wait-limit",
                type=float,
                metavar="SECONDS",
                help="wait at most this long for runs another sweep holds, then skip them (default: until it finishes "
                "or dies)",
            ),
            *STORE_ARGS,
        ),
    ),
    Command(
        "status",
        help="a sweep's state from the store, without running anything",
        func=cmd_status,
        args=(
            arg("experiment", help="path of an experiment file"),
            arg("--profile", default="quick"),
            arg(
                "--dataset",
                help="run the study on this dataset instead of its own: a name (harness data list) or the path of a "
                ".npz file with arrays x, y and optionally x_test, y_test; outputs go beside the default's "
                "(PROFILE-DATASET)",
            ),
            arg("--store", help="run store folder (default: $HARNESS_STORE or runs/)"),
            arg(
                "--look",
                type=int,
                metavar="K",
                help="only the first K looks' replicates (the stamp reports/SETTING/.runs/STUDY names the look "
                "make reached); default: every listed run, the largest look",
            ),
            arg("--all", action="store_true", help="one line per run, not only the counts"),
        ),
    ),
    Command(
        "runs",
        help="print the runs table of the store",
        func=cmd_runs,
        args=(
            arg("--experiment", help="only this experiment's runs"),
            arg("--store", help="run store folder (default: $HARNESS_STORE or runs/)"),
            arg("--all-columns", action="store_true", help="every column, not the summary"),
            arg(
                "--stale",
                action="store_true",
                help="only runs trained by training code that has changed since (harness/config, data, models, "
                "training)",
            ),
        ),
    ),
    Command(
        "verify",
        help="check every stored file against its run's manifest (like git fsck); exit 0 whole, 1 damaged, 3 runs "
        "held by a live process left unchecked; --repair retrains or re-evaluates what is damaged",
        func=cmd_verify,
        args=(
            arg("--store", help="run store folder (default: $HARNESS_STORE or runs/)"),
            arg(
                "--repair",
                action="store_true",
                help="retrain damaged runs and compute damaged evaluations again (config and settings from the run's "
                "files, else from the study that lists it), then name what the studies' tables still need; exit 0 "
                "once the store is whole and those tables collectable",
            ),
            arg(
                "--threads",
                type=int,
                help=(
                    "torch CPU threads for repairs (default: the threads each run was trained with, for "
                    "bit-identical results)"
                ),
            ),
            arg(
                "--out",
                metavar="DIR",
                help=(
                    "also check the collected tables under DIR/reports/*/tables/ against their manifests (make's "
                    "OUT; the project folder by default: --out .)"
                ),
            ),
        ),
    ),
)
