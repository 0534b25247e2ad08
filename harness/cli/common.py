"""What the commands share: the run store they read or write, a run config from flags, run ids from
prefixes and the runs table as text."""

from __future__ import annotations

import argparse
import os

import pandas as pd

from harness.cli.spec import arg
from harness.config import RunConfig, from_dict, load_config_file, parse_assignment, with_overrides
from harness.errors import HarnessError

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
# every command that trains or reads runs takes these
STORE_ARGS = (
    arg("--store", help="run store folder (default: $HARNESS_STORE or runs/)"),
    arg("--force", action="store_true", help="retrain even if the store has the run"),
)


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
            f"{flag} {text}: element {parts.index('') + 1} is empty; give comma-separated {tp.__name__} values, e.g. "
            f"{'512,512' if tp is int else '0.5,0.5'}"
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
            f"the run store {root} does not exist: name the folder of your runs with --store (default: "
            "$HARNESS_STORE or runs/), or train runs first (`python -m harness run EXPERIMENT_FILE`)"
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
            f"--out {out}: {folder} is {'not a folder' if not folder.is_dir() else 'not writable'}; choose a "
            "writable file path"
        )


def format_runs(df: pd.DataFrame) -> str:
    """The runs table for a terminal: summary columns, errors in percent."""
    out = df[[c for c in SUMMARY_COLUMNS if c in df.columns]].copy()
    for c in ("train_error", "test_error"):
        if c in out:
            out[c.replace("error", "err_%")] = (100 * out.pop(c)).round(2)
    if "wall_time_s" in out:
        out["wall_time_s"] = out["wall_time_s"].round(1)
    return out.to_string(index=False)


def resolve_run(store, text: str) -> str:
    ids = [r for r in store.run_ids() if r.startswith(text)]
    if len(ids) == 1:
        return ids[0]
    if not ids:
        raise HarnessError(f"no run {text!r} in the store {store.root}; `python -m harness runs` lists them")
    raise HarnessError(f"run prefix {text!r} matches {len(ids)} runs ({', '.join(ids[:5])}...); give more characters")
