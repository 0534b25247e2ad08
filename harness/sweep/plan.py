"""What a profile costs, before anything is trained: runs, FLOPs and an estimated time per study.

    python -m harness.sweep.plan --profile paper --device cuda [--dataset D] [--calibrate-s 5] [--studies a,b] [--json]

For every study (`harness.sweep.studies`) the plan counts

- runs: the replicates the experiment file lists and the tuning runs that choose each arm's learning
  rate (`Experiment.tuning_configs`). A run that an earlier study already lists is *shared*: the run
  store trains it once, so its cost is counted once, in the first study that lists it (`shift`
  evaluates the runs of `ensemble_vs_dropout` with the same settings: all shared, nothing new);
- training FLOPs: the budget. Every run is counted as if it trained to `train.epochs` or
  `train.steps`; early stopping ends most runs sooner, so this is an upper bound;
- evaluation FLOPs: what the study's `Evaluations` compute on each replicate (tuning runs are not
  evaluated), read from `harness.inference.evaluation`, `harness.inference.coadaptation` and
  `harness.inference.robustness`;
- an estimated time on the named device, from a calibration of a few seconds on that device.

Nothing reads a data file: experiments are loaded with `need_data=False` and datasets described by
`harness.data.datasets.describe` (built-in metadata where the files are missing, which are listed first).

FLOPs count the multiply-adds (MACs) of the Linear and Conv layers, 2 FLOPs each (`macs` gives
the exact count per example); activations, pooling, dropout masks, losses, metrics, optimizer
updates and max-norm are left out of the FLOPs, but their time is in the calibration's rates,
which time whole training steps and forward passes. Where the matrix products are tiny (exact
enumeration of 2^20 subnetworks of a 20-unit layer) the elementwise work dominates and the
estimate is low.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.config import ModelConfig
from harness.errors import ConfigError, HarnessError
from harness.sweep.cost import layers, split_sizes, training_work
from harness.sweep.evaluations import evaluation_work
from harness.sweep.rates import Calibration, calibrate
from harness.sweep.studies import names as all_studies

ROOT = Path(__file__).resolve().parents[2]
ASSUMPTIONS = (
    "Training FLOPs are the budget: every run is counted to its train.epochs or train.steps; early stopping "
    "(train.patience) ends most runs sooner, so training FLOPs and times are upper bounds.",
    "FLOPs = 2 per multiply-add of the Linear and Conv layers (harness.sweep.cost.macs); training = 6 x MACs per "
    "example seen (forward 2, backward 4; the first layer's input gradient, which torch skips, is counted too) "
    "plus forward passes over the training and validation splits at every validation check and once more for the "
    "runs table.",
    "Training sizes: data.train_size, else round((1 - val_fraction) x the non-test pool); the stratified split "
    "rounds per class, a few examples away.",
    "Times are estimates: the FLOPs of each piece of work divided by the FLOP/s measured on this device for its "
    "kind (training steps, forward passes, compacted subnetworks, float64 co-adaptation work) on the "
    "representative nets above, and no optimizer step or forward pass shorter than a tiny net's (launch and "
    "framework overhead). One run at a time with the whole device; data loading, shifted-set generation and "
    "writing tables are not counted.",
)


# ---------------------------------------------------------------------------------------------------
# The plan


@dataclass
class StudyPlan:
    """One study's row of the plan (FLOPs and seconds of the runs and evaluations it adds)."""

    study: str
    replicates: int = 0
    tuning: int = 0
    shared: int = 0
    train_flops: float = 0.0
    eval_flops: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    note: str = ""

    @property
    def runs(self) -> int:
        return self.replicates + self.tuning

    @property
    def new(self) -> int:
        return self.runs - self.shared


def _describe(name: str):
    from harness.data.datasets import describe
    from harness.errors import DataError

    try:
        return describe(name)
    except DataError:  # files present but unreadable: the plan needs only their metadata
        return describe(name, files=False)


def load_studies(profile: str, studies: list[str], dataset: str | None = None) -> list:
    """The studies' `Experiment`s, loaded without reading any data file."""
    from harness.sweep.experiment import load_experiment

    return [
        load_experiment(ROOT / "experiments" / f"{study}.py", profile, dataset, need_data=False) for study in studies
    ]


