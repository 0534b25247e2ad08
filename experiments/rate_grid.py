"""Study 6 (C5): drop rate at the input against drop rate in the hidden layers.

C5 compares the recommended rates (0.2 input, 0.5 hidden) with the cell of lowest validation error,
on test error, per seed.
"""

from harness.sweep.profiles import base, replicates

NAME = "rate_grid"
P_DROP_INPUT = [0.0, 0.2, 0.5]
P_DROP_HIDDEN = [0.0, 0.5, 0.75]


def configs(profile: str):
    b = base(profile)
    seeds = replicates(profile)  # the largest look's; `harness run --look K` runs the first K looks'
    return [
        b.replace(seed=s, **{"model.p_drop_input": pi, "model.p_drop_hidden": [ph]})
        for pi in P_DROP_INPUT
        for ph in P_DROP_HIDDEN
        for s in seeds
    ]
