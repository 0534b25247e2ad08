"""Inference modes of one trained run, measured in one streaming pass, as tidy tables.

evaluations: run_id, split, mode, k, repeat, metric, value. ``k`` is the number of subnetworks
averaged (0 for the deterministic weight-scaled net, 2^n for exact enumeration); ``repeat`` is the
independent stream of subnetworks (0 .. streams-1).
subnetworks: run_id, split, stream, subnetwork, kept_fraction, then one column per metric of that
single subnetwork (error, nll, brier, ece, entropy, agreement_ws, kl_ws, inference_gap).

Modes: weight_scaled, mc_shared (k sampled subnetworks, one mask per site shared by all examples),
geometric (normalized geometric mean of the same k subnetworks), mc_per_example (a fresh mask per
example per pass, the usual MC-dropout idiom), exact and exact_geometric (all 2^n subnetworks, for
networks with few droppable units). With exact results available, the MC modes also report
``l2_to_exact``: the mean L2 distance of their average from the exact arithmetic mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from harness.errors import ConfigError
from harness.measures.metrics import EnsembleAccumulator, l2_gap, point_metrics
from harness.nets.models import DropoutNet
from harness.nets.subnetworks import (
    EXACT_MAX_UNITS,
    SubnetworkEngine,
    droppable_units,
    enumerate_subnetworks,
    sample_masks,
    subnetwork_seed,
)
from harness.progress import progress_bar

MODES = ("weight_scaled", "mc_shared", "geometric", "mc_per_example", "exact")
SPLITS = ("test", "val", "train")


@dataclass(frozen=True)
class MCSettings:
    """How a run is evaluated. T subnetworks per stream, `streams` independent streams."""

    T: int = 100
    streams: int = 5
    seed: int = 0
    split: str = "test"
    per_example: bool = True
    # mc_per_example, the usual idiom and the costly one, runs on the first this-many streams: no
    # claim reads it, only the convergence and exact figures (averaged over the streams it has)
    per_example_streams: int = 1
    exact: str = "auto"  # auto: when the net has at most exact_max_units droppable units; yes; no
    exact_max_units: int = EXACT_MAX_UNITS

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed}: the subnetwork seed must be >= 0")
        if self.T < 1 or self.streams < 1:
            raise ConfigError(f"T={self.T}, streams={self.streams}: both must be positive")
        if not 1 <= self.per_example_streams <= self.streams:
            raise ConfigError(f"per_example_streams={self.per_example_streams}: between 1 and streams={self.streams}")
        if self.split not in SPLITS:
            raise ConfigError(f"split={self.split!r}; allowed values: {', '.join(SPLITS)}")
        if self.exact not in ("auto", "yes", "no"):
            raise ConfigError(f"exact={self.exact!r}; allowed values: auto, yes, no")


def checkpoints(T: int) -> list[int]:
    """k = 1, 2, 5, 10, 20, 50, ... up to T, and T itself."""
    ks, base = [], 1
    while base <= T:
        ks += [k for k in (base, 2 * base, 5 * base) if k <= T]
        base *= 10
    return sorted(set(ks + [T]))


@torch.no_grad()
def evaluate_model(
    model: DropoutNet, x: torch.Tensor, y: torch.Tensor, settings: MCSettings = MCSettings(), run_id: str = ""
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """All inference modes of `model` on (x, y); returns (evaluations, subnetworks) tables."""
    engine = SubnetworkEngine(model, x)
    ws_log = torch.log_softmax(engine.weight_scaled().double(), 1)
    ws = ws_log.exp()
    rows: list[tuple] = []

    def emit(mode: str, k: int, repeat: int, metrics: dict[str, float]) -> None:
        rows.extend((mode, k, repeat, name, value) for name, value in metrics.items())

    emit("weight_scaled", 0, 0, point_metrics(ws, y, log_probs=ws_log))

    exact = None
    n_units = droppable_units(engine.sites)
    if settings.exact == "yes" or (settings.exact == "auto" and 0 < n_units <= settings.exact_max_units):
        exact = enumerate_subnetworks(engine, settings.exact_max_units)
        count = int(exact["count"])
        emit("exact", count, 0, point_metrics(exact["mean"], y, ws, exact["log_mean"], ws_log))
        emit("exact_geometric", count, 0, point_metrics(exact["geometric"], y, ws, exact["log_geometric"], ws_log))

    ks = set(checkpoints(settings.T))
    sub_rows = []
    n_passes = settings.T * (settings.streams + (settings.per_example_streams if settings.per_example else 0))
    bar = progress_bar(total=n_passes, desc=f"subnetworks {run_id}".strip(), unit="net")
    for r in range(settings.streams):
        acc = EnsembleAccumulator(len(y), ws.shape[1], ws.device)
        for t in range(settings.T):
            masks = sample_masks(engine.sites, settings.seed, t, stream=r)
            p, logp = acc.add(engine.logits(masks))
            kept = [int(m.sum()) for m in masks if m is not None]
            sub_rows.append(
                {"stream": r, "subnetwork": t, "kept_fraction": sum(kept) / max(n_units, 1)}
                | point_metrics(p, y, ws, logp, ws_log)
            )
            if acc.k in ks:
                _emit_ensemble(emit, acc, y, ws, ws_log, exact, r, "mc_shared", geometric=True)
            bar.update(1)
        if settings.per_example and r < settings.per_example_streams:
            acc = EnsembleAccumulator(len(y), ws.shape[1], ws.device)
            g = torch.Generator(device=x.device).manual_seed(subnetwork_seed(settings.seed, r, 0, purpose=1))
            for _ in range(settings.T):
                acc.add(engine.logits_per_example(g))
                if acc.k in ks:
                    _emit_ensemble(emit, acc, y, ws, ws_log, exact, r, "mc_per_example", geometric=False)
                bar.update(1)
    bar.close()
    evaluations = pd.DataFrame(rows, columns=["mode", "k", "repeat", "metric", "value"])
    subnetworks = pd.DataFrame(sub_rows)
    for df in (evaluations, subnetworks):
        df.insert(0, "split", settings.split)
        df.insert(0, "run_id", run_id)
    return evaluations, subnetworks


def _emit_ensemble(
    emit, acc: EnsembleAccumulator, y, ws, ws_log, exact, repeat: int, mode: str, geometric: bool
) -> None:
    m = acc.summary(y, ws, ws_log)
    if exact is not None:
        m["l2_to_exact"] = l2_gap(acc.mean(), exact["mean"])
    emit(mode, acc.k, repeat, m)
    if geometric:
        g = acc.geometric_summary(y, ws, ws_log)
        if exact is not None:
            g["l2_to_exact"] = l2_gap(acc.geometric(), exact["geometric"])
        emit("geometric", acc.k, repeat, g)


def summarize(
    evaluations: pd.DataFrame, metrics: tuple[str, ...] = ("error", "nll", "ece", "inference_gap")
) -> pd.DataFrame:
    """Per mode at its largest k: mean over repeats of each metric (errors in percent)."""
    df = evaluations[evaluations["metric"].isin(metrics)]
    top = df.groupby("mode")["k"].transform("max")
    df = df[df["k"] == top]
    out = df.pivot_table(index=["mode", "k"], columns="metric", values="value", aggfunc="mean").reset_index()
    order = {
        m: i
        for i, m in enumerate(["weight_scaled", "mc_shared", "geometric", "mc_per_example", "exact", "exact_geometric"])
    }
    out = out.sort_values("mode", key=lambda s: s.map(order)).reset_index(drop=True)
    if "error" in out:
        out["error"] = 100 * out["error"]
        out = out.rename(columns={"error": "error_%"})
    out.columns.name = None
    return out
