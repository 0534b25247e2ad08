"""Learning rate per arm, chosen on validation (harness.tuning)."""

import textwrap

import pytest

from harness.cli import main
from harness.errors import ConfigError
from harness.experiment import load_experiment, resolve
from harness.tuning import TUNING_SEED, arm_key, check_grid, tuning_configs, tuning_table
from harness.identity import run_id

EXPERIMENT = '''
"""Two arms, two seeds each, tuned over two rates."""
from harness.config import RunConfig

NAME = "tune_t"


def configs(profile):
    b = RunConfig().replace(**{"data.name": "digits", "model.widths": [16], "train.epochs": 2, "train.select_on_val": True})
    return [b.replace(seed=s, **{"model.p_drop_input": 0.0, "model.p_drop_hidden": [p]}) for p in (0.0, 0.5) for s in (3, 4)]


def lr_grid(profile):
    return [0.1, 0.001]
'''


@pytest.fixture
def experiment(tmp_path):
    path = tmp_path / "tune_t.py"
    path.write_text(textwrap.dedent(EXPERIMENT))
    return path


def test_each_arm_takes_the_rate_with_the_lowest_validation_loss(experiment, tmp_path, capsys):
    store_dir = tmp_path / "store"
    exp = load_experiment(experiment, "smoke")
    assert exp.lr_grid == (0.001, 0.1)
    tuning = exp.tuning_configs()
    # each arm at the tuning seed, which is none of its replicates, at both rates
    s = TUNING_SEED
    assert sorted((c.seed, c.train.lr, c.model.p_drop_hidden[0]) for c in tuning) == [(s, 0.001, 0.0), (s, 0.001, 0.5), (s, 0.1, 0.0), (s, 0.1, 0.5)]
    from harness.store import RunStore

    store = RunStore(store_dir)
    with pytest.raises(ConfigError, match="4 tuning runs"):
        resolve(exp, store)
    assert main(["run", str(experiment), "--profile", "smoke", "--store", str(store_dir), "--executor", "local"]) == 0
    out = capsys.readouterr().out
    assert "tuning the learning rate of each arm over 0.001, 0.1 on validation: 4 runs: 4 computed" in out
    table = tuning_table(exp.configs, exp.lr_grid, store)
    assert len(table) == 4 and table.groupby("arm").chosen.sum().tolist() == [1, 1] and set(table.seed) == {TUNING_SEED}
    for _, arm in table.groupby("arm"):  # the chosen rate has the lowest validation loss of its arm (two epochs: 0.1 beats 0.001)
        assert arm.loc[arm.chosen, "monitored"].item() == arm.val_loss.min() and arm.loc[arm.chosen, "lr"].item() == 0.1
    tuned = resolve(exp, store)
    assert {c.train.lr for c in tuned.configs} == {0.1} and [c.seed for c in tuned.configs] == [3, 4, 3, 4]
    # no replicate is a tuning run: all four replicates were trained after tuning
    assert not set(table.run_id) & {run_id(c) for c in tuned.configs} and "4 runs: 4 computed, 0 cached" in out
    assert main(["status", str(experiment), "--profile", "smoke", "--store", str(store_dir)]) == 0
    assert "4 runs: 4 done" in capsys.readouterr().out


def test_arms_ignore_seed_and_rate_and_grids_are_checked():
    from harness.config import RunConfig

    a = RunConfig()
    assert arm_key(a) == arm_key(a.replace(seed=7, **{"train.lr": 0.3})) != arm_key(a.replace(**{"model.widths": [8]}))
    assert tuning_configs([a], (0.05,)) == []  # one rate: nothing to tune
    assert check_grid([0.1, 0.05, 0.1], "x") == (0.05, 0.1)
    for bad in ([], [0.0], [-1], ["a"], [float("nan")]):
        with pytest.raises(ConfigError, match="lr_grid"):
            check_grid(bad, "experiments/x.py")
