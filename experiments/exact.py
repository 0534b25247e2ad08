"""Study 8 (C2): a small net on real data whose 2^n subnetworks are all enumerated.

One hidden layer of n units with dropout 0.5 (inputs not dropped): the exact arithmetic and
geometric means of all 2^n subnetworks against weight scaling and against Monte-Carlo averages.
"""

from harness.inference.evaluation import MCSettings
from harness.sweep.evaluations import Evaluations
from harness.sweep.profiles import base, pick, replicates

NAME = "exact"


def configs(profile: str):
    b = base(profile)
    width = pick(profile, smoke=8, quick=16, paper=20)
    seeds = replicates(profile)  # the largest look's; `harness run --look K` runs the first K looks'
    return [
        b.replace(
            seed=s,
            **{
                "model.widths": [width],
                "model.p_drop_input": 0.0,
                "model.p_drop_hidden": [0.5],
                "model.max_norm": None,
            },
        )
        for s in seeds
    ]


def evaluations(profile: str) -> Evaluations:
    return Evaluations(
        mc=pick(
            profile,
            smoke=MCSettings(T=20, streams=3),
            quick=MCSettings(T=100, streams=3),
            paper=MCSettings(T=10000, streams=10),
        )
    )
