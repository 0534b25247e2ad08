"""Study 2 (C5, C6): keep-probability sweep of the hidden layers (Srivastava et al. 2014 Figure 9).

(a) fixed width n; (b) fixed keep x n, so a layer that keeps fewer units is made wider. Inputs are
not dropped, so the sweep isolates the hidden rate. Train and test error for each keep.
"""

from harness.profiles import base, pick

NAME = "keep_sweep"
P_DROP = [0.0, 0.2, 0.4, 0.5, 0.6, 0.8]  # keep = 1.0, 0.8, 0.6, 0.5, 0.4, 0.2


def configs(profile: str):
    b = base(profile).replace(**{"model.p_drop_input": 0.0})
    n = pick(profile, smoke=32, quick=256, paper=2048)
    depth = pick(profile, smoke=2, quick=2, paper=3)
    seeds = pick(profile, smoke=[0], quick=[0, 1], paper=[0, 1, 2])
    runs = []
    for p in P_DROP:
        keep = 1.0 - p
        fixed_n = [n] * depth
        fixed_keep_n = [round(n / 2 / keep)] * depth  # keep x width = n/2 in every run
        for widths in (fixed_n, fixed_keep_n):
            for s in seeds:
                cfg = b.replace(seed=s, **{"model.widths": widths, "model.p_drop_hidden": [p]})
                if cfg not in runs:  # at keep 0.5 both designs are the same network
                    runs.append(cfg)
    return runs
