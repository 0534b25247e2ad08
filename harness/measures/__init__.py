"""Measures: pure functions of predictions and labels, on numpy arrays or torch tensors.

- `metrics`: metrics of predictive distributions (error, NLL, Brier, ECE, entropy, KL, ...) and
  their streaming versions for growing ensembles.
- `ood`: out-of-distribution scores and how well they separate unseen inputs.
- `calibration`: temperature scaling, fitted on held-out data (ECE is a metric of `metrics`).
- `diversity`: exact decompositions of an ensemble's loss into its members' and their diversity.

May import numpy, scipy, scikit-learn and torch, and nothing of the harness (the lowest layer
above config, errors, files and progress, beside `harness.stats`).
"""
