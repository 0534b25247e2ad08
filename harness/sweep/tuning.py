"""Hyper-parameters chosen per arm on validation: the learning rate, from a small stated grid.

An arm is a study's config without its seed: the runs of one design cell. Arms that differ in
their dropout rates, widths or data do not share a best learning rate (a rate that suits a net
without dropout makes a net that keeps 20% of its units unstable), so comparing them at one rate
compares a tuned arm with an untuned one. Each arm is therefore tuned, as the papers did:

1. a few tuning seeds that are none of its replicates (`tuning_seeds`: the profile's
   `harness.sweep.profiles.TUNING_SEEDS`, from TUNING_SEED on) are trained at every rate of the grid
   (the *tuning runs*, ordinary runs of the store, with the profile's early stopping; each seed
   with its own data split, as every seed);
2. the rate whose runs end lowest on the arm's monitored validation quantity (`train.monitor`, at
   the kept checkpoint), averaged over the tuning seeds, is the arm's rate: validation data only,
   never the test split. One tuning seed let float rounding decide between two rates whose losses
   differed by less than a seed's noise (a thread count flipped a CNN arm's choice). A rate
   within TIE_SE standard errors of the lowest mean (of the per-seed differences) is tied with it,
   and ties go to the smaller rate, so a choice inside the seeds' noise is made by a stated rule,
   not by rounding. The standard error is pooled over the study's arms (`_pooled_variance`):
   three seeds alone give 2 degrees of freedom, too few to place a margin on either side of the
   band reliably. The table shows each choice's margin over the runner-up with its standard
   error and degrees of freedom, and whether it was a tie;
3. every seed of the arm is trained at that rate. No replicate is a tuning run, so the winner of
   the choice is never one of the values compared, and every replicate is alike.

`resolve` turns an experiment's configs (and ensembles) into the tuned ones once its tuning runs
are in the store; `tuning_table` says what was chosen and from what. A grid of one rate sets that
rate and trains nothing extra.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd

from harness.config import RunConfig
from harness.errors import ConfigError
from harness.inference.ensembles import Ensemble
from harness.store.identity import run_id

TUNING_SEED = 2**62  # far from any study's seeds: tuning runs are never replicates
# a rate whose mean is within this many standard errors (of the per-seed differences) of the best
# mean is tied with it, and ties go to the smaller rate: a margin inside the tuning seeds' noise is
# not left for float rounding (a thread count) to decide. At 1.0 a CNN arm of placement still
# flipped between two thread counts (1.35 standard errors with one, -0.70 with two); at 2.0 with
# each arm's own 3-seed standard error another still did (-1.05 and 2.46), so the standard error
# is pooled over a study's arms (`_pooled_variance`).
TIE_SE = 2.0
TUNING_COLUMNS = [
    "arm",
    "model",
    "widths",
    "p_drop_input",
    "p_drop_hidden",
    "train_size",
    "run_id",
    "seed",
    "lr",
    "monitored",
    "val_loss",
    "val_error",
    "best_epoch",
    "stopped_by",
    "status",
    "mean_monitored",
    "margin",
    "margin_se",
    "se_df",
    "tuning_seeds",
    "tie",
    "chosen",
]


def tuning_seeds(profile: str) -> tuple[int, ...]:
    """The seeds every arm is tuned on: as many as the profile's TUNING_SEEDS, from TUNING_SEED."""
    from harness.sweep.profiles import TUNING_SEEDS

    return tuple(TUNING_SEED + i for i in range(TUNING_SEEDS[profile]))


def check_grid(grid, where: str) -> tuple[float, ...]:
    """The grid as a sorted tuple of distinct positive rates, or a ConfigError naming `where`."""
    try:
        rates = tuple(sorted({float(r) for r in grid}))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: lr_grid must be a list of positive numbers, got {grid!r}") from None
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise ConfigError(f"{where}: lr_grid must be a non-empty list of positive finite numbers, got {list(grid)!r}")
    return rates


