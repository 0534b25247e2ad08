"""Study 7 (C7): where dropout goes in a CNN.

A LeNet-style CNN with no dropout, dropout after the fully connected layer only, and dropout after
every conv block as well. "everywhere" differs from "fc_only" only by the conv rates (inputs are
never dropped), so C7 compares one change. Each run is evaluated by weight scaling and by
Monte-Carlo averaging.
"""

from dataclasses import replace

from harness.inference.evaluation import MCSettings
from harness.sweep.evaluations import Evaluations
from harness.sweep.profiles import base, pick, replicates

NAME = "placement"
PLACEMENTS = {  # name: (p_drop_input, p_drop_conv, p_drop_hidden)
    "none": (0.0, [0.0, 0.0], [0.0]),
    "fc_only": (0.0, [0.0, 0.0], [0.5]),
    "everywhere": (0.0, [0.25, 0.25], [0.5]),
}


def configs(profile: str):
    b = base(profile)
    dataset = pick(profile, smoke="digits", quick="mnist5k", paper="cifar10")
    channels = pick(profile, smoke=[4, 8], quick=[8, 16], paper=[64, 128])
    fc = pick(profile, smoke=[32], quick=[64], paper=[1024, 1024])
    # budgets; early stopping ends most runs sooner. At quick 60, 20% of the CNN runs with block dropout at
    # lr 0.01 hit it (best epochs up to 57): 100, the quick profile's budget, leaves them room
    epochs = pick(profile, smoke=2, quick=100, paper=300)
    seeds = replicates(profile)  # the largest look's; `harness run --look K` runs the first K looks'
    return [
        b.replace(
            seed=s,
            **{
                "data.name": dataset,
                "model.kind": "cnn",
                "model.conv_channels": channels,
                "model.widths": fc,
                "model.p_drop_input": p_in,
                "model.p_drop_conv": p_conv,
                "model.p_drop_hidden": p_hid,
                "train.epochs": epochs,
            },
        )
        for p_in, p_conv, p_hid in PLACEMENTS.values()
        for s in seeds
    ]


def lr_grid(profile: str) -> list[float]:
    return pick(profile, smoke=[0.02], quick=[0.01, 0.03], paper=[0.01, 0.03])


def evaluations(profile: str) -> Evaluations:
    # weight scaling against the shared-mask average is the comparison; the per-example idiom is not needed here
    mc = pick(
        profile, smoke=MCSettings(T=5, streams=2), quick=MCSettings(T=20, streams=2), paper=MCSettings(T=500, streams=5)
    )
    return Evaluations(mc=replace(mc, per_example=False))
