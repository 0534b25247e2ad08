"""Study 9 (C9): is dropout a good ensemble? Its subnetworks against independently trained networks.

Per replicate r, M networks without dropout and M with dropout (the profile's base recipe, one
change: the drop rates), trained from seeds r * M ... r * M + M - 1. Each replicate gives a deep
ensemble of each (M members, weight-scaled), and every dropout net is also evaluated by averaging
its subnetworks (mc_shared, mc_per_example) at k = M (equal members), at equal test-time compute
(k subnetworks costing the multiply-adds of M full passes) and at k = T, and by weight scaling with
and without temperature scaling. Error, NLL, ECE, Brier and the loss decomposition (member loss,
diversity) of every ensemble, on the test split and (study `shift`, the same runs) on shifted and
unseen data. Replicates are the M-seed groups (an ensemble is one replicate): as many as the
profile's largest look (`harness.sweep.profiles.LOOKS`), run look by look like every study's seeds.
"""

from dataclasses import replace

from harness.data.shifts import ANGLES, CORRUPTIONS, unseen_available
from harness.inference.ensembles import ensembles_of, member_configs
from harness.inference.robustness import RobustnessSettings
from harness.sweep.evaluations import Evaluations
from harness.sweep.profiles import base, pick, replicates

NAME = "ensemble_vs_dropout"


def members(profile: str) -> int:
    return pick(profile, smoke=2, quick=5, paper=10)


def configs(profile: str):
    b = base(profile)
    arms = [b, b.replace(**{"model.p_drop_input": 0.0, "model.p_drop_hidden": [0.0]})]  # dropout, and its twin without
    return [c for arm in arms for c in member_configs(arm, members(profile), len(replicates(profile)))]


def replicate(profile: str, cfg) -> int:
    """The replicate a run belongs to: its ensemble, the M-seed group r * M ... r * M + M - 1."""
    return cfg.seed // members(profile)


def ensembles(profile: str, runs=None):
    """Deep ensembles of `runs` (default: this study's configs), M seeds each."""
    return ensembles_of(configs(profile) if runs is None else runs, members(profile))


def evaluations(profile: str) -> Evaluations:
    shape = pick(profile, smoke=(1, 8, 8), quick=(1, 28, 28), paper=(1, 28, 28))
    settings = pick(
        profile,
        smoke=RobustnessSettings(
            T=6, members=2, angles=(0, 90, 180), corruptions=("shot_noise", "centre_band"), severities=(2,)
        ),
        # the per-example idiom (4 times the cost of shared masks here) on the test split and its rotations only
        quick=RobustnessSettings(
            T=20,
            members=5,
            angles=ANGLES,
            corruptions=tuple(CORRUPTIONS),
            severities=(1, 3),
            per_example=("none", "rotation"),
        ),
        paper=RobustnessSettings(
            T=100, members=10, angles=ANGLES, corruptions=tuple(CORRUPTIONS), severities=(1, 2, 3)
        ),
    )
    # Fashion-MNIST joins the unseen sets where its files are in data/ (`make data`)
    return Evaluations(robustness=replace(settings, members=members(profile), unseen=unseen_available(shape)))
