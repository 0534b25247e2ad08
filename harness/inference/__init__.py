"""Inference: what is computed on a trained net, as tidy tables.

- `evaluation`: the inference modes of one run (weight scaling, Monte Carlo dropout, exact
  enumeration of subnetworks), measured in one streaming pass.
- `robustness`: one run under distribution shift and on unseen classes.
- `ensembles`: deep ensembles of independently trained runs, evaluated from their members'
  stored predictions.
- `coadaptation`: whether dropout's units behave more independently, on held-out activations.

May import `harness.config`, `errors`, `progress`, `measures`, `stats`, `data`, `store` (run
identity only: `harness.store.identity`) and `nets`; never `harness.sweep`, `cli` or `bench`.
"""
