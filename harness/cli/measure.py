"""Commands that measure stored runs without retraining: `mc` (inference modes), `shift` (rotated, corrupted
and unseen inputs), `coadapt` (co-adaptation measures) and `compare` (co-adaptation between groups of runs).
"""

from __future__ import annotations

import argparse

from harness.cli.common import STORE_ARGS, _check_out, _existing_store, _list, resolve_run
from harness.cli.spec import Command, arg
from harness.errors import HarnessError


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
    from harness.sweep.evaluations import Evaluations
    from harness.sweep.run import check_device, evaluate_stored

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
    from harness.sweep.evaluations import Evaluations
    from harness.sweep.run import check_device, evaluate_stored

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
    from harness.sweep.evaluations import Evaluations
    from harness.sweep.run import check_device, evaluate_stored, load_model

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
            f"{len(store.damaged)} runs of experiment {args.experiment!r} have damaged files (see the warnings "
            f"above); repair them with `python -m harness verify --repair --store {store.root}` and compare again"
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


COMMANDS = (
    Command(
        "mc",
        help="evaluate a stored run's inference modes (weight scaling, MC subnetworks, exact) without retraining",
        func=cmd_mc,
        args=(
            arg("run", help="run id (or a unique prefix of one); see `python -m harness runs`"),
            arg("--T", type=int, default=100, help="subnetworks per stream (default 100)"),
            arg(
                "--streams",
                type=int,
                default=5,
                help="independent streams of subnetworks, for confidence bands (default 5)",
            ),
            arg("--seed", type=int, default=0, help="seed of the subnetwork streams"),
            arg("--split", default="test", help="test (default), val or train"),
            arg(
                "--exact", default="auto", help="auto (default: when the net has at most 20 droppable units), yes or no"
            ),
            arg("--no-per-example", dest="per_example", action="store_false", help="skip the mc_per_example mode"),
            arg("--device", default="cpu"),
            *STORE_ARGS,
        ),
    ),
    Command(
        "shift",
        help=(
            "evaluate a stored run on rotated, corrupted and unseen inputs (weight scaling, temperature scaling, "
            "MC) without retraining"
        ),
        func=cmd_shift,
        args=(
            arg("run", help="run id (or a unique prefix of one); see `python -m harness runs`"),
            arg("--T", type=int, default=50, help="subnetworks per average (default 50)"),
            arg(
                "--members",
                type=int,
                default=5,
                help="k of the equal-members average, the size of deep ensembles it is set against (default 5)",
            ),
            arg("--seed", type=int, default=0, help="seed of the subnetworks"),
            arg("--angles", help="rotation angles in degrees, comma-separated (default 0,15,...,180)"),
            arg(
                "--corruptions",
                help=(
                    "comma-separated corruptions (default all: shot_noise, impulse_noise, gaussian_blur, "
                    "motion_blur, shear, translate, centre_band)"
                ),
            ),
            arg(
                "--severities",
                default="1,2,3",
                help="corruption severities, comma-separated, each 1, 2 or 3 (default 1,2,3)",
            ),
            arg("--device", default="cpu"),
            *STORE_ARGS,
        ),
    ),
    Command(
        "coadapt",
        help="co-adaptation measures of stored runs (correlations, DeCov, effective rank, ablation)",
        func=cmd_coadapt,
        args=(
            arg("runs", nargs="*", help="run ids or unique prefixes (default: every run of --experiment)"),
            arg("--experiment", help="all runs of this experiment"),
            arg("--split", default="test", help="held-out split: test (default) or val"),
            arg(
                "--pairs",
                type=int,
                default=200,
                help="unit pairs sampled per layer for the ablation interaction (default 200)",
            ),
            arg("--seed", type=int, default=0),
            arg("--features", metavar="DIR", help="also save each MLP's first-layer features as DIR/features_RUN.png"),
            arg("--device", default="cpu"),
            *STORE_ARGS,
        ),
    ),
    Command(
        "compare",
        help="compare co-adaptation between groups of runs (Welch-t interval, Mann-Whitney U, Benjamini-Hochberg)",
        func=cmd_compare,
        args=(
            arg("--experiment", required=True, help="the experiment whose runs are compared"),
            arg(
                "--by",
                default="p_drop_hidden",
                help="runs-table column that defines the groups (default p_drop_hidden)",
            ),
            arg("--baseline", type=float, help="the group the others are compared with (default: the smallest value)"),
            arg(
                "--metrics",
                default="mean_abs_r,decov_normalized,effective_rank,interaction_abs_mean",
                help="comma-separated metrics to print (all are saved)",
            ),
            arg("--out", help="write the full comparison table as CSV here"),
            arg("--store", help="run store folder (default: $HARNESS_STORE or runs/)"),
        ),
    ),
)