def build_plan(experiments: list, cal: Calibration | None = None) -> tuple[list[StudyPlan], dict]:
    """Rows of the plan, one per experiment (`load_studies`), in order: shared runs and
    evaluations are counted in the first study that lists them; and the data the runs need that
    are not in place: {dataset: missing files}."""
    from harness.data.datasets import missing_files
    from harness.store.identity import design_key

    infos: dict[str, object] = {}
    seen_runs: set = set()
    seen_evals: set = set()
    rows = []
    for exp in experiments:
        study = exp.path.stem
        row = StudyPlan(study, note=exp.skipped or "")
        tuning = exp.tuning_configs()
        row.replicates, row.tuning = len(exp.configs), len(tuning)
        for cfg, is_tuning in [(c, False) for c in exp.configs] + [(c, True) for c in tuning]:
            name = cfg.data.name
            if name not in infos:
                infos[name] = _describe(name)
            info = infos[name]
            stages = layers(cfg.model, tuple(info.input_shape), int(info.n_classes))
            sizes = split_sizes(cfg, info)
            # a replicate's rate is chosen by its arm's grid; equal designs under equal grids are one run
            key = design_key(cfg) if is_tuning else (design_key(cfg), exp.lr_grid)
            if key in seen_runs:
                row.shared += 1
            else:
                seen_runs.add(key)
                w = training_work(cfg, stages, sizes)
                row.train_flops += w.total
                row.train_s += w.seconds(cal) if cal else 0.0
            if is_tuning:
                continue  # tuning runs are trained, not evaluated
            for kind, w in evaluation_work(exp.evaluations, stages, cfg.model.kind, sizes).items():
                ekey = (key, kind, exp.evaluations.settings_json(kind))
                if ekey in seen_evals:
                    continue
                seen_evals.add(ekey)
                row.eval_flops += w.total
                row.eval_s += w.seconds(cal) if cal else 0.0
        if row.runs and row.shared == row.runs and not row.eval_flops:
            row.note = row.note or "every run and evaluation is an earlier study's: nothing new"
        elif row.shared and not row.note:
            row.note = f"{row.shared} runs listed by an earlier study"
        rows.append(row)
    missing = {name: [str(p) for p in missing_files(name)] for name in infos}
    if any(exp.evaluations.robustness is not None for exp in experiments) and "fashion-mnist" not in infos:
        # where its files are, Fashion-MNIST joins the unseen sets of the robustness evaluation (one more set per run)
        missing["fashion-mnist (optional)"] = [str(p) for p in missing_files("fashion-mnist")]
    return rows, {k: v for k, v in missing.items() if v}


def representative_nets(
    profile: str, experiments: list, dataset: str | None = None
) -> dict[str, tuple[ModelConfig, tuple[int, ...], int]]:
    """The nets the calibration measures: the profile's base MLP (on the setting's data, else its
    base data), and the first CNN the experiments list, if any (on its data)."""
    from harness.sweep.profiles import base

    b = base(profile)
    info = _describe(dataset or b.data.name)
    nets = {"mlp": (b.model, tuple(info.input_shape), int(info.n_classes))}
    for exp in experiments:
        cnn = next((c for c in exp.configs if c.model.kind == "cnn"), None)
        if cnn is not None:
            info = _describe(cnn.data.name)
            nets["cnn"] = (cnn.model, tuple(info.input_shape), int(info.n_classes))
            break
    return nets


def si(x: float, unit: str = "FLOP") -> str:
    """1.23e15 -> '1.23 PFLOP'."""
    if x == 0:
        return f"0 {unit}"
    prefixes = ["", "k", "M", "G", "T", "P", "E", "Z"]
    i = min(len(prefixes) - 1, max(0, int(math.floor(math.log10(abs(x)) / 3))))
    return f"{x / 10 ** (3 * i):.3g} {prefixes[i]}{unit}"