def arm_key(cfg: RunConfig) -> str:
    """What an arm's runs share: the config without seed, learning rate and labels."""
    d = cfg.to_dict()
    for key in ("seed", "experiment", "profile", "device"):
        d.pop(key)
    d["train"].pop("lr")
    return json.dumps(d, sort_keys=True)


def arms(configs: list[RunConfig]) -> dict[str, list[RunConfig]]:
    """The configs grouped by arm, in order of first appearance."""
    out: dict[str, list[RunConfig]] = {}
    for c in configs:
        out.setdefault(arm_key(c), []).append(c)
    return out


def tuning_configs(configs: list[RunConfig], grid: tuple[float, ...]) -> list[RunConfig]:
    """Every arm at every tuning seed at every rate of the grid (nothing with a grid of one rate)."""
    if len(grid) < 2:
        return []
    return [
        runs[0].replace(seed=s, **{"train.lr": lr})
        for runs in arms(configs).values()
        for s in tuning_seeds(runs[0].profile)
        for lr in grid
    ]


def tuning_table(configs: list[RunConfig], grid: tuple[float, ...], store) -> pd.DataFrame:
    """One row per tuning run (columns TUNING_COLUMNS; `arm` numbers the arms in order), with the
    rate each arm chose (`monitored`: the arm's `train.monitor` at the kept checkpoint). A diverged
    run counts as infinitely bad; ties go to the smaller rate. Raises ConfigError listing the tuning runs the store
    lacks."""
    from harness.sweep.run import run_state

    tuning = tuning_configs(configs, grid)
    states = {run_id(c): run_state(store, run_id(c), leased={}) for c in tuning}
    lacking = [rid for rid, st in states.items() if st.row is None]
    damaged = [st.note for st in states.values() if st.state == "damaged"]
    if damaged:  # the note names the run, the file and the repair
        raise ConfigError(f"{len(damaged)} tuning runs (learning rate per arm) have damaged files, e.g. {damaged[0]}")
    if lacking:
        raise ConfigError(
            f"{len(lacking)} tuning runs (learning rate per arm) are not in the store {store.root}, e.g. "
            f"{lacking[0]}; run the study first (`python -m harness run experiments/STUDY.py`), which trains them "
            "before the other seeds"
        )
    rows = []
    for i, runs in enumerate(arms(configs).values()):
        for seed in tuning_seeds(runs[0].profile):
            first = runs[0].replace(seed=seed)
            for lr in grid:
                rid = run_id(first.replace(**{"train.lr": lr}))
                row = states[rid].row
                monitored = row[first.train.monitor]
                ok = row["status"] == "ok" and math.isfinite(monitored)
                m = first.model
                rows.append(
                    {
                        "arm": i,
                        "model": m.kind,
                        "widths": "x".join(map(str, m.widths)),
                        "p_drop_input": m.p_drop_input,
                        "p_drop_hidden": max(m.p_drop_hidden, default=0.0),
                        "train_size": first.data.train_size or 0,
                        "run_id": rid,
                        "seed": seed,
                        "lr": lr,
                        "monitored": monitored if ok else math.inf,
                        "val_loss": row["val_loss"],
                        "val_error": row["val_error"],
                        "best_epoch": row.get("best_epoch", 0),
                        "stopped_by": row.get("stopped_by", ""),
                        "status": row["status"],
                        "chosen": False,
                    }
                )
    table = pd.DataFrame(rows, columns=TUNING_COLUMNS)
    return _choose(table)


