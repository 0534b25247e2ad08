"""The evaluation kinds: what is measured on a trained run, one registry that every stage reads.

A kind is computed on a finished run's network, stored in the run's folder as tables followed by its settings
file (`<name>_settings.json`, written last: tables whose settings file is present are complete), and costed by
the plan. `KINDS` holds, for each kind: its name (a field of `Evaluations` and the stem of its settings file), its
settings class, the tables the table collector takes from the store (`collected`), the function that computes its
tables (`compute`) and its work for the plan (`work`, `harness.sweep.cost`). The run (`harness.sweep.run`), the
store's verification (`harness.sweep.verify`), the plan and the table collector (`analysis.tables`) read it.

Adding a kind: its settings class and computation (a module of `harness.inference`), its cost (a function of
`harness.sweep.cost`) and one entry of `KINDS`; `Evaluations` gains the field by itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, make_dataclass

import pandas as pd

from harness.data.datasets import Dataset
from harness.errors import ConfigError
from harness.inference.coadaptation import COADAPT_TABLES, CoadaptSettings, analyze_model
from harness.inference.evaluation import MCSettings, evaluate_model
from harness.inference.robustness import RobustnessSettings, evaluate_robustness
from harness.nets.models import DropoutNet
from harness.store.manifest import SETTINGS_SUFFIX
from harness.store.runs import table_bytes
from harness.sweep.cost import coadapt_work, mc_work, robustness_work

# the robustness evaluation's tables that a study collects; `predictions` stays in the store (the ensembles of
# `harness.inference.ensembles` are built from it when the tables are collected)
ROBUSTNESS_TABLES = ("shift", "ood", "entropy_hist")


def _mc(model: DropoutNet, data: Dataset, s: MCSettings, run_id: str) -> dict[str, pd.DataFrame]:
    x, y = getattr(data, f"x_{s.split}"), getattr(data, f"y_{s.split}")
    if len(y) == 0:
        raise ConfigError(f"split={s.split} of run {run_id} is empty; use split=test")
    ev, subs = evaluate_model(model, x, y, s, run_id)
    return {"evaluations": ev, "subnetworks": subs}


def _coadapt(model: DropoutNet, data: Dataset, c: CoadaptSettings, run_id: str) -> dict[str, pd.DataFrame]:
    x, y = getattr(data, f"x_{c.split}"), getattr(data, f"y_{c.split}")
    return analyze_model(model, x, y, run_id, n_pairs=c.n_pairs, seed=c.seed)


@dataclass(frozen=True)
class EvaluationKind:
    """name: the field of `Evaluations` and the stem of the settings file; settings: its settings class;
    collected: the tables a study's table collector takes from the store; compute(model, data, settings,
    run_id) -> {table name: table}; work(settings, stages, net kind, sizes) -> its `harness.sweep.cost.Work`."""

    name: str
    settings: type
    collected: tuple[str, ...]
    compute: Callable[[DropoutNet, Dataset, object, str], dict[str, pd.DataFrame]]
    work: Callable

    @property
    def settings_file(self) -> str:
        return self.name + SETTINGS_SUFFIX


KINDS: dict[str, EvaluationKind] = {
    k.name: k
    for k in (
        EvaluationKind("mc", MCSettings, ("evaluations", "subnetworks"), _mc, mc_work),
        EvaluationKind("coadapt", CoadaptSettings, COADAPT_TABLES, _coadapt, coadapt_work),
        EvaluationKind("robustness", RobustnessSettings, ROBUSTNESS_TABLES, evaluate_robustness, robustness_work),
    )
}
SETTINGS_FILES = {name: kind.settings_file for name, kind in KINDS.items()}


def _settings_json(self, kind: str) -> str:
    return json.dumps(asdict(getattr(self, kind)), sort_keys=True)


def _kinds(self) -> list[str]:
    """The kinds asked for, in registry order."""
    return [k for k in KINDS if getattr(self, k) is not None]


# What to measure on a finished run: one optional settings object per kind of `KINDS` (None: not asked), e.g.
# `Evaluations(mc=MCSettings(), robustness=RobustnessSettings())`. Each is cached in the run's folder under its
# own settings. The class is made from the registry, so that a new kind needs no edit here.
Evaluations = make_dataclass(
    "Evaluations",
    [(name, f"{kind.settings.__name__} | None", None) for name, kind in KINDS.items()],
    frozen=True,
    namespace={
        "settings_json": _settings_json,
        "kinds": _kinds,
        "__doc__": "What to measure on a finished run: one settings object per evaluation kind of "
        "`harness.sweep.evaluations.KINDS`, None where it is not asked for.",
    },
)
Evaluations.__module__ = __name__  # pickled by reference to this module (make_dataclass's module= is 3.12+)


def evaluation_files(run_id: str, model: DropoutNet, data: Dataset, evaluations: Evaluations) -> dict[str, bytes]:
    """The tables of each requested evaluation, each kind's followed by its settings file (written last, so that
    tables whose settings file is present are complete)."""
    files: dict[str, bytes] = {}
    for name in evaluations.kinds():
        kind = KINDS[name]
        tables = kind.compute(model, data, getattr(evaluations, name), run_id)
        files |= {f"{table}.parquet": table_bytes(df) for table, df in tables.items()}
        files[kind.settings_file] = evaluations.settings_json(name).encode()
    return files


def evaluation_work(evaluations: Evaluations, stages: list, net: str, sizes) -> dict:
    """{evaluation kind: its `harness.sweep.cost.Work`} for one trained run."""
    return {name: KINDS[name].work(getattr(evaluations, name), stages, net, sizes) for name in evaluations.kinds()}
