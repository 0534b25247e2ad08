"""Settings: every study on any dataset, adapted in words or skipped with its reason."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data.datasets import load_raw
from harness.data.splits import TEST_FRACTION
from harness.sweep.experiment import load_experiment
from harness.sweep.profiles import looks
from harness.sweep.setting import Setting, available_train, setting_name

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"


def test_setting_names_put_outputs_beside_the_default():
    assert setting_name("quick") == "quick" and setting_name("quick", "mnist5k") == "quick"  # the default itself
    assert setting_name("quick", "mnist1d") == "quick-mnist1d" and setting_name("paper", "mnist") == "paper-mnist"
    assert setting_name("smoke", "digits") == "smoke"
    s = Setting("quick", "some/dir/my data.npz")
    assert (
        s.name.startswith("quick-my_data-") and Path(s.dataset).is_absolute()
    )  # a .npz file is named by its stem, found by its full path
    assert Setting("quick", "other/dir/my data.npz").name != s.name  # two files of one name: two settings, never mixed
    out = subprocess.run(
        ["make", "-n", "all", f"DATASET={ROOT / 'missing.npz'}"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode != 0 and "missing.npz: no such file" in out.stderr


def test_make_routes_every_step_of_a_setting_to_its_own_folders():
    out = subprocess.run(
        ["make", "-n", "all", "DATASET=mnist1d", "OUT=."], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert (
        "analysis.looks placement --profile quick --dataset 'mnist1d' --stamp" in out
    )  # one shell word, whatever the path holds
    assert (
        "analysis.tables placement --profile quick --dataset 'mnist1d'" in out
        and "reports/quick-mnist1d/.runs/placement" in out
    )
    assert "analysis.report --profile quick --dataset 'mnist1d'" in out
    default = subprocess.run(
        ["make", "-n", "all", "DATASET=mnist5k", "OUT=."], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "--dataset" not in default and "reports/quick/.runs/placement" in default  # the default's paths unchanged


def test_training_sizes_are_capped_at_the_examples_a_dataset_holds_and_said():
    exp = load_experiment(EXPERIMENTS / "data_size.py", "quick", "digits")
    pools = [
        n - round(TEST_FRACTION * n) for n in np.bincount(load_raw("digits").y)
    ]  # the fixed 20% test split, per class
    have = available_train("digits", 0.1, 0)
    assert have == sum(p - round(0.1 * p) for p in pools)  # and 10% of each class's rest held out for validation
    sizes = sorted({c.data.train_size for c in exp.configs})
    assert sizes == [100, 1000, have] and all(c.data.name == "digits" for c in exp.configs)
    assert any(f"training sizes 3,600 capped at {have:,}, the training examples digits holds" in n for n in exp.notes)
    n = looks("quick")[-1]
    assert (
        exp.replicates == n and len(exp.configs) == 3 * 2 * 2 * n
    )  # nothing merged: 3 sizes x 2 widths x 2 arms x n seeds


def test_a_settings_budget_is_scaled_and_said_with_the_same_learning_rate_at_every_step():
    from harness.nets.training import learning_rate
    from harness.sweep.profiles import BUDGET_SCALE

    k = BUDGET_SCALE["quick"]["digits"]
    assert k > 1 and BUDGET_SCALE["quick"].get("mnist5k", 1) == 1
    default = load_experiment(EXPERIMENTS / "data_size.py", "quick")
    digits = load_experiment(EXPERIMENTS / "data_size.py", "quick", "digits")
    assert {c.train.steps for c in digits.configs} == {
        k * c.train.steps for c in default.configs
    }  # steps fixed by the study
    assert {c.train.epochs for c in digits.configs} == {k * c.train.epochs for c in default.configs}
    assert any(f"training budgets {k}x the profile's" in n for n in digits.notes)
    assert not any("training budgets" in n for n in default.notes)
    by_epochs = load_experiment(EXPERIMENTS / "placement.py", "quick", "mnist1d").configs[0].train
    assert by_epochs.epochs == k * load_experiment(EXPERIMENTS / "placement.py", "quick").configs[0].train.epochs
    old, new = default.configs[0].train, digits.configs[0].train
    for step in (0, 1, 17, 1000, old.steps - 1):  # the same rate at every step the old budget reached
        assert learning_rate(new, step / new.steps) == pytest.approx(learning_rate(old, step / old.steps), rel=1e-12)


def test_a_cnn_study_convolves_over_signals_and_is_skipped_on_flat_features(tmp_path):
    signal = load_experiment(EXPERIMENTS / "placement.py", "smoke", "mnist1d")
    assert signal.skipped is None and all(c.data.name == "mnist1d" and c.model.kind == "cnn" for c in signal.configs)
    assert any("1-D signals" in n for n in signal.notes)
    flat = tmp_path / "flat.npz"
    rng = np.random.default_rng(0)
    np.savez(flat, x=rng.normal(size=(120, 12)).astype(np.float32), y=np.arange(120) % 3)
    skipped = load_experiment(EXPERIMENTS / "placement.py", "smoke", str(flat))
    assert skipped.configs == [] and "flat features" in skipped.skipped
    thin = tmp_path / "thin.npz"
    np.savez(thin, x=rng.normal(size=(120, 3, 30)).astype(np.float32), y=np.arange(120) % 3)  # 3 x 30 images
    assert "too small" in load_experiment(EXPERIMENTS / "placement.py", "smoke", str(thin)).skipped
    mlp = load_experiment(EXPERIMENTS / "rate_grid.py", "smoke", str(flat))
    assert mlp.skipped is None and {c.data.name for c in mlp.configs} == {str(flat)}


def test_a_skipped_study_runs_nothing_and_says_why(tmp_path, capsys):
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=np.random.default_rng(0).normal(size=(120, 12)).astype(np.float32), y=np.arange(120) % 3)
    store = tmp_path / "store"
    assert (
        main(
            [
                "run",
                str(EXPERIMENTS / "placement.py"),
                "--profile",
                "smoke",
                "--dataset",
                str(flat),
                "--store",
                str(store),
            ]
        )
        == 0
    )
    assert "skipped: flat.npz holds flat features" in capsys.readouterr().out and not store.exists()


def _broken(tmp_path):
    """One .npz file per class of defect, and the words its error must use."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 8, 8)).astype(np.float32), np.arange(60) % 3
    nan = x.copy()
    nan[3, 2, 1] = np.nan
    cases = {
        "missing_y.npz": (dict(x=x), "y"),
        "lengths.npz": (dict(x=x, y=y[:50]), "50"),
        "nonfinite.npz": (dict(x=nan, y=y), "NaN"),
        "float_labels.npz": (dict(x=x, y=y + 0.5), "integers"),
        "from_one.npz": (dict(x=x, y=y + 1), "0"),
        "pickled.npz": (dict(x=x, y=np.array([{"a": 1}] * 60, dtype=object)), "pickle"),
    }
    for name, (arrays, _) in cases.items():
        np.savez(tmp_path / name, **arrays)
    return {tmp_path / name: word for name, (_, word) in cases.items()}