def _choose(table: pd.DataFrame) -> pd.DataFrame:
    """Per arm, the rate with the lowest mean monitored value over the tuning seeds (a diverged run
    is infinitely bad), or the smallest rate tied with it (within TIE_SE standard errors, from
    `_pooled_variance`; with one tuning seed, equal means only), marked `chosen` on its rows.
    Every row gets its rate's mean; the chosen rate's rows get the margin to the best of the other
    rates (its mean minus the chosen mean: negative when a tie gave the choice to a smaller rate),
    that margin's standard error (`margin_se`, NaN without degrees of freedom), the degrees of
    freedom behind it (`se_df`) and `tie`."""
    table = table.copy()
    table["mean_monitored"] = table.groupby(["arm", "lr"])["monitored"].transform("mean")
    table["tuning_seeds"] = table.groupby(["arm", "lr"])["seed"].transform("count")
    table["tie"] = False
    variance, dof = _pooled_variance(table)
    for _, g in table.groupby("arm"):
        means, ranked = _ranked(g)
        lowest = ranked[0]
        se = math.sqrt(variance / g.seed.nunique()) if dof else math.nan
        tied = [
            lr for lr in means.index if lr == lowest or means[lr] - means[lowest] <= TIE_SE * se
        ]  # NaN or inf: never tied
        best = min(tied)
        rows = g.index[g.lr == best]
        table.loc[rows, "chosen"] = True
        table.loc[rows, "tie"] = len(tied) > 1
        if len(means) < 2:
            continue
        runner = means.drop(best).sort_values(kind="stable").index[0]
        table.loc[rows, "margin"] = float(means[runner] - means[best])
        table.loc[rows, "margin_se"] = se
        table.loc[rows, "se_df"] = dof
    return table


def _ranked(arm: pd.DataFrame) -> tuple[pd.Series, pd.Index]:
    """One arm's mean monitored value per rate (by rate) and its rates from the lowest mean up;
    sorted by rate first, so equal means rank the smaller rate first."""
    means = arm.groupby("lr")["monitored"].mean().sort_index()
    return means, means.sort_values(kind="stable").index


def _pooled_variance(table: pd.DataFrame) -> tuple[float, int]:
    """The variance of a per-seed difference between two rates, pooled over the arms of the table
    (one study), and its degrees of freedom: each arm gives the differences between its runner-up
    rate and its lowest-mean rate over its tuning seeds (n - 1 degrees of freedom; none when either
    rate diverged on a seed). One arm's three tuning seeds give 2 degrees of freedom, and a
    standard error from 2 degrees of freedom is itself so noisy that float rounding (a thread
    count) moved a placement arm's margin from 1.05 of its own standard errors to 2.46, across the
    band; the arms of a study differ in one factor each and share the data, the model family and
    the grid, so their seed-to-seed noise is one quantity, estimated from all of them."""
    squares, dof = 0.0, 0
    for _, g in table.groupby("arm"):
        means, order = _ranked(g)
        if len(means) < 2:
            continue
        by_seed = g.pivot_table(index="seed", columns="lr", values="monitored", aggfunc="first")
        d = (by_seed[order[1]] - by_seed[order[0]]).to_numpy(dtype=float)
        if len(d) > 1 and np.isfinite(d).all():
            squares += float(((d - d.mean()) ** 2).sum())
            dof += len(d) - 1
    return (squares / dof if dof else math.nan), dof


def chosen_rates(configs: list[RunConfig], grid: tuple[float, ...], store) -> dict[str, float]:
    """{arm key: its rate}: the grid's only rate, or each arm's choice on validation."""
    if len(grid) < 2:
        return {key: grid[0] for key in arms(configs)}
    table = tuning_table(configs, grid, store)
    keys = list(arms(configs))
    return {keys[int(r.arm)]: float(r.lr) for r in table[table.chosen].itertuples()}


def apply_rates(configs: list[RunConfig], rates: dict[str, float]) -> list[RunConfig]:
    """Each config at its arm's rate."""
    return [c.replace(**{"train.lr": rates[arm_key(c)]}) for c in configs]


def remap_ensembles(ensembles: list[Ensemble], before: list[RunConfig], after: list[RunConfig]) -> list[Ensemble]:
    """Ensembles whose members name the tuned runs (`after[i]` is `before[i]` at its arm's rate)."""
    new = {run_id(b): run_id(a) for b, a in zip(before, after, strict=False)}
    return [replace(e, run_ids=tuple(new[r] for r in e.run_ids)) for e in ensembles]
