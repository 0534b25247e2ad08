"""One run: dataset -> model -> training -> checkpoint -> row of the runs table, cached in the store."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .config import RunConfig

if TYPE_CHECKING:
    from .coadaptation import CoadaptSettings
    from .evaluation import MCSettings
from .data import Dataset, load_dataset
from .errors import ConfigError
from .models import DropoutNet, build_model
from .store import RunStore, provenance, write_run_files
from .training import evaluate, train


@dataclass(frozen=True)
class Evaluations:
    """What to measure on a finished run: inference modes (`mc`) and co-adaptation (`coadapt`).
    Each is cached in the run's folder under its own settings."""

    mc: "MCSettings | None" = None
    coadapt: "CoadaptSettings | None" = None


@dataclass
class RunRecord:
    run_id: str
    path: Path
    row: dict
    cached: bool


def check_device(device: str) -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device} but this machine has no CUDA device; use device=cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device=mps but MPS is not available here; use device=cpu")


def execute(cfg: RunConfig, store: RunStore, force: bool = False, evaluations: Evaluations = Evaluations()) -> RunRecord:
    """Train the run `cfg` describes and store it, or load it if the store already has it; then
    run the requested evaluations of a run that finished (each cached on its own).

    Bad input (unknown device, a training size larger than the data) raises before anything is
    written. A diverged run is stored with status "diverged" and its message, and not evaluated.
    """
    record = _train(cfg, store, force)
    if record.row["status"] == "ok":
        if evaluations.mc is not None:
            from .evaluation import evaluate_run

            evaluate_run(store, record.run_id, evaluations.mc, device=cfg.device, force=force and not record.cached)
        if evaluations.coadapt is not None:
            from .coadaptation import analyze_run

            c = evaluations.coadapt
            analyze_run(store, record.run_id, c.split, c.n_pairs, c.seed, cfg.device, force=force and not record.cached)
    return record


def _train(cfg: RunConfig, store: RunStore, force: bool) -> RunRecord:
    run_id = cfg.run_id
    if not force and store.is_complete(run_id):
        return RunRecord(run_id, store.path(run_id), store.load_row(run_id), cached=True)
    check_device(cfg.device)
    data = load_dataset(cfg.data, cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.n_classes).to(cfg.device)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    result = train(model, data, cfg.train, seed=cfg.seed, max_norm=cfg.model.max_norm, label=f"{cfg.experiment}/{run_id}")
    wall = time.perf_counter() - t0
    row = runs_row(cfg, data, model, result.status, result.message, wall, result.best_epoch)
    prov = provenance(cfg.device) | {"started": started.isoformat(), "wall_time_s": wall}
    path = store.commit(run_id, lambda d: write_run_files(d, cfg, model.state_dict(), result.history, row, prov), force=force)
    return RunRecord(run_id, path, row, cached=False)


def runs_row(cfg: RunConfig, data: Dataset, model: DropoutNet, status: str, message: str, wall: float, best_epoch: int | None) -> dict:
    """One row of the runs table: config columns, then status and final metrics (errors as fractions)."""
    m = cfg.model
    hidden = set(m.p_drop_hidden)
    row = {
        "run_id": cfg.run_id,
        "experiment": cfg.experiment,
        "profile": cfg.profile,
        "dataset": cfg.data.name,
        "model": m.kind,
        "widths": "x".join(map(str, m.widths)) or "none",
        "depth": len(m.widths),
        "width": m.widths[0] if m.widths else 0,
        "activation": m.activation,
        "convention": m.convention,
        "p_drop_input": m.p_drop_input,
        # one hidden rate when all hidden sites share it, else NaN (the sites column has them all)
        "p_drop_hidden": hidden.pop() if len(hidden) == 1 else (0.0 if not hidden else float("nan")),
        "p_drop_sites": ",".join(f"{s.name}={s.p_drop:g}" for s in model.dropout_sites()),
        "max_norm": m.max_norm if m.max_norm is not None else float("nan"),
        "optimizer": cfg.train.optimizer,
        "lr": cfg.train.lr,
        "seed": cfg.seed,
        "train_size": len(data.y_train),
        "epochs": cfg.train.epochs,
        "best_epoch": best_epoch if best_epoch is not None else 0,
        "status": status,
        "message": message,
        "wall_time_s": wall,
        "machine": machine_name(cfg.device),
    }
    for split in ("train", "val", "test"):
        if status == "ok":
            loss, err = evaluate(model, getattr(data, f"x_{split}"), getattr(data, f"y_{split}"))
        else:
            loss, err = float("nan"), float("nan")
        row[f"{split}_loss"], row[f"{split}_error"] = loss, err
    return row


def machine_name(device: str) -> str:
    """What ran a run, for the report's setup lines: processor (or GPU), cores, device."""
    import os
    import platform

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def load_model(store: RunStore, run_id: str, device: str = "cpu") -> tuple[RunConfig, DropoutNet, Dataset]:
    """Rebuild a stored run's trained network (evaluation mode) and its dataset splits."""
    cfg = store.load_config(run_id)
    data = load_dataset(cfg.data, device)
    model = build_model(cfg.model, data.input_shape, data.n_classes).to(device)
    model.load_state_dict(store.load_state(run_id, device))
    model.eval()
    return cfg, model, data