def test_a_broken_npz_exits_2_naming_the_file_and_the_problem_and_writes_nothing(tmp_path, capsys):
    store = tmp_path / "store"
    for path, word in _broken(tmp_path).items():
        code = main(
            [
                "run",
                str(EXPERIMENTS / "rate_grid.py"),
                "--profile",
                "smoke",
                "--dataset",
                str(path),
                "--store",
                str(store),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and path.name in err and word in err, (path.name, err)
        assert not store.exists()


def test_a_users_npz_runs_a_study_through_its_tables(tmp_path, monkeypatch):
    """Flat features: a whole study (smoke design) trains, evaluates and is collected, in its own setting's folders."""
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(3, 10)) * 4
    y = np.arange(300) % 3
    np.savez(tmp_path / "blobs.npz", x=(centers[y] + rng.normal(size=(300, 10))).astype(np.float32), y=y)
    monkeypatch.setenv("HARNESS_OUT", str(tmp_path / "out"))
    store = str(tmp_path / "store")
    data = str(tmp_path / "blobs.npz")
    assert (
        main(
            [
                "run",
                str(EXPERIMENTS / "exact.py"),
                "--profile",
                "smoke",
                "--dataset",
                data,
                "--store",
                store,
                "--executor",
                "local",
            ]
        )
        == 0
    )
    from analysis.tables import main as tables_main

    assert tables_main(["exact", "--profile", "smoke", "--dataset", data, "--store", store]) == 0
    import pandas as pd

    folder = tmp_path / "out" / "reports" / setting_name("smoke", data) / "tables" / "exact"
    runs = pd.read_parquet(folder / "runs.parquet")
    assert (
        len(runs) == 5 and set(runs.dataset) == {str(tmp_path / "blobs.npz")} and runs.test_error.mean() < 0.5
    )  # chance is 2/3
    assert len(pd.read_parquet(folder / "evaluations.parquet"))


def test_a_collection_leaves_only_its_own_tables_and_says_how_the_study_was_adapted(tmp_path):
    import json

    import pandas as pd

    from analysis.tables import write

    runs = pd.DataFrame({"run_id": ["a"]})
    write({"runs": runs, "ood": runs}, tmp_path, {"dataset": "mnist1d", "skipped": None, "notes": ["n"]})
    assert (
        json.loads((tmp_path / "adaptation.json").read_text())["notes"] == ["n"]
        and (tmp_path / "ood.parquet").is_file()
    )
    write({"runs": runs}, tmp_path)  # the study's own data now: no adaptation, and no table of the earlier collection
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "runs.parquet"]
