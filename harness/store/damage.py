"""Damage found in a run folder, as data (`Damage`), and the words that tell a user how to repair it.

The store finds damage (`RunStore.damage`, `RunStore.damage_record`) and raises `DamageError` when a
damaged file is read; this module only formats: `damage_text` names the run, the files, what is wrong
and the repair (`python -m harness verify --repair`, or the sweep again) that fits what is damaged.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.errors import StoreError
from harness.store.manifest import MANIFEST, RUN_FILES


@dataclass(frozen=True)
class Damage:
    """The damaged files of one run: files is {file: what is wrong} (the first is the one a message
    names first); kinds maps each damaged file of an evaluation to its kind (mc, coadapt,
    robustness); root is the run store."""

    root: Path
    run_id: str
    files: dict[str, str]
    kinds: dict[str, str]

    @property
    def retrain(self) -> bool:
        """Whether a run file or the manifest is damaged: then the whole run is trained again."""
        return any(f in RUN_FILES or f == MANIFEST for f in self.files)


class DamageError(StoreError):
    """A damaged file of a run was read: `damage` says which and what is wrong; the message
    (`damage_text`) says how to repair it."""

    def __init__(self, damage: Damage):
        super().__init__(damage_text(damage))
        self.damage = damage

    def __reduce__(self):  # rebuilt from the record, so that it crosses process boundaries (pools, Ray)
        return (DamageError, (self.damage,))


def verify_command(root: Path) -> str:
    """The command that checks and repairs the store at `root`, quoted for a message."""
    return f"`python -m harness verify --repair --store {shlex.quote(str(root))}`"


def damage_text(damage: Damage) -> str:
    """What is wrong with a run's files and how to repair it, for users: the run is retrained
    when a run file or its manifest is damaged (the first file named), an evaluation is computed
    again when one of its files is."""
    (first, what), *rest = damage.files.items()
    also = "".join(f", and {name} ({w})" for name, w in rest)
    verify = verify_command(damage.root)
    kind = damage.kinds.get(first)
    if first in RUN_FILES or first == MANIFEST:
        fix = (
            f"; repair: {verify} retrains the run (from its config.json, or from the study under experiments/ that "
            "lists it when that file is damaged too), as does running its sweep again (or retrain the run with "
            "--force)"
        )
    elif kind is not None:
        fix = (
            f", so its {kind} evaluation is pending; repair: {verify} computes it again (with its settings file, or "
            "the settings of the study that asks for it when that file is damaged), as does running its sweep again"
        )
    else:
        fix = f"; repair: {verify} removes it"
    return f"run {damage.run_id}: {first} is damaged ({what}){also}{fix}"


def unreadable_config_text(run_id: str, folder: Path, name: str, error: str) -> str:
    """A run's config.json that matches its manifest but holds no config of this harness."""
    return (
        f"run {run_id}: {name} is damaged or missing ({error}); retrain the run: `python -m harness run "
        f"EXPERIMENT_FILE --force`, or delete {folder} and run the sweep again"
    )


def unreadable_table_text(run_id: str, folder: Path, name: str, error: str) -> str:
    """A run's table that matches its manifest but cannot be read (written by another pyarrow?)."""
    return (
        f"run {run_id}: {name}.parquet cannot be read ({error}); retrain the run with --force, or delete {folder} "
        "and run the sweep again"
    )


def damaged_checkpoint_text(run_id: str, folder: Path | str, error: str) -> str:
    """Checkpoint bytes torch cannot load: how to retrain the run (never torch's hint to load it unsafely)."""
    return (
        f"the checkpoint of run {run_id} is damaged ({error}); retrain the run with --force (`python -m harness run "
        f"EXPERIMENT_FILE --force`, or `train ... --force` with its settings), or delete {folder or 'its folder'} "
        "and run the sweep again"
    )
