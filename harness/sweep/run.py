"""One run: dataset -> model -> training -> checkpoint -> evaluations, as files for the run store.

`run_task` is the one function every executor calls (in this process, in a process pool, or as a
Ray task): it trains (or, given a checkpoint, rebuilds) the network, runs the requested evaluations
and returns the run's files as bytes. Only the driver writes the store, so workers need no shared
filesystem. `execute` is the same thing for one run in this process.
"""

from __future__ import annotations

import io
import json
import os
import platform
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from harness.config import FORMAT_VERSION, RunConfig
from harness.data.datasets import Dataset, fingerprint, load_dataset
from harness.errors import ConfigError, StoreError
from harness.nets.models import DropoutNet, build_model
from harness.nets.training import TrainResult, evaluate, train
from harness.store.damage import damage_text
from harness.store.identity import run_id
from harness.store.leases import owner_words
from harness.store.manifest import RUN_FILES
from harness.store.provenance import provenance
from harness.store.runs import RunStore, load_checkpoint, table_bytes
from harness.sweep.evaluations import KINDS, Evaluations, evaluation_files


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


@dataclass
class RunState:
    """What the store holds for one run, decided in one place (`run_state`) for the sweep planner,
    `status`, `execute`, the command line and the table collector.

    state: done (trained, status ok), diverged (or another stored status), damaged (a run file or
    the manifest is missing, truncated or changed: retrain it), running (leased by a live
    process), failed (raised before), or missing; pending: the requested evaluations it lacks or
    whose files are damaged (only for done runs); row: its runs-table row when readable; note: the
    message, error or owner, or what is damaged and how to repair it; damage: {file: what is
    wrong} of the run's damaged files (for a done run, those of requested evaluations)."""

    state: str
    pending: Evaluations
    row: dict | None = None
    note: str = ""
    damage: dict[str, str] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.state not in ("missing", "damaged", "running", "failed")


def run_state(
    store: RunStore, run_id: str, evaluations: Evaluations = None, leased: dict[str, str] | None = None
) -> RunState:
    """Is this run done, and which of `evaluations` are pending? `leased` (store.leases.owners()) can
    be passed in when deciding for many runs.

    Every run file, and the files of each requested evaluation, are hashed and checked against the
    run's manifest here (about 1 ms per MB): a damaged run file or manifest makes the run damaged,
    a damaged evaluation file makes that evaluation pending, each with a note naming the file and
    the repair. A run folder stored before manifests existed is damaged (retrained by the next
    sweep: see `harness.store.runs`)."""
    evaluations = evaluations if evaluations is not None else Evaluations()
    none = Evaluations()
    if store.is_complete(run_id):
        damage = store.damage(run_id, RUN_FILES)
        if damage:
            return RunState("damaged", none, None, damage_text(store.damage_record(run_id, damage)), damage)
        try:
            row = store.load_row(run_id)
        except StoreError as exc:
            return RunState("damaged", none, None, str(exc), {"run.parquet": "unreadable"})
        if row["status"] != "ok":
            return RunState(row["status"], none, row, row.get("message", ""))
        todo, damage = _pending(store, run_id, evaluations)
        note = damage_text(store.damage_record(run_id, damage)) if damage else ""
        return RunState("done", todo, row, note, damage)
    leased = store.leases.owners() if leased is None else leased
    if run_id in leased:
        return RunState("running", none, None, f"leased by {owner_words(leased[run_id])}")
    error = store.failures.error(run_id)
    if error is not None:
        return RunState("failed", none, None, error.splitlines()[0])
    return RunState("missing", none)


def pending(store: RunStore, run_id: str, evaluations: Evaluations) -> Evaluations:
    """The evaluations a stored run does not have yet with these settings, or whose files are
    damaged."""
    return _pending(store, run_id, evaluations)[0]


def _pending(store: RunStore, run_id: str, evaluations: Evaluations) -> tuple[Evaluations, dict[str, str]]:
    """`pending`, and {file: what is wrong} for the damaged files of requested evaluations. An
    evaluation counts only when the manifest lists it (its tables and settings file, recorded
    last) and each of its files matches; an evaluation interrupted before it was recorded is
    pending, not damaged."""
    todo, damage = {}, {}
    try:
        recorded = store.manifest(run_id)["evaluations"] if evaluations.kinds() else {}
    except StoreError:
        recorded = {}
    for kind in evaluations.kinds():
        names = recorded.get(kind)
        if names is None:
            todo[kind] = getattr(evaluations, kind)
            continue
        wrong = store.damage(run_id, names)
        damage |= wrong
        if wrong or store.read_bytes(run_id, KINDS[kind].settings_file).decode() != evaluations.settings_json(kind):
            todo[kind] = getattr(evaluations, kind)
    return Evaluations(**todo), damage


def run_task(
    cfg: RunConfig, evaluations: Evaluations = Evaluations(), state: bytes | None = None, threads: int | None = None
) -> dict[str, bytes]:
    """Train the run (or rebuild it from `state`, checkpoint bytes) and evaluate it.

    Returns {file name: bytes} for the run's folder: the run files when it trained, then each
    requested evaluation's tables with its settings file last. `threads` pins torch's CPU threads:
    matrix products sum in a thread-dependent order, so equal threads give bit-identical runs.
    """
    _fault_injection(run_id(cfg))
    if threads:
        torch.set_num_threads(threads)
    check_device(cfg.device)
    data = load_dataset(cfg.resolved_data(), cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.n_classes, dataset=cfg.data.name).to(cfg.device)
    files: dict[str, bytes] = {}
    if state is None:
        files, status = _train_files(cfg, model, data)
    else:
        model.load_state_dict(load_checkpoint(state, run_id(cfg), device=cfg.device))
        status = "ok"
    if status == "ok":
        files |= evaluation_files(run_id(cfg), model.eval(), data, evaluations)
    return files


