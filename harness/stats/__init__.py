"""Statistics: pure functions of arrays, from one value per replicate to a verdict.

- `intervals`: confidence intervals that hold their coverage, tests against a boundary, power,
  multiplicity adjustments (Holm), random-effects pooling across settings.
- `verdicts`: one claim row decided on its replicates' values (supported, contradicted, negligible,
  inconclusive).
- `sequential`: the group-sequential design a study's seeds are run in (looks, alpha spending,
  Holm across the family, conditional power); `simulation` checks its error rates by simulation.

May import numpy, scipy, pandas and statsmodels (pooling, imported lazily), and nothing of the
harness but `harness.errors`: no torch, no runs, no files.
"""
