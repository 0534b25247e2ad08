"""Store: finished runs on disk, one folder per run named by its identity, and what guards them.

- `runs`: `RunStore`, the run folders (committed whole, files added and read checked against the
  manifest), with its `leases` and `failures`.
- `manifest`: each folder's manifest (sizes, SHA-256, evaluations) and the checks of files against it.
- `damage`: what is damaged, as data (`Damage`), and the words of its repair.
- `leases`: the per-run locks that let sweeps run side by side; `failures`: runs that raised.
- `identity`: a run's id, where config and data meet; `provenance`: what produced a run.
- `output_manifest`: the manifest of a folder of collected tables.

May import `harness.config`, `errors` and `files`, and `harness.data` for the identity only; never
`nets`, `inference`, `sweep`, `cli` or `bench`.
"""
