"""The sweep: from experiment files to finished runs in the store, and what that costs.

- `experiment`: experiment files (Python files under experiments/ that list their configs, seeds
  included), loaded for a profile, a dataset and a look; `studies`: the studies' list, in report order.
- `profiles`: the profiles' shared starting configs, looks and learning-rate grids; `setting`: one
  profile's studies moved onto one dataset; `tuning`: each arm's learning rate, chosen on validation.
- `plan`, `cost`, `rates`: what a profile costs before anything is trained (FLOPs, and the device's
  measured rates that turn them into time).
- `run`: one run, dataset to stored tables; `evaluations`: the evaluation kinds measured on a trained
  run; `executors`: a list of configs run locally, in processes or on a cluster (`tasks`: its units of
  work and tally; `dispatch`: the three ways to compute them; `waiting`: waiting for runs another
  process holds).
- `verify`: a run store checked against its manifests; `repair`: a damaged run repaired as a sweep
  would; `study_index`: which studies list each run.

May import every lower layer: `harness.config`, `errors`, `files`, `progress`, `measures`, `stats`,
`data`, `store`, `nets` and `inference`; never `harness.cli` or `harness.bench`.
"""
