"""Study 5 (C3): co-adaptation with and without dropout and across hidden rates.

Correlation, DeCov, effective rank and ablation interaction of the hidden layers, seeds per rate
in looks (`harness.sweep.profiles.LOOKS`), inputs not dropped so that only the hidden rate varies.
"""

from harness.inference.coadaptation import CoadaptSettings
from harness.sweep.evaluations import Evaluations
from harness.sweep.profiles import base, pick, replicates

NAME = "coadaptation"
P_DROP_HIDDEN = [0.0, 0.2, 0.5]


def configs(profile: str):
    b = base(profile).replace(**{"model.p_drop_input": 0.0})
    widths = pick(profile, smoke=[16, 16], quick=[256, 256], paper=[1024, 1024])
    seeds = replicates(profile)  # the largest look's; `harness run --look K` runs the first K looks'
    return [
        b.replace(seed=s, **{"model.widths": widths, "model.p_drop_hidden": [p]}) for p in P_DROP_HIDDEN for s in seeds
    ]


def evaluations(profile: str) -> Evaluations:
    return Evaluations(coadapt=CoadaptSettings(n_pairs=pick(profile, smoke=10, quick=200, paper=1000)))
