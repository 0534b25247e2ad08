"""Study 2 (C6): keep-probability sweep of the hidden layers (Srivastava et al. 2014 Figure 9).

Figure 9's two designs: (a) fixed width n; (b) fixed keep x width = n / 2, so a layer that keeps
fewer units is made wider. C6 tests the rule "with dropout, widen by 1/keep" as a difference of
differences: at each keep below 1, the gain of widening n0 = n / 2 to n0 / keep with dropout minus
the gain of the same widening without dropout (widening helps without dropout too). So the study
also trains n0 at every keep and, without dropout, n0 / keep for every keep tested. Inputs are not
dropped, so the sweep isolates the hidden rate.
"""

from harness.sweep.profiles import base, pick, replicates

NAME = "keep_sweep"
P_DROP = [0.0, 0.5, 0.8]  # keep = 1.0, 0.5, 0.2 (three keeps: the quick profile spends its time on seeds)


def widened(n0: int, keep: float) -> int:
    """The width the rule asks for at this keep."""
    return round(n0 / keep)


def configs(profile: str):
    b = base(profile).replace(**{"model.p_drop_input": 0.0})
    n = pick(profile, smoke=32, quick=256, paper=2048)
    depth = pick(profile, smoke=2, quick=2, paper=3)
    seeds = replicates(profile)  # the largest look's; `harness run --look K` runs the first K looks'
    n0 = n // 2
    cells = []  # (p_drop, width)
    for p in P_DROP:
        keep = 1.0 - p
        cells += [(p, n), (p, widened(n0, keep)), (p, n0)]  # (a), (b) and C6's base arm
        cells += [(0.0, widened(n0, keep))]  # C6's control: the same widening without dropout
    runs = []
    for p, width in dict.fromkeys(cells):  # designs meet at keep 1 and 0.5
        runs += [b.replace(seed=s, **{"model.widths": [width] * depth, "model.p_drop_hidden": [p]}) for s in seeds]
    return runs
