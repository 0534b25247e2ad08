"""Deep ensembles: sets of independently trained runs whose predictions are averaged.

An experiment file that compares ensembles lists its member runs as ordinary configs (seeds
included) and groups them with `ensembles_of`: runs that differ only in their seed, in order of
seed, `members` at a time, so ensemble r of a design holds seeds r * members ... r * members +
members - 1 and is replicate r (independent ensembles never share a member).

An ensemble is evaluated from its members' stored predictions (the robustness evaluation's
`predictions` table) and gets the same tables as one run (`harness.inference.robustness`), the
decomposition of its loss included: from the weight-scaled predictions with mode `ensemble` and
k = its number of members; for dropout nets also from each member's average of T // M subnetworks,
with mode `ensemble_mc` and k = the subnetworks used in all (M x T // M), so that independence is
compared with one net's subnetworks at an equal number of subnetworks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from harness.config import RunConfig
from harness.data.shifts import EvalSet
from harness.errors import ConfigError
from harness.inference.robustness import Recorder
from harness.measures.metrics import EnsembleAccumulator
from harness.store.identity import run_id


@dataclass(frozen=True)
class Ensemble:
    """name: a label unique within the study (its rows' run_id); group: "dropout" or "no dropout";
    replicate: its index among the ensembles of its design; run_ids: its members, in seed order."""

    name: str
    group: str
    replicate: int
    run_ids: tuple[str, ...]


def member_configs(cfg: RunConfig, members: int, replicates: int) -> list[RunConfig]:
    """`replicates` disjoint sets of `members` runs of `cfg`: seeds 0 ... members * replicates - 1."""
    if members < 1 or replicates < 1:
        raise ConfigError(f"members={members}, replicates={replicates}: both must be positive")
    return [cfg.replace(seed=s) for s in range(members * replicates)]


def dropout_group(cfg: RunConfig) -> str:
    m = cfg.model
    return (
        "dropout"
        if max(m.p_drop_input, *m.p_drop_hidden, *(m.p_drop_conv if m.kind == "cnn" else ())) > 0
        else "no dropout"
    )


def ensembles_of(configs: list[RunConfig], members: int) -> list[Ensemble]:
    """Group runs that differ only in their seed into ensembles of `members`, in order of seed; a
    design whose run count is not a multiple of `members` is an error."""
    designs: dict[str, list[RunConfig]] = {}
    for c in configs:
        d = c.to_dict()
        d.pop("seed")
        designs.setdefault(json.dumps(d, sort_keys=True), []).append(c)
    out = []
    for cfgs in designs.values():
        cfgs = sorted(cfgs, key=lambda c: c.seed)
        if len(cfgs) % members:
            raise ConfigError(
                f"{len(cfgs)} runs of one design cannot form ensembles of {members}: list a multiple of {members} seeds"
            )
        group = dropout_group(cfgs[0])
        label = group.replace(" ", "_")
        for r in range(len(cfgs) // members):
            chunk = cfgs[r * members : (r + 1) * members]
            out.append(
                Ensemble(f"{label}_ensemble_{r}_{run_id(chunk[0])[:6]}", group, r, tuple(run_id(c) for c in chunk))
            )
    return out


ENSEMBLE_MODES = {"weight_scaled": "ensemble", "mc_shared": "ensemble_mc"}  # members' mode: the ensemble's mode


def evaluate_ensemble(ensemble: Ensemble, predictions: pd.DataFrame, bins: int = 30) -> dict[str, pd.DataFrame]:
    """The robustness tables of `ensemble` from its members' rows of the `predictions` table, one
    ensemble per stored mode of its members (ENSEMBLE_MODES)."""
    p = predictions[predictions.run_id.isin(ensemble.run_ids)]
    missing = sorted(set(ensemble.run_ids) - set(p.run_id))
    if missing:
        raise ConfigError(
            f"ensemble {ensemble.name}: no stored predictions for member {missing[0]}; run its robustness evaluation "
            "first"
        )
    if "mode" not in p.columns:
        p = p.assign(mode="weight_scaled", k=0)
    cols = sorted((c for c in p.columns if c.startswith("logp_")), key=lambda c: int(c.split("_")[1]))
    rec = Recorder(ensemble.name, len(cols), bins)
    for member_mode, mode in ENSEMBLE_MODES.items():
        q = p[p["mode"] == member_mode]
        if q.empty:
            continue
        present = set(q.run_id)
        if len(present) != len(ensemble.run_ids):
            absent = sorted(set(ensemble.run_ids) - present)[0]
            raise ConfigError(
                f"ensemble {ensemble.name}: member {absent} has no {member_mode} predictions; evaluate every member "
                "with the same robustness settings"
            )
        _record_ensemble(rec, ensemble, q, cols, mode, int(q["k"].iloc[0]) * len(ensemble.run_ids))
    return rec.tables()


def _record_ensemble(rec: Recorder, ensemble: Ensemble, p: pd.DataFrame, cols: list[str], mode: str, k: int) -> None:
    logp = p[cols].to_numpy(dtype="float64")
    labels, examples = p["label"].to_numpy(), p["example"].to_numpy()
    shifts, intensities = p["shift"].astype(str).to_numpy(), p["intensity"].to_numpy()
    rows = {
        (str(s), str(r)): idx for (s, r), idx in p.groupby(["set", "run_id"], sort=False, observed=True).indices.items()
    }
    # the test set first: unseen sets are scored against its uncertainty
    names = list(dict.fromkeys(str(s) for s, _ in rows))
    for name in ["test"] + [n for n in names if n != "test"]:
        first = rows[(name, ensemble.run_ids[0])]
        first = first[np.argsort(examples[first], kind="stable")]
        y = torch.tensor(labels[first])
        s = EvalSet(name, shifts[first[0]], float(intensities[first[0]]), None, None if bool((y < 0).all()) else y)
        acc = EnsembleAccumulator(len(first), len(cols))
        for member in ensemble.run_ids:
            idx = rows.get((name, member), first[:0])
            idx = idx[np.argsort(examples[idx], kind="stable")]
            if len(idx) != len(first) or not np.array_equal(examples[idx], examples[first]):
                raise ConfigError(
                    f"ensemble {ensemble.name}: member {member} has {len(idx)} predictions on {name}, not the "
                    f"{len(first)} of {ensemble.run_ids[0]}; evaluate every member with the same robustness settings"
                )
            acc.add(torch.from_numpy(logp[idx]))
        rec.record(s, mode, k if mode != "ensemble" else acc.k, acc.mean(), acc.log_mean(), acc)
