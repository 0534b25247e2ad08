"""Study 2 (C6): keep-probability sweep of the hidden layers (Srivastava et al. 2014 Figure 9).

Figure 9's two designs: (a) fixed width n; (b) fixed keep x width = n / 2, so a layer that keeps
fewer units is made wider. C6 tests the rule as stated, at each keep below 1: the base width n / 2
against n / (2 keep), both at the same keep; design (b) is the widened arm, so the base arm adds one
run per keep. Inputs are not dropped, so the sweep isolates the hidden rate.
"""

from harness.profiles import base, pick

NAME = "keep_sweep"
P_DROP = [0.0, 0.5, 0.8]  # keep = 1.0, 0.5, 0.2 (three keeps: the quick profile spends its time on seeds)


def configs(profile: str):
    b = base(profile).replace(**{"model.p_drop_input": 0.0})
    n = pick(profile, smoke=32, quick=256, paper=2048)
    depth = pick(profile, smoke=2, quick=2, paper=3)
    seeds = pick(profile, smoke=[0, 1, 2, 3, 4], quick=[0, 1, 2, 3, 4], paper=[0, 1, 2, 3, 4])
    runs = []
    for p in P_DROP:
        keep = 1.0 - p
        fixed_n = [n] * depth  # (a)
        widened = [round(n / 2 / keep)] * depth  # (b): keep x width = n / 2; C6's widened arm
        base_width = [n // 2] * depth  # C6's base arm: the same keep at width n / 2
        for widths in (fixed_n, widened, base_width):
            for s in seeds:
                cfg = b.replace(seed=s, **{"model.widths": widths, "model.p_drop_hidden": [p]})
                if cfg not in runs:  # designs meet at keep 1 and 0.5
                    runs.append(cfg)
    return runs
