"""Command line: ``python -m harness SUBCOMMAND``. Bad input exits with status 2 and a message that
names the problem and the fix; nothing is written before the input has been checked."""

from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd

from harness.config import RunConfig, from_dict, load_config_file, parse_assignment, with_overrides
from harness.errors import HarnessError
from harness.store.identity import run_id

SUMMARY_COLUMNS = [
    "run_id",
    "experiment",
    "dataset",
    "model",
    "widths",
    "p_drop_input",
    "p_drop_hidden",
    "seed",
    "lr",
    "train_size",
    "epochs",
    "best_epoch",
    "stopped_by",
    "status",
    "wall_time_s",
    "train_error",
    "test_error",
]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args) or 0
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished runs are kept in the store", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness", description="Dropout research harness: train, sample subnetworks, measure, report."
    )
    sub = p.add_subparsers(metavar="COMMAND")

    t = sub.add_parser("train", help="train one run from flags or a config file and print where its results are")
    t.add_argument("--config", help="JSON or TOML file with a (partial) run config")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any field, e.g. --set model.widths=512,512 (repeatable)",
    )
    t.add_argument("--experiment", help="experiment name recorded with the run")
    t.add_argument("--dataset", help="dataset name (data.name)")
    t.add_argument("--train-size", type=int, help="number of training examples (data.train_size)")
    t.add_argument("--model", dest="kind", help="mlp or cnn (model.kind)")
    t.add_argument("--widths", help="hidden widths, comma-separated (model.widths)")
    t.add_argument("--p-drop-input", type=float, help="drop probability at the input (model.p_drop_input)")
    t.add_argument(
        "--p-drop-hidden", help="drop probability of hidden layers, one or one per layer (model.p_drop_hidden)"
    )
    t.add_argument("--epochs", type=int, help="training epochs (train.epochs)")
    t.add_argument("--seed", type=int, help="seed of initialisation, dropout masks and batch order")
    t.add_argument("--device", help="cpu (default), cuda, cuda:N")
    _store_args(t)
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("run", help="run every config an experiment file lists (cached runs are loaded, not retrained)")
    r.add_argument("experiment", help="path of an experiment file, e.g. experiments/baseline.py")
    r.add_argument("--profile", default="quick", help="quick (default), paper or smoke")
    r.add_argument(
        "--dataset",
        help="run the study on this dataset instead of its own: a name (harness data list) or the path of a .npz "
        "file with arrays x, y and optionally x_test, y_test; outputs go beside the default's (PROFILE-DATASET)",
    )
    r.add_argument(
        "--look",
        type=int,
        metavar="K",
        help="run only the first K looks' replicates (harness.sweep.profiles.LOOKS; e.g. quick: "
        "--look 1 runs 5 seeds, --look 2 runs 10); default: every listed run (the largest look). `make` drives the "
        "looks",
    )
    r.add_argument(
        "--executor", default=os.environ.get("HARNESS_EXECUTOR", "local"), help="local (default), processes or ray"
    )
    r.add_argument("--workers", type=int, help="parallel runs for processes/ray (default: CPU count)")
    r.add_argument(
        "--threads",
        type=int,
        help=(
            "torch CPU threads per run (default: all cores for local, cores/workers otherwise); equal threads give "
            "bit-identical runs"
        ),
    )
    r.add_argument("--retry-failed", action="store_true", help="retry runs that raised or diverged before")
    r.add_argument("--ray-address", help="existing Ray cluster ('auto' or host:port); default: start a local one")
    r.add_argument("--task-cpus", type=float, default=1.0, help="CPUs per Ray task (default 1)")
    r.add_argument(
        "--task-gpus", type=float, default=0.0, help="GPUs per Ray task, fractional to share a GPU (default 0)"
    )
    r.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="skip runs another sweep is computing (exit 1) instead of waiting for them and reading their results",
    )
    r.add_argument(
        "--wait-limit",
        type=float,
        metavar="SECONDS",
        help="wait at most this long for runs another sweep holds, then skip them (default: until it finishes or dies)",
    )
    _store_args(r)
    r.set_defaults(func=cmd_run)

    st = sub.add_parser("status", help="a sweep's state from the store, without running anything")
    st.add_argument("experiment", help="path of an experiment file")
    st.add_argument("--profile", default="quick")
    st.add_argument(
        "--dataset",
        help="run the study on this dataset instead of its own: a name (harness data list) or the path of a .npz "
        "file with arrays x, y and optionally x_test, y_test; outputs go beside the default's (PROFILE-DATASET)",
    )
    st.add_argument("--store", help="run store folder (default: $HARNESS_STORE or runs/)")
    st.add_argument(
        "--look",
        type=int,
        metavar="K",
        help="only the first K looks' replicates (the stamp reports/SETTING/.runs/STUDY names the look "
        "make reached); default: every listed run, the largest look",
    )
    st.add_argument("--all", action="store_true", help="one line per run, not only the counts")
    st.set_defaults(func=cmd_status)

    ls = sub.add_parser("runs", help="print the runs table of the store")
    ls.add_argument("--experiment", help="only this experiment's runs")
    ls.add_argument("--store", help="run store folder (default: $HARNESS_STORE or runs/)")
    ls.add_argument("--all-columns", action="store_true", help="every column, not the summary")
    ls.add_argument(
        "--stale",
        action="store_true",
        help="only runs trained by training code that has changed since (harness/config, data, models, training)",
    )
    ls.set_defaults(func=cmd_runs)

    vf = sub.add_parser(
        "verify",
        help="check every stored file against its run's manifest (like git fsck); exit 0 whole, 1 damaged, 3 runs "
        "held by a live process left unchecked; --repair retrains or re-evaluates what is damaged",
    )
    vf.add_argument("--store", help="run store folder (default: $HARNESS_STORE or runs/)")
    vf.add_argument(
        "--repair",
        action="store_true",
        help="retrain damaged runs and compute damaged evaluations again (config and settings from the run's files, "
        "else from the study that lists it), then name what the studies' tables still need; exit 0 once the store is "
        "whole and those tables collectable",
    )
    vf.add_argument(
        "--threads",
        type=int,
        help=(
            "torch CPU threads for repairs (default: the threads each run was trained with, for bit-identical results)"
        ),
    )
    vf.add_argument(
        "--out",
        metavar="DIR",
        help=(
            "also check the collected tables under DIR/reports/*/tables/ against their manifests (make's OUT; the "
            "project folder by default: --out .)"
        ),
    )
    vf.set_defaults(func=cmd_verify)

    mc = sub.add_parser(
        "mc", help="evaluate a stored run's inference modes (weight scaling, MC subnetworks, exact) without retraining"
    )
    mc.add_argument("run", help="run id (or a unique prefix of one); see `python -m harness runs`")
    mc.add_argument("--T", type=int, default=100, help="subnetworks per stream (default 100)")
    mc.add_argument(
        "--streams", type=int, default=5, help="independent streams of subnetworks, for confidence bands (default 5)"
    )
    mc.add_argument("--seed", type=int, default=0, help="seed of the subnetwork streams")
    mc.add_argument("--split", default="test", help="test (default), val or train")
    mc.add_argument(
        "--exact", default="auto", help="auto (default: when the net has at most 20 droppable units), yes or no"
    )
    mc.add_argument("--no-per-example", dest="per_example", action="store_false", help="skip the mc_per_example mode")
    mc.add_argument("--device", default="cpu")
    _store_args(mc)
    mc.set_defaults(func=cmd_mc)

    sh = sub.add_parser(
        "shift",
        help=(
            "evaluate a stored run on rotated, corrupted and unseen inputs (weight scaling, temperature scaling, MC) "
            "without retraining"
        ),
    )
    sh.add_argument("run", help="run id (or a unique prefix of one); see `python -m harness runs`")
    sh.add_argument("--T", type=int, default=50, help="subnetworks per average (default 50)")
    sh.add_argument(
        "--members",
        type=int,
        default=5,
        help="k of the equal-members average, the size of deep ensembles it is set against (default 5)",
    )
    sh.add_argument("--seed", type=int, default=0, help="seed of the subnetworks")
    sh.add_argument("--angles", help="rotation angles in degrees, comma-separated (default 0,15,...,180)")
    sh.add_argument(
        "--corruptions",
        help=(
            "comma-separated corruptions (default all: shot_noise, impulse_noise, gaussian_blur, motion_blur, shear, "
            "translate, centre_band)"
        ),
    )
    sh.add_argument(
        "--severities", default="1,2,3", help="corruption severities, comma-separated, each 1, 2 or 3 (default 1,2,3)"
    )
    sh.add_argument("--device", default="cpu")
    _store_args(sh)
    sh.set_defaults(func=cmd_shift)

    co = sub.add_parser(
        "coadapt", help="co-adaptation measures of stored runs (correlations, DeCov, effective rank, ablation)"
    )
    co.add_argument("runs", nargs="*", help="run ids or unique prefixes (default: every run of --experiment)")
    co.add_argument("--experiment", help="all runs of this experiment")
    co.add_argument("--split", default="test", help="held-out split: test (default) or val")
    co.add_argument(
        "--pairs", type=int, default=200, help="unit pairs sampled per layer for the ablation interaction (default 200)"
    )
    co.add_argument("--seed", type=int, default=0)
    co.add_argument(
        "--features", metavar="DIR", help="also save each MLP's first-layer features as DIR/features_RUN.png"
    )
    co.add_argument("--device", default="cpu")
    _store_args(co)
    co.set_defaults(func=cmd_coadapt)

    cp = sub.add_parser(
        "compare",
        help="compare co-adaptation between groups of runs (Welch-t interval, Mann-Whitney U, Benjamini-Hochberg)",
    )
    cp.add_argument("--experiment", required=True, help="the experiment whose runs are compared")
    cp.add_argument(
        "--by", default="p_drop_hidden", help="runs-table column that defines the groups (default p_drop_hidden)"
    )
    cp.add_argument(
        "--baseline", type=float, help="the group the others are compared with (default: the smallest value)"
    )
    cp.add_argument(
        "--metrics",
        default="mean_abs_r,decov_normalized,effective_rank,interaction_abs_mean",
        help="comma-separated metrics to print (all are saved)",
    )
    cp.add_argument("--out", help="write the full comparison table as CSV here")
    cp.add_argument("--store", help="run store folder (default: $HARNESS_STORE or runs/)")
    cp.set_defaults(func=cmd_compare)

    d = sub.add_parser("data", help="list, prepare or fetch datasets")
    dsub = d.add_subparsers(metavar="ACTION")
    dl = dsub.add_parser("list", help="datasets, where they come from and whether they are ready")
    dl.set_defaults(func=cmd_data_list)
    dp = dsub.add_parser("prepare", help="parse the embedded datasets into data/ once")
    dp.add_argument("names", nargs="*", default=["mnist5k", "mnist1d", "digits"])
    dp.set_defaults(func=cmd_data_prepare)
    df = dsub.add_parser("fetch", help="download a dataset into data/ with checksum verification (needs internet)")
    df.add_argument("name", help="mnist, fashion-mnist or cifar10")
    df.add_argument("--mirror", help="base URL to download from instead of the dataset's home")
    df.set_defaults(func=cmd_data_fetch)

    b = sub.add_parser("bench", help="benchmarks that print ratios measured in one run")
    bsub = b.add_subparsers(metavar="WHICH")
    bt = bsub.add_parser("train", help="harness training loop vs a DataLoader loop; fraction of matmul peak")
    bt.add_argument("--device", default="cpu")
    bt.add_argument("--epochs", type=int, default=2)
    bt.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bt.set_defaults(func=cmd_bench_train)
    bm = bsub.add_parser("mc", help="mc_shared engine vs the usual MC-dropout idioms; fraction of matmul peak")
    bm.add_argument("--device", default="cpu")
    bm.add_argument("--T", type=int, default=100)
    bm.add_argument("--examples", type=int, default=10_000)
    bm.add_argument("--widths", default="1024,1024", help="hidden widths, e.g. 4096,4096")
    bm.add_argument("--memory", action="store_true", help="also compare peak memory at T=100 and T=10,000 (slow)")
    bm.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bm.set_defaults(func=cmd_bench_mc)
    bs = bsub.add_parser("sweep", help="16 small runs on local, processes and ray; Ray's overhead per run")
    bs.add_argument("--runs", type=int, default=16)
    bs.add_argument("--workers", type=int, default=2)
    bs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bs.set_defaults(func=cmd_bench_sweep)
    bc = bsub.add_parser(
        "checks", help="share of a quick run spent in validation checks, whole training split vs a fixed subsample"
    )
    bc.add_argument("--epochs", type=int, default=8)
    bc.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bc.set_defaults(func=cmd_bench_checks)
    bp = bsub.add_parser(
        "per-example",
        help="share of an MC evaluation spent in the per-example idiom, on every stream vs the first only",
    )
    bp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bp.set_defaults(func=cmd_bench_per_example)
    bn = bsub.add_parser(
        "cnn", help="seconds per epoch of placement's quick CNN, before and after channels_last and uniform masks"
    )
    bn.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bn.set_defaults(func=cmd_bench_cnn)
    bq = bsub.add_parser(
        "sequential",
        help="the verdict design by simulation: family-wise error and power beside the fixed design and e-values",
    )
    bq.add_argument("--reps", type=int, default=1000, help="families simulated per scenario")
    bq.add_argument(
        "--profile", default="quick", help="whose looks to simulate (harness.sweep.profiles.LOOKS; default quick)"
    )
    bq.set_defaults(func=cmd_bench_sequential)
    return p


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", help="run store folder (default: $HARNESS_STORE or runs/)")
    p.add_argument("--force", action="store_true", help="retrain even if the store has the run")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    base = from_dict(load_config_file(args.config)) if args.config else RunConfig()
    overrides: dict = {}
    flags = {
        "experiment": args.experiment,
        "data.name": args.dataset,
        "data.train_size": args.train_size,
        "model.kind": args.kind,
        "model.widths": _list(args.widths, int, "--widths"),
        "model.p_drop_input": args.p_drop_input,
        "model.p_drop_hidden": _list(args.p_drop_hidden, float, "--p-drop-hidden"),
        "train.epochs": args.epochs,
        "seed": args.seed,
        "device": args.device,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    for text in args.overrides:
        key, value = parse_assignment(text)
        overrides[key] = value
    return with_overrides(base, overrides)


def _list(text: str | None, tp: type, flag: str) -> list | None:
    if text is None:
        return None
    parts = [v.strip() for v in text.split(",")]
    if "" in parts and parts != [""]:  # `8,,8` is a typo, not [8, 8]
        raise HarnessError(
            f"{flag} {text}: element {parts.index('') + 1} is empty; give comma-separated {tp.__name__} values, "
            f"e.g. {'512,512' if tp is int else '0.5,0.5'}"
        )
    try:
        return [tp(v) for v in parts if v]
    except ValueError:
        raise HarnessError(
            f"{flag} {text}: expected comma-separated {tp.__name__} values, e.g. "
            f"{'512,512' if tp is int else '0.5,0.5'}"
        ) from None


def _store(args: argparse.Namespace):
    from harness.store.runs import RunStore

    return RunStore(args.store)


def _existing_store(args: argparse.Namespace):
    """The run store of a command that reads stored runs (mc, shift, coadapt, compare): a store
    folder that does not exist is refused, not created empty."""
    from pathlib import Path

    from harness.store.runs import default_root

    root = Path(args.store) if args.store else default_root()
    if str(root).strip() and not root.exists():
        raise HarnessError(
            f"the run store {root} does not exist: name the folder of your runs with --store (default: $HARNESS_STORE "
            "or runs/), "
            "or train runs first (`python -m harness run EXPERIMENT_FILE`)"
        )
    return _store(args)


def _check_out(out: str) -> None:
    """Refuse an output path that cannot be written, before any work: a folder, or a file whose
    folder cannot be made or written."""
    from pathlib import Path

    path = Path(out)
    if not out.strip() or path.is_dir():
        raise HarnessError(
            f"--out {out or repr(out)} is {'empty' if not out.strip() else 'a folder'}: name a file, e.g. --out "
            "compare.csv"
        )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise HarnessError(
            f"--out {out}: {folder} is {'not a folder' if not folder.is_dir() else 'not writable'}; choose a writable "
            "file path"
        )


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
    """Remove a store folder that holds nothing but an empty claims folder (and its lock file)."""
    claims = root / ".claims"
    try:
        if claims.is_dir() and all(p.name == ".lock" for p in claims.iterdir()):
            (claims / ".lock").unlink(missing_ok=True)
            claims.rmdir()
        root.rmdir()  # only when empty
    except OSError:
        pass


def _run_study(args: argparse.Namespace, exp, where: str, store) -> int:
    from harness.sweep.executors import run_sweep
    from harness.sweep.experiment import resolve
    from harness.sweep.run import Evaluations

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
    from harness.sweep.executors import sweep_status
    from harness.sweep.experiment import load_experiment, resolve
    from harness.sweep.run import Evaluations

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
            if rid not in store.damaged and (st := run_state(store, rid, claimed={})).state == "damaged"
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
    return 1 if damaged else code  # damage outranks runs left unchecked (3)


def format_runs(df: pd.DataFrame) -> str:
    """The runs table for a terminal: summary columns, errors in percent."""
    out = df[[c for c in SUMMARY_COLUMNS if c in df.columns]].copy()
    for c in ("train_error", "test_error"):
        if c in out:
            out[c.replace("error", "err_%")] = (100 * out.pop(c)).round(2)
    if "wall_time_s" in out:
        out["wall_time_s"] = out["wall_time_s"].round(1)
    return out.to_string(index=False)


def cmd_data_list(args: argparse.Namespace) -> int:
    from harness.config import DATASETS
    from harness.data.datasets import SOURCES, data_dir

    for name in DATASETS:
        if name in SOURCES:
            folder = data_dir() / SOURCES[name].folder
            ready = (
                "present" if folder.is_dir() and any(folder.iterdir()) else f"missing: place files in {folder} or fetch"
            )
            print(f"{name:<14} files under data/  ({ready})")
        else:
            print(f"{name:<14} embedded")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from harness.data.datasets import load_raw

    for name in args.names:
        raw = load_raw(name)
        print(f"{name}: {len(raw.y) + (0 if raw.y_test is None else len(raw.y_test))} examples ready")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from harness.data.datasets import fetch

    for path in fetch(args.name, base_url=args.mirror):
        print(f"verified {path}")
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    from harness.bench import bench_train, format_result

    res = bench_train(device=args.device, epochs=args.epochs)
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def resolve_run(store, text: str) -> str:
    ids = [r for r in store.run_ids() if r.startswith(text)]
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise HarnessError(f"no run {text!r} in the store {store.root}; `python -m harness runs` lists them")
    raise HarnessError(f"run prefix {text!r} matches {len(ids)} runs ({', '.join(ids[:5])}...); give more characters")


def _finished(store, run_id: str, wanted):
    """The run's state when it is a finished run (status ok), the only kind that can be evaluated;
    otherwise a HarnessError (exit 2) that says what the run is."""
    from harness.sweep.run import run_state

    st = run_state(store, run_id, wanted)
    if st.state == "damaged":  # the note names the run, the file and the repair
        raise HarnessError(f"{st.note}; a damaged run is never evaluated")
    if st.state != "done":
        raise HarnessError(
            f"run {run_id} is {st.state}{': ' + st.note if st.note else ''}; only a finished run (status ok) can be "
            "evaluated"
        )
    return st


def cmd_mc(args: argparse.Namespace) -> int:
    from harness.inference.evaluation import MCSettings, summarize
    from harness.sweep.run import Evaluations, check_device, evaluate_stored

    store = _existing_store(args)
    run_id = resolve_run(store, args.run)
    settings = MCSettings(
        T=args.T, streams=args.streams, seed=args.seed, split=args.split, per_example=args.per_example, exact=args.exact
    )
    check_device(args.device)
    wanted = Evaluations(mc=settings)
    cached = not args.force and not _finished(store, run_id, wanted).pending.kinds()
    evaluate_stored(store, run_id, wanted, force=args.force, device=args.device)
    evaluations, subnetworks = store.read_table("evaluations", [run_id]), store.read_table("subnetworks", [run_id])
    print(f"run {run_id}: {'loaded from the store' if cached else 'evaluated'}; tables in {store.path(run_id)}")
    print(
        f"{settings.streams} streams x {settings.T} subnetworks on the {settings.split} split; metrics averaged over "
        "streams"
    )
    print(summarize(evaluations).round(4).to_string(index=False))
    errs = 100 * subnetworks["error"]
    print(
        f"single subnetworks: error {errs.mean():.2f}% on average (min {errs.min():.2f}%, max {errs.max():.2f}%, "
        f"n={len(errs)})"
    )
    return 0


def cmd_shift(args: argparse.Namespace) -> int:
    from harness.data.datasets import describe, load_dataset
    from harness.data.shifts import ANGLES, CORRUPTIONS, unseen_available
    from harness.inference.robustness import RobustnessSettings, fit_robustness
    from harness.sweep.run import Evaluations, check_device, evaluate_stored

    store = _existing_store(args)
    run_id = resolve_run(store, args.run)
    check_device(args.device)
    data_cfg = store.load_config(run_id).data
    shape = load_dataset(data_cfg).input_shape
    settings = RobustnessSettings(
        T=args.T,
        members=args.members,
        seed=args.seed,
        angles=tuple(_list(args.angles, int, "--angles") or ANGLES),
        corruptions=tuple(_list(args.corruptions, str, "--corruptions") or CORRUPTIONS),
        severities=tuple(_list(args.severities, int, "--severities")),
        unseen=unseen_available(shape),
    )
    settings, notes = fit_robustness(settings, describe(data_cfg.name))  # only the shifts that fit the run's data
    for note in notes:
        print(f"run {run_id}: {note}")
    wanted = Evaluations(robustness=settings)
    cached = not args.force and not _finished(store, run_id, wanted).pending.kinds()
    evaluate_stored(store, run_id, wanted, force=args.force, device=args.device)
    sh, ood = store.read_table("shift", [run_id]), store.read_table("ood", [run_id])
    print(f"run {run_id}: {'loaded from the store' if cached else 'evaluated'}; tables in {store.path(run_id)}")
    top = sh[(sh.k == sh.groupby("mode")["k"].transform("max")) & sh.metric.isin(["error", "nll", "ece"])]
    top = top.assign(where=top["shift"].map({"none": "test", "rotation": "rotations", "corruption": "corruptions"}))
    table = top.dropna(subset=["where"]).pivot_table(
        index=["mode", "k"], columns=["where", "metric"], values="value", aggfunc="mean"
    )
    print("mean over the sets of each kind (errors and ECE as fractions), each mode at its largest k:")
    print(table.round(4).to_string())
    print("out-of-distribution detection, AUROC against the test split:")
    print(
        ood[ood.metric == "auroc"]
        .pivot_table(index=["mode", "score"], columns="set", values="value")
        .round(3)
        .to_string()
    )
    return 0


def cmd_bench_mc(args: argparse.Namespace) -> int:
    from harness.bench import bench_mc, bench_mc_memory, format_result

    widths = tuple(_list(args.widths, int, "--widths"))
    res = bench_mc(device=args.device, T=args.T, n=args.examples, widths=widths)
    if args.memory:
        res |= bench_mc_memory()
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def _select_runs(store, ids: list[str], experiment: str | None) -> list[str]:
    if ids:
        return [resolve_run(store, r) for r in ids]
    if experiment:
        table = store.runs_table(experiment)
        if table.empty:
            raise HarnessError(f"the store {store.root} has no runs of experiment {experiment!r}")
        return list(table.loc[table["status"] == "ok", "run_id"])
    raise HarnessError("name runs or give --experiment")


def cmd_coadapt(args: argparse.Namespace) -> int:
    from harness.inference.coadaptation import CoadaptSettings, feature_grid
    from harness.sweep.run import Evaluations, check_device, evaluate_stored, load_model

    wanted = Evaluations(coadapt=CoadaptSettings(args.split, args.pairs, args.seed))  # checks split and pairs
    check_device(args.device)
    store = _existing_store(args)
    shown = ["mean_abs_r", "frac_abs_r_gt_0.5", "n_dead", "decov_normalized", "effective_rank", "interaction_abs_mean"]
    for rid in _select_runs(store, args.runs, args.experiment):
        cached = not args.force and not _finished(store, rid, wanted).pending.kinds()
        evaluate_stored(store, rid, wanted, force=args.force, device=args.device)
        co = store.read_table("coadaptation", [rid])
        wide = co[co.metric.isin(shown)].pivot(index="layer", columns="metric", values="value")
        print(f"run {rid}: {'loaded' if cached else 'measured'} ({args.split} split); tables in {store.path(rid)}")
        print(wide[[c for c in shown if c in wide.columns]].to_string(float_format=lambda v: f"{v:.4g}"))
        if args.features:
            from pathlib import Path

            import matplotlib.pyplot as plt

            _, model, _ = load_model(store, rid)
            try:
                grid = feature_grid(model)
            except ValueError as exc:
                print(f"  no feature grid: {exc}")
                continue
            out = Path(args.features) / f"features_{rid}.png"
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                plt.imsave(out, grid, cmap="gray", vmin=0, vmax=1)
            except OSError as exc:
                raise HarnessError(
                    f"--features {args.features}: cannot write {out} ({exc.strerror or exc}); choose a writable folder"
                ) from None
            print(f"  first-layer features: {out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.inference.coadaptation import compare

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if not metrics:
        raise HarnessError(
            f"--metrics {args.metrics!r}: name at least one metric, e.g. --metrics mean_abs_r,effective_rank"
        )
    if args.out:
        _check_out(args.out)
    store = _existing_store(args)
    runs = store.runs_table(args.experiment)
    if runs.empty:
        raise HarnessError(f"the store {store.root} has no runs of experiment {args.experiment!r}")
    runs = runs[runs["status"] == "ok"]
    measures = store.read_table("coadaptation", list(runs["run_id"]))
    if store.damaged:  # never a comparison of what is left: the warnings above name each file and the repair
        raise HarnessError(
            f"{len(store.damaged)} runs of experiment {args.experiment!r} have damaged files (see the warnings above); "
            f"repair them with `python -m harness verify --repair --store {store.root}` and compare again"
        )
    if measures.empty:
        raise HarnessError(
            f"no co-adaptation tables yet: run `python -m harness coadapt --experiment {args.experiment}` first"
        )
    known = sorted(measures["metric"].unique())
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise HarnessError(f"--metrics: {unknown[0]!r} is not a co-adaptation metric; metrics: {', '.join(known)}")
    try:
        table = compare(measures, runs, args.by, args.baseline)
    except ValueError as exc:
        raise HarnessError(f"--by {args.by}: {exc}") from None
    if args.out:
        from harness.files import atomic_write

        try:
            atomic_write(args.out, table.to_csv(index=False).encode())
        except OSError as exc:
            raise HarnessError(
                f"--out {args.out}: cannot write it ({exc.strerror or exc}); choose a writable file path"
            ) from None
        print(f"wrote {args.out}")
    show = table[table.metric.isin(metrics)]
    cols = [
        "layer",
        "metric",
        args.by,
        "n_baseline",
        "n",
        "mean_baseline",
        "mean",
        "diff",
        "ci_low",
        "ci_high",
        "p_value",
        "test_error_baseline",
        "test_error",
    ]
    print(show[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def cmd_bench_checks(args: argparse.Namespace) -> int:
    from harness.bench import bench_checks, format_result

    if args.epochs < 1:
        raise HarnessError(f"--epochs {args.epochs}: train at least one epoch")
    res = bench_checks(args.epochs)
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def cmd_bench_per_example(args: argparse.Namespace) -> int:
    from harness.bench import bench_per_example, format_result

    res = bench_per_example()
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def cmd_bench_cnn(args: argparse.Namespace) -> int:
    from harness.bench import bench_cnn, format_result

    res = bench_cnn()
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0


def cmd_bench_sequential(args: argparse.Namespace) -> int:
    from harness.stats.sequential import Design, benchmark
    from harness.sweep.profiles import looks

    if args.reps < 10:
        raise HarnessError(f"--reps {args.reps}: simulate at least 10 families per scenario")
    design = Design(looks(args.profile))
    if len(design.looks) < 2:
        raise HarnessError(
            f"--profile {args.profile}: its design has one look {design.looks}; simulate a profile with looks (quick, "
            "paper)"
        )
    print(benchmark(args.reps, design))
    return 0


def cmd_bench_sweep(args: argparse.Namespace) -> int:
    from harness.bench import bench_sweep, format_result

    res = bench_sweep(args.runs, args.workers)
    print(json.dumps(res, indent=2) if args.json else format_result(res))
    return 0