def _train_files(cfg: RunConfig, model: DropoutNet, data: Dataset) -> tuple[dict[str, bytes], str]:
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    result = train(
        model, data, cfg.train, seed=cfg.seed, max_norm=cfg.model.max_norm, label=f"{cfg.experiment}/{run_id(cfg)}"
    )
    wall = time.perf_counter() - t0
    row = runs_row(cfg, data, model, result, wall)
    prov = provenance(cfg.device) | {
        "started": started.isoformat(),
        "wall_time_s": wall,
        "data_fingerprint": fingerprint(cfg.data.name),
    }
    ckpt = io.BytesIO()
    torch.save(model.state_dict(), ckpt)
    files = {
        "config.json": json.dumps(
            {"run_id": run_id(cfg), "format_version": FORMAT_VERSION, "config": cfg.to_dict()}, indent=2
        ).encode(),
        "checkpoint.pt": ckpt.getvalue(),
        "history.parquet": table_bytes(result.history),
        "run.parquet": table_bytes(pd.DataFrame([row])),
        "provenance.json": json.dumps(prov, indent=2, default=str).encode(),
    }
    return files, result.status


def execute(
    cfg: RunConfig,
    store: RunStore,
    force: bool = False,
    evaluations: Evaluations = Evaluations(),
    threads: int | None = None,
) -> RunRecord:
    """Train and evaluate one run in this process, or load what the store already has.

    Bad input (unknown device, a training size larger than the data) raises before anything is
    written. A diverged run is stored with status "diverged" and its message, and not evaluated.
    """
    rid = run_id(cfg)
    st = run_state(store, rid, evaluations, leased={})
    cached = not force and st.trained
    if not cached:
        store.check_writable()  # evaluate_stored checks for itself
        store.commit_files(rid, run_task(cfg, evaluations, threads=threads), force=force or st.state == "damaged")
    elif st.pending.kinds():
        evaluate_stored(store, rid, st.pending, threads=threads)
    return RunRecord(rid, store.path(rid), store.load_row(rid), cached=cached)


def evaluate_stored(
    store: RunStore,
    run_id: str,
    evaluations: Evaluations,
    force: bool = False,
    threads: int | None = None,
    device: str | None = None,
) -> None:
    """Run evaluations of a stored run (no retraining) and add their tables to its folder; `device`
    overrides where it runs (not part of the run's identity). The run's lease is held throughout
    (taken here unless the caller, a sweep, holds it), so two evaluations of one run never mix
    their tables."""
    todo = evaluations if force else pending(store, run_id, evaluations)
    if not todo.kinds():
        return
    store.check_writable()  # before the computation, not after it
    took = not store.leases.holds(run_id)
    if took and not store.leases.take(run_id):
        owner = store.leases.owners().get(run_id, "another process")
        raise StoreError(f"run {run_id} is being trained or evaluated by {owner}; try again when it has finished")
    try:
        st = run_state(store, run_id, evaluations, leased={})  # again, under the lease
        if st.state == "damaged":
            raise StoreError(st.note)
        if st.state != "done":
            raise StoreError(
                f"run {run_id} is {st.state}{': ' + st.note if st.note else ''}; only a finished run (status ok) can "
                "be evaluated"
            )
        todo = evaluations if force else st.pending
        if not todo.kinds():
            return
        cfg = store.load_config(run_id)
        if device:
            cfg = cfg.replace(device=device)
        state = store.read_bytes(run_id, "checkpoint.pt")
        store.add_files(run_id, run_task(cfg, todo, state=state, threads=threads))
    finally:
        if took:
            store.leases.release(run_id)


def runs_row(cfg: RunConfig, data: Dataset, model: DropoutNet, result: TrainResult, wall: float) -> dict:
    """One row of the runs table: config columns, the epochs and steps actually trained, the epoch
    whose weights were kept and why training stopped (patience, budget, diverged), then status and
    final metrics (errors as fractions)."""
    status, best_epoch = result.status, result.best_epoch
    m = cfg.model
    hidden = set(m.p_drop_hidden)
    row = {
        "run_id": run_id(cfg),
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
        "epochs": result.epochs,
        "steps": result.steps,
        "best_epoch": best_epoch if best_epoch is not None else 0,
        "stopped_by": result.stopped_by,
        "status": status,
        "message": result.message,
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
    """What ran a run, for the report's setup lines: processor (or GPU), cores, threads."""
    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name(device)} ({device})"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def load_model(store: RunStore, run_id: str, device: str = "cpu") -> tuple[RunConfig, DropoutNet, Dataset]:
    """Rebuild a stored run's trained network (evaluation mode) and its dataset splits."""
    cfg = store.load_config(run_id)
    data = load_dataset(cfg.resolved_data(), device)
    model = build_model(cfg.model, data.input_shape, data.n_classes, dataset=cfg.data.name).to(device)
    model.load_state_dict(store.load_state(run_id, device))
    model.eval()
    return cfg, model, data


def _fault_injection(run_id: str = "") -> None:
    """Testing hooks for worker death, as an out-of-memory killer would cause it: with
    HARNESS_FAULT_KILL_ONCE=PATH set, the first run task to start creates PATH and kills its own
    process; with HARNESS_FAULT_KILL_RUN=RUN_ID, every task of that run kills its process."""
    if run_id and os.environ.get("HARNESS_FAULT_KILL_RUN") == run_id:
        os.kill(os.getpid(), signal.SIGKILL)
    marker = os.environ.get("HARNESS_FAULT_KILL_ONCE")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)
