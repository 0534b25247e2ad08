"""Settings: every study on any dataset, adapted in words or skipped with its reason."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data import TEST_FRACTION, load_raw
from harness.experiment import load_experiment
from harness.setting import Setting, available_train, setting_name

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"


def test_setting_names_put_outputs_beside_the_default():
    assert setting_name("quick") == "quick" and setting_name("quick", "mnist5k") == "quick"  # the default itself
    assert setting_name("quick", "mnist1d") == "quick-mnist1d" and setting_name("paper", "mnist") == "paper-mnist"
    assert setting_name("smoke", "digits") == "smoke"
    s = Setting("quick", "some/dir/my data.npz")
    assert s.name == "quick-my_data" and Path(s.dataset).is_absolute()  # a .npz file is named by its stem, found by its full path


def test_make_routes_every_step_of_a_setting_to_its_own_folders():
    out = subprocess.run(["make", "-n", "all", "DATASET=mnist1d", "OUT=."], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "harness run experiments/placement.py --profile quick --dataset mnist1d" in out
    assert "analysis.tables placement --profile quick --dataset mnist1d" in out and "reports/quick-mnist1d/.runs/placement" in out
    assert "analysis.report --profile quick --dataset mnist1d" in out
    default = subprocess.run(["make", "-n", "all", "DATASET=mnist5k", "OUT=."], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "--dataset" not in default and "reports/quick/.runs/placement" in default  # the default's paths unchanged


def test_training_sizes_are_capped_at_the_examples_a_dataset_holds_and_said():
    exp = load_experiment(EXPERIMENTS / "data_size.py", "quick", "digits")
    pools = [n - round(TEST_FRACTION * n) for n in np.bincount(load_raw("digits").y)]  # the fixed 20% test split, per class
    have = available_train("digits", 0.1, 0)
    assert have == sum(p - round(0.1 * p) for p in pools)  # and 10% of each class's rest held out for validation
    sizes = sorted({c.data.train_size for c in exp.configs})
    assert sizes == [100, 1000, have] and all(c.data.name == "digits" for c in exp.configs)
    assert any(f"training sizes 3,600 capped at {have:,}, the training examples digits holds" in n for n in exp.notes)
    assert len(exp.configs) == 60  # nothing merged: 3 sizes x 2 widths x 2 arms x 5 seeds


def test_a_cnn_study_convolves_over_signals_and_is_skipped_on_flat_features(tmp_path):
    signal = load_experiment(EXPERIMENTS / "placement.py", "smoke", "mnist1d")
    assert signal.skipped is None and all(c.data.name == "mnist1d" and c.model.kind == "cnn" for c in signal.configs)
    assert any("1-D signals" in n for n in signal.notes)
    flat = tmp_path / "flat.npz"
    rng = np.random.default_rng(0)
    np.savez(flat, x=rng.normal(size=(120, 12)).astype(np.float32), y=np.arange(120) % 3)
    skipped = load_experiment(EXPERIMENTS / "placement.py", "smoke", str(flat))
    assert skipped.configs == [] and "flat features" in skipped.skipped
    mlp = load_experiment(EXPERIMENTS / "rate_grid.py", "smoke", str(flat))
    assert mlp.skipped is None and {c.data.name for c in mlp.configs} == {str(flat)}


def test_a_skipped_study_runs_nothing_and_says_why(tmp_path, capsys):
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=np.random.default_rng(0).normal(size=(120, 12)).astype(np.float32), y=np.arange(120) % 3)
    store = tmp_path / "store"
    assert main(["run", str(EXPERIMENTS / "placement.py"), "--profile", "smoke", "--dataset", str(flat), "--store", str(store)]) == 0
    assert "skipped: flat holds flat features" in capsys.readouterr().out and not store.exists()
