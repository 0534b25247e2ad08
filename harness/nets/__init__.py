"""nets: the networks and how they are trained and sampled.

`models` (DropoutNet: MLPs and CNNs with a dropout site before each layer, their conventions and
max-norm), `training` (the seeded training loop, schedules, early stopping), `subnetworks`
(weight-scaled inference and Monte-Carlo subnetworks, of a DropoutNet or any torch classifier),
`torch_sites` (the dropout modules of any torch model and how each is sampled) with `attention`
(attention dropout as one shared mask). May import harness.config, errors, progress, measures and
data only.
"""
