"""Study 10 (C10): calibration under distribution shift and detection of unseen classes.

The runs, ensembles and evaluations of study `ensemble_vs_dropout` (nothing is trained twice):
every inference mode of the dropout nets, temperature-scaled weight scaling and deep ensembles,
on the test split rotated from 0 to 180 degrees in 15-degree steps (Ovadia et al. 2019), on
MNIST-C-style corruptions (Mu and Gilmer 2019) and on unseen inputs (permuted digits, natural
image patches, Fashion-MNIST where present). Error, NLL, ECE, Brier and entropy against shift
intensity; AUROC, AUPR and FPR at 95% TPR of each uncertainty score against the unseen sets.
"""

from harness.sweep.experiment import sibling

_design = sibling(__file__, "ensemble_vs_dropout")

NAME = "shift"
configs = _design.configs
ensembles = _design.ensembles
replicate = _design.replicate
evaluations = _design.evaluations
lr_grid = getattr(_design, "lr_grid", None)
