"""The evaluation kinds' one registry (`harness.sweep.evaluations.KINDS`): every stage reads it, and a new kind
is its own module plus one registry entry."""

import shutil
import subprocess
import sys
from pathlib import Path

from harness.inference.evaluation import MCSettings
from harness.sweep.evaluations import KINDS, SETTINGS_FILES, Evaluations, evaluation_files

ROOT = Path(__file__).resolve().parent.parent


def test_evaluations_has_one_field_per_kind_in_registry_order():
    assert list(Evaluations.__dataclass_fields__) == list(KINDS) == ["mc", "coadapt", "robustness"]
    assert SETTINGS_FILES == {k: f"{k}_settings.json" for k in KINDS}
    ev = Evaluations(robustness=KINDS["robustness"].settings(), mc=MCSettings(T=3))
    assert ev.kinds() == ["mc", "robustness"]  # registry order, not the order they were given in
    assert ev.settings_json("mc").startswith('{"T": 3, ')
    assert Evaluations() == Evaluations() and hash(Evaluations()) == hash(Evaluations())


def test_an_evaluations_object_survives_pickling_for_worker_processes():
    import pickle

    ev = Evaluations(mc=MCSettings(T=7))
    assert pickle.loads(pickle.dumps(ev)) == ev


def test_each_kinds_tables_come_before_its_settings_file():
    import torch

    from harness.config import DataConfig, ModelConfig
    from harness.data.datasets import load_dataset
    from harness.nets.models import build_model

    data = load_dataset(DataConfig(name="digits"))
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=(8,)), data.input_shape, data.n_classes).eval()
    files = evaluation_files("r0", model, data, Evaluations(mc=MCSettings(T=2, streams=1, per_example=False)))
    assert list(files) == ["evaluations.parquet", "subnetworks.parquet", "mc_settings.json"]


TOY_MODULE = '''
"""A toy evaluation kind: the mean weight-scaled logit per class."""
from dataclasses import dataclass

import pandas as pd
import torch


@dataclass(frozen=True)
class ToySettings:
    split: str = "test"


def toy_tables(model, data, settings, run_id):
    with torch.no_grad():
        logits = model(getattr(data, f"x_{settings.split}"))
    means = logits.mean(0).tolist()
    return {"toy": pd.DataFrame({"run_id": run_id, "cls": range(len(means)), "mean_logit": means})}
'''

TOY_COST = '''

def toy_work(settings, stages, kind, sizes):
    """One forward pass over the test split."""
    return Work().add(f"infer:{kind}", 2.0 * sizes.test, 1)
'''

TOY_RUN = """
import sys
from harness.config import RunConfig
from harness.inference.toy import ToySettings
from harness.store.runs import RunStore
from harness.sweep.evaluations import Evaluations
from harness.sweep.run import execute, run_state

cfg = RunConfig().replace(**{"data.name": "digits", "model.widths": [8], "train.epochs": 1, "train.lr": 0.05})
store = RunStore(sys.argv[1])
rid = execute(cfg, store, evaluations=Evaluations(toy=ToySettings())).run_id
print(store.manifest(rid)["evaluations"]["toy"])
print(store.read_table("toy", [rid]).shape)
print(run_state(store, rid, Evaluations(toy=ToySettings())).pending.kinds())
print(run_state(store, rid, Evaluations(toy=ToySettings(split="val"))).pending.kinds())
from harness.sweep.cost import Sizes
from harness.sweep.evaluations import evaluation_work
print(evaluation_work(Evaluations(toy=ToySettings()), [], "mlp", Sizes(80, 20, 30))["toy"].flops)
(store.path(rid) / "toy.parquet").write_bytes(b"damaged")
"""
TOY_READ = """
import sys
from harness.store.runs import RunStore

store = RunStore(sys.argv[1])
print(store.read_table("toy", store.run_ids()).shape)
"""


def test_a_new_kind_is_its_module_and_one_registry_entry(tmp_path):
    """In a copy of the harness: a toy kind added by writing its module, its cost and one line of KINDS is
    computed, recorded in the run's manifest, read back, pending again when its settings change, costed by the
    plan, and found damaged and computed again by `verify --repair`."""
    shutil.copytree(ROOT / "harness", tmp_path / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "harness" / "inference" / "toy.py").write_text(TOY_MODULE)
    cost = tmp_path / "harness" / "sweep" / "cost.py"
    cost.write_text(cost.read_text() + TOY_COST)
    registry = tmp_path / "harness" / "sweep" / "evaluations.py"
    text = registry.read_text()
    last = next(
        line for line in text.splitlines(keepends=True) if line.startswith('        EvaluationKind("robustness"')
    )
    assert text.count(last) == 1
    entry = '        EvaluationKind("toy", ToySettings, ("toy",), toy_tables, toy_work),\n'
    text = text.replace(last, last + entry)
    future = "from __future__ import annotations\n"
    imports = "from harness.inference.toy import ToySettings, toy_tables\nfrom harness.sweep.cost import toy_work\n"
    text = text.replace(future, future + imports, 1)
    registry.write_text(text)
    (tmp_path / "data").symlink_to(ROOT / "data")
    runs = str(tmp_path / "runs")

    def run(*args):  # in the copy: its harness comes first on the path
        return subprocess.run([sys.executable, *args], cwd=tmp_path, capture_output=True, text=True)

    out = run("-c", TOY_RUN, runs)
    assert out.returncode == 0, out.stderr
    manifest_files, shape, same, changed, flops = out.stdout.strip().splitlines()
    assert manifest_files == "['toy.parquet', 'toy_settings.json']"
    assert shape == "(10, 3)"  # digits: 10 classes
    assert same == "[]" and changed == "['toy']"
    assert flops == "{'infer:mlp': 60.0}"
    # its table damaged (by the script): verify finds it, --repair computes the toy evaluation again
    assert run("-m", "harness", "verify", "--store", runs).returncode == 1
    repair = run("-m", "harness", "verify", "--repair", "--store", runs)
    assert repair.returncode == 0, repair.stdout + repair.stderr
    assert run("-c", TOY_READ, runs).stdout.strip() == "(10, 3)"
