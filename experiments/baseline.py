"""Baseline: the default dropout network and its no-dropout twin, equal in everything else.

Default network: MLP 784-1024-1024-10, ReLU, drop 0.2 at the input and 0.5 in the hidden layers,
max-norm 3, SGD with momentum 0.9, 20 epochs on mnist5k (3,600 training examples).
"""

from harness.config import RunConfig

NAME = "baseline"
SEEDS = {"smoke": [0], "quick": [0], "paper": [0, 1, 2]}


def configs(profile: str = "quick") -> list[RunConfig]:
    base = RunConfig(experiment=NAME)
    if profile == "smoke":
        base = base.replace(**{"model.widths": [64, 64], "train.epochs": 2})
    if profile == "paper":
        base = base.replace(**{"data.name": "mnist", "model.widths": [1024, 1024, 1024], "train.epochs": 100})
    runs = []
    for seed in SEEDS[profile]:
        runs.append(base.replace(seed=seed))
        runs.append(base.replace(seed=seed, **{"model.p_drop_input": 0.0, "model.p_drop_hidden": [0.0]}))
    return runs
