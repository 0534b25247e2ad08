"""The suite profiles (`harness.sweep.profiles`): each base config is the defaults plus the changes the
profile's docstring names, and nothing else; looks, replicates, grids and budgets per profile."""

import pytest

from harness.config import PROFILES, RunConfig
from harness.errors import ConfigError
from harness.sweep import profiles
from harness.sweep.profiles import base, budget_scale, looks, lr_grid, pick, replicates

# each profile's base config as its changes to RunConfig's defaults
CHANGES = {
    "smoke": {
        "data.name": "digits",
        "model.widths": [32, 32],
        "train.epochs": 2,
        "train.lr": 0.05,
        "train.select_on_val": True,
        "train.patience": 2,
    },
    "quick": {
        "data.name": "mnist5k",
        "model.widths": [256, 256],
        "train.epochs": 100,
        "train.lr": 0.05,
        "train.lr_decay": 0.95,
        "train.select_on_val": True,
        "train.patience": 8,
        "train.min_improvement": 0.001,
    },
    "paper": {
        "data.name": "mnist",
        "data.val_fraction": 10_000 / 60_000,  # the papers' 50,000 / 10,000 split of MNIST's training set
        "model.widths": [1024, 1024, 1024],
        "model.max_norm": 3.0,
        "train.epochs": 300,
        "train.lr": 0.1,
        "train.lr_decay": 0.99,
        "train.momentum": 0.5,
        "train.momentum_final": 0.99,
        "train.momentum_ramp_epochs": 100,
        "train.select_on_val": True,
        "train.patience": 50,
    },
}


@pytest.mark.parametrize("profile", sorted(CHANGES))
def test_a_base_is_the_defaults_with_the_profiles_changes(profile):
    assert base(profile) == RunConfig(profile=profile).replace(**CHANGES[profile])
    assert base(profile).experiment == "default" and base(profile).seed == 0 and base(profile).device == "cpu"


def test_every_profile_has_a_base_looks_a_grid_and_tuning_seeds():
    assert set(CHANGES) == set(PROFILES) == set(profiles.LOOKS) == set(profiles.LR_GRIDS) == set(profiles.TUNING_SEEDS)


def test_a_study_changes_a_copy_of_the_base_never_the_base():
    changed = base("quick").replace(seed=3, **{"model.widths": [8]})
    assert changed.seed == 3 and changed.model.widths == (8,)
    assert base("quick").seed == 0 and base("quick").model.widths == (256, 256)


def test_looks_and_replicates():
    assert [looks(p) for p in ("smoke", "quick", "paper")] == [(5,), (5, 10, 15), (5, 10, 20)]
    # an experiment lists the largest look's seeds
    assert replicates("smoke") == [0, 1, 2, 3, 4]
    assert replicates("quick") == list(range(15)) and replicates("paper") == list(range(20))


def test_learning_rate_grids_and_tuning_seeds():
    assert [lr_grid(p) for p in ("smoke", "quick", "paper")] == [(0.05,), (0.02, 0.05), (0.03, 0.1)]
    assert profiles.TUNING_SEEDS == {"smoke": 1, "quick": 3, "paper": 2}


def test_budget_scale_doubles_quick_budgets_on_mnist1d_and_digits_only():
    assert budget_scale("quick", "mnist1d") == budget_scale("quick", "digits") == 2
    assert budget_scale("quick", "mnist5k") == 1 and budget_scale("paper", "digits") == 1
    assert budget_scale("smoke", "digits") == 1


def test_pick_gives_the_profiles_value():
    assert [pick(p, smoke=1, quick=2, paper=3) for p in ("smoke", "quick", "paper")] == [1, 2, 3]


@pytest.mark.parametrize("fn", [base, looks, replicates, lr_grid])
def test_an_unknown_profile_is_refused_by_name(fn):
    with pytest.raises(ConfigError, match=r"profile='fast' is not known; allowed values: smoke, quick, paper"):
        fn("fast")
