"""Dropout research harness: trains dropout networks, samples their subnetworks, compares the
ensemble with weight-scaled inference and measures co-adaptation.

Packages by stage of the pipeline, each importing only from the layers below it (bottom to top):

- `errors`, `files`, `progress`, `config`: errors with exit codes, atomic files, progress bars, run configs;
- `measures` (metrics, OOD scores, calibration, diversity) and `stats` (intervals, verdicts, the sequential
  design): pure functions of arrays;
- `data`: the datasets, their files, splits, shifts and stand-ins;
- `store`: the run store (run folders, manifests, leases, provenance) and a run's identity;
- `nets`: models, training, subnetworks, torch's own dropout modules;
- `inference`: what is measured on a trained net (inference modes, robustness, ensembles, co-adaptation);
- `sweep`: experiment files, studies, profiles, settings, tuning, evaluation kinds, the plan, running and
  verifying sweeps;
- `cli` (`python -m harness`) and `bench`, at the top.
"""

__version__ = "0.1.0"
