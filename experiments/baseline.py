"""Baseline: the default dropout network and its no-dropout twin, equal in everything else.

Default network: MLP 784-1024-1024-10, ReLU, drop 0.2 at the input and 0.5 in the hidden layers,
max-norm 3, SGD with momentum 0.9, 20 epochs on mnist5k (3,600 training examples).
"""

from harness.config import RunConfig
from harness.sweep.profiles import base as profile_base

NAME = "baseline"
SEEDS = {"smoke": [0], "quick": [0], "paper": [0, 1, 2]}


def configs(profile: str = "quick") -> list[RunConfig]:
    # the canonical defaults of RunConfig; smoke and paper take their profile's data and network
    base = RunConfig() if profile == "quick" else profile_base(profile)
    runs = []
    for seed in SEEDS[profile]:
        runs.append(base.replace(seed=seed))
        runs.append(base.replace(seed=seed, **{"model.p_drop_input": 0.0, "model.p_drop_hidden": [0.0]}))
    return runs
