"""Study 1 (C1, C2): Monte-Carlo averaging of subnetworks against weight scaling.

Srivastava et al. 2014 Figure 11 and Ma et al. 2017 Table 1: error, NLL and ECE of the average of k
sampled subnetworks for k = 1 ... T, against the weight-scaled network; the inference gap; single
subnetworks' errors against their ensemble's. The quick profile trains one architecture with five
seeds (seeds are the replicates; architectures are averaged within a seed).
"""

from harness.inference.evaluation import MCSettings
from harness.sweep.evaluations import Evaluations
from harness.sweep.profiles import base, pick, replicates

NAME = "mc_vs_ws"


def configs(profile: str):
    b = base(profile)
    architectures = pick(profile, smoke=[(32,), (32, 32)], quick=[(512, 512)], paper=[(1024, 1024, 1024), (4096, 4096)])
    seeds = replicates(profile)  # the largest look's; `harness run --look K` runs the first K looks'
    return [b.replace(seed=s, **{"model.widths": list(w)}) for w in architectures for s in seeds]


def evaluations(profile: str) -> Evaluations:
    return Evaluations(
        mc=pick(
            profile,
            smoke=MCSettings(T=10, streams=2),
            quick=MCSettings(T=100, streams=2),
            paper=MCSettings(T=1000, streams=5),
        )
    )