def duration(s: float) -> str:
    """Seconds as '45 s', '12 min', '3.4 h' or '2.1 d'."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def plan_json(profile: str, dataset: str | None, rows: list[StudyPlan], missing: dict, cal: Calibration | None) -> dict:
    studies = [
        {
            "study": r.study,
            "runs": r.runs,
            "replicates": r.replicates,
            "tuning_runs": r.tuning,
            "shared_runs": r.shared,
            "new_runs": r.new,
            "train_flops": r.train_flops,
            "eval_flops": r.eval_flops,
            "train_s": r.train_s if cal else None,
            "eval_s": r.eval_s if cal else None,
            "estimated_s": (r.train_s + r.eval_s) if cal else None,
            "note": r.note,
        }
        for r in rows
    ]
    totals = {
        "runs_listed": sum(r.runs for r in rows),
        "runs_to_train": sum(r.new for r in rows),
        "train_flops": sum(r.train_flops for r in rows),
        "eval_flops": sum(r.eval_flops for r in rows),
        "estimated_s": sum(r.train_s + r.eval_s for r in rows) if cal else None,
    }
    return {
        "profile": profile,
        "dataset": dataset,
        "missing_files": missing,
        "make_data": "make data" if missing else None,
        "calibration": asdict(cal) if cal else None,
        "studies": studies,
        "totals": totals,
        "assumptions": list(ASSUMPTIONS),
    }


def _data_lines(missing: dict) -> list[str]:
    if not missing:
        return ["Data: every dataset's files are in place."]
    lines = ["Missing data files (the plan does not need them; the runs do: `make data` fetches them):"]
    for name, paths in missing.items():
        lines += [f"  {name}:"] + [f"    {p}" for p in paths]
    if any(name.endswith("(optional)") for name in missing):
        lines.append(
            "  (optional: where its files are, Fashion-MNIST is one more unseen set of the robustness evaluation; "
            "the plan counts without it)"
        )
    return lines


def _calibration_lines(cal: Calibration) -> list[str]:
    lines = [f"Calibration on {cal.device} ({cal.machine}), {cal.seconds:.1f} s:"]
    if cal.busy:
        lines.append(f"  {cal.busy}")
    for rate, value in cal.rates.items():
        lines.append(f"  {rate:<10} {si(value, 'FLOP/s'):>14}  {cal.nets.get(rate, '')}")
    lines.append(
        f"  floor: {cal.step_s * 1e3:.2g} ms per optimizer step, {cal.pass_s * 1e3:.2g} ms per forward pass (tiny net)"
    )
    return lines


def _row(study: str, rows: list[StudyPlan], timed: bool) -> dict:
    """The table's row of `rows` (one study's, or all of them summed as `study`)."""
    out = {
        "study": study,
        "replicates": sum(r.replicates for r in rows),
        "tuning": sum(r.tuning for r in rows),
        "shared": sum(r.shared for r in rows),
        "train FLOPs": si(sum(r.train_flops for r in rows)),
        "eval FLOPs": si(sum(r.eval_flops for r in rows)),
    }
    if timed:
        train_s, eval_s = sum(r.train_s for r in rows), sum(r.eval_s for r in rows)
        out |= {"train time": duration(train_s), "eval time": duration(eval_s), "est. time": duration(train_s + eval_s)}
    return out


def _looks_note(profile: str) -> list[str]:
    from harness.sweep.profiles import looks

    design = looks(profile)
    if len(design) <= 1:
        return []
    return [
        f"Studies run in looks of {', '.join(map(str, design))} replicates (`analysis.looks`): this plan counts "
        "every look, the most the suite can run; a study stops earlier once none of its claims asks for more seeds "
        f"(when every study stops at its first look, the replicates shrink to about {design[0] / design[-1]:.0%}; "
        "the tuning runs do not shrink)."
    ]


def format_plan(
    profile: str, dataset: str | None, rows: list[StudyPlan], missing: dict, cal: Calibration | None
) -> str:
    import pandas as pd

    lines = [f"Plan of profile {profile}{' on ' + dataset if dataset else ''}: nothing trained yet."]
    lines += _data_lines(missing) + (_calibration_lines(cal) if cal else [])
    table = pd.DataFrame([_row(r.study, [r], bool(cal)) for r in rows] + [_row("total", rows, bool(cal))])
    lines += ["", table.to_string(index=False), ""]
    lines.append(
        "replicates: the runs a study lists; tuning: the runs that choose each arm's learning rate; shared: of "
        f"both, those an earlier study lists (trained and evaluated once, counted there). {sum(r.new for r in rows)} "
        "runs to train."
    )
    lines += _looks_note(profile)
    lines += [f"  {r.study}: {r.note}" for r in rows if r.note]
    lines += ["", "Assumptions:"] + [f"- {a}" for a in ASSUMPTIONS]
    if not cal:
        lines.append("- No calibration (--calibrate-s 0): FLOPs only, no times.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m harness.sweep.plan",
        description="Runs, FLOPs and estimated time of every study of a profile, before training.",
    )
    p.add_argument("--profile", default="quick", help="quick (default), paper or smoke")
    p.add_argument("--dataset", help="plan the studies on this dataset instead of their own (a name or a .npz path)")
    p.add_argument(
        "--device", default="cpu", help="where the estimate is calibrated: cpu (default), cuda, cuda:N or mps"
    )
    p.add_argument(
        "--calibrate-s", type=float, default=5.0, help="seconds of calibration on the device (default 5; 0: FLOPs only)"
    )
    p.add_argument("--studies", help="comma-separated studies (default: every study of harness.sweep.studies)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = p.parse_args(argv)
    try:
        if not (args.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", args.device) or args.device == "mps"):
            raise ConfigError(f"--device {args.device}: use cpu, cuda, cuda:N or mps")
        if not (args.calibrate_s >= 0 and math.isfinite(args.calibrate_s)):
            raise ConfigError(f"--calibrate-s {args.calibrate_s}: give a number of seconds >= 0")
        studies = [s.strip() for s in args.studies.split(",") if s.strip()] if args.studies else all_studies()
        known = sorted(q.stem for q in (ROOT / "experiments").glob("*.py") if not q.name.startswith("_"))
        unknown = [s for s in studies if s not in known]
        if unknown or not studies:
            raise ConfigError(
                f"--studies: {unknown[0] if unknown else 'none given'!r} is not a study; studies: {', '.join(known)}"
            )
        experiments = load_studies(args.profile, studies, args.dataset)
        cal = None
        if args.calibrate_s > 0:
            from harness.sweep.profiles import base

            nets = representative_nets(args.profile, experiments, args.dataset)
            cal = calibrate(args.device, nets, base(args.profile).train.batch_size, args.calibrate_s)
        rows, missing = build_plan(experiments, cal)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan_json(args.profile, args.dataset, rows, missing, cal), indent=2))
    else:
        print(format_plan(args.profile, args.dataset, rows, missing, cal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
