"""Study 4 (C3): features and sparsity with and without dropout (Srivastava et al. 2014 Figures 7, 8).

One hidden layer, so its units' incoming weights are image-sized features; activation statistics
(mean activation per unit, fraction of zero activations) come from the co-adaptation measures.
"""

from harness.inference.coadaptation import CoadaptSettings
from harness.sweep.evaluations import Evaluations
from harness.sweep.profiles import base, pick

NAME = "features"


def configs(profile: str):
    b = base(profile)
    width = pick(profile, smoke=32, quick=256, paper=1024)
    seeds = pick(profile, smoke=[0, 1], quick=[0, 1], paper=[0, 1, 2])
    return [
        b.replace(seed=s, **{"model.widths": [width], "model.p_drop_input": p_in, "model.p_drop_hidden": [p_hid]})
        for p_in, p_hid in ((0.0, 0.0), (0.2, 0.5))
        for s in seeds
    ]


def evaluations(profile: str) -> Evaluations:
    return Evaluations(coadapt=CoadaptSettings(n_pairs=pick(profile, smoke=10, quick=100, paper=500)))
