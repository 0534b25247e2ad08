"""Which studies under experiments/ list each run of a store (`StudyIndex`), and the command that
brings a study's runs back (`Listing.command`): how `verify --repair` finds the config of a run whose
config.json is damaged, the settings of an evaluation whose settings file is, and which studies' tables
a repair must leave collectable.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.config import RunConfig
from harness.errors import HarnessError
from harness.store.identity import run_id
from harness.store.runs import RunStore
from harness.sweep.evaluations import Evaluations
from harness.sweep.run import run_state

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@dataclass(frozen=True)
class Listing:
    """One study that lists a run: in which setting (profile and dataset) and with which evaluations."""

    study: str
    profile: str
    dataset: str | None  # the setting's dataset (None: the study's own)
    config: RunConfig
    evaluations: Evaluations

    def command(self, store: RunStore, look: int | None = None) -> str:
        """The sweep that trains and evaluates this study's runs in `store` (those of its first
        `look` looks; None: every run it lists)."""
        dataset = f" --dataset {shlex.quote(self.dataset)}" if self.dataset else ""
        looks = f" --look {look}" if look else ""
        return (
            f"`python -m harness run experiments/{self.study}.py --profile {self.profile}{dataset}{looks} --store "
            f"{shlex.quote(str(store.root))}`"
        )


class StudyIndex:
    """Which studies under experiments/ list each run, for the profiles and datasets of the runs in
    a store: how `repair` finds the config of a run whose config.json is damaged and the settings of
    an evaluation whose settings file is, and which studies' tables a repair must leave collectable.
    Built on first use (loading a study computes its runs' identities)."""

    def __init__(self, store: RunStore, experiments: Path | None = None):
        self.store, self.experiments = store, experiments or EXPERIMENTS
        self._runs: dict[str, list[Listing]] | None = None
        # (study, profile, dataset): per look of the profile, in order, {run id: its evaluations} of the
        # runs of the study's first looks (a study runs in looks: its later looks may never have run)
        self.studies: dict[tuple[str, str, str | None], list[tuple[int, dict[str, Evaluations]]]] = {}

    def listings(self, rid: str) -> list[Listing]:
        if self._runs is None:
            self._runs = self._build()
        return self._runs.get(rid, [])

    def _settings(self) -> set[tuple[str, str]]:
        """(profile, dataset) of every run whose config.json or run.parquet still reads (hints only:
        a run is matched by its identity, which the damage cannot fake)."""
        import io

        import pandas as pd

        out = set()
        for rid in self.store.run_ids():
            folder = self.store.path(rid)
            try:
                cfg = json.loads((folder / "config.json").read_bytes())["config"]
                out.add((cfg["profile"], cfg["data"]["name"]))
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pass
            try:
                row = pd.read_parquet(io.BytesIO((folder / "run.parquet").read_bytes())).iloc[0]
                out.add((str(row["profile"]), str(row["dataset"])))
            except Exception:  # damaged too: this run gives no hint, the others may
                pass
        return out

    def _build(self) -> dict[str, list[Listing]]:
        """{run id: the studies that list it}, filling `studies` on the way."""
        runs: dict[str, list[Listing]] = {}
        for profile, dataset in self._setting_keys():
            for path in sorted(self.experiments.glob("[!_]*.py")):
                listed = _study_runs(path, profile, dataset, self.store)
                if listed is None:
                    continue
                ids, self.studies[(path.stem, profile, dataset)] = listed
                for rid, cfg, ev in ids:
                    runs.setdefault(rid, []).append(Listing(path.stem, profile, dataset, cfg, ev))
        return runs

    def _setting_keys(self) -> list[tuple[str, str | None]]:
        """(profile, dataset) of the settings to load the studies in: for each of `_settings`, the
        profile's default dataset and the run's own, as the setting names it (None: the study's own)."""
        from harness.sweep.setting import Setting

        keys: list[tuple[str, str | None]] = []
        for profile, name in sorted(self._settings()):
            for dataset in (None, name):
                try:
                    dataset = Setting(profile, dataset).dataset
                except HarnessError:
                    continue
                if (profile, dataset) not in keys:
                    keys.append((profile, dataset))
        return keys

    def wanted(self, rid: str) -> dict:
        """{kind: settings} of the evaluations the studies listing the run ask for (the first study
        that asks decides; the shipped studies never ask one run for two settings of a kind)."""
        out = {}
        for listing in self.listings(rid):
            for kind in listing.evaluations.kinds():
                out.setdefault(kind, getattr(listing.evaluations, kind))
        return out

    def missing(self, rids: list[str]) -> list[str]:
        """For each study listing one of `rids` (the repaired runs) whose other runs are all in the
        store, at the largest look it has run: what its tables still need (runs not trained or damaged, evaluations
        missing), with the command that brings it back. A study with runs never trained here (another study's
        sweep shares a run with it, but it was never run itself) is not this repair's to report."""
        for rid in rids:
            self.listings(rid)
        out = []
        for (study, profile, dataset), by_look in self.studies.items():
            # the largest look the study has run: one that holds a run of the store beyond the look
            # before; at the first look, a study whose other runs are not all there never ran itself
            present = set(self.store.run_ids())
            look, wanted = next(
                ((k, w) for k, w in reversed(by_look) if k == 1 or (set(w) - set(by_look[k - 2][1])) & present),
                by_look[0],
            )
            if not set(wanted) & set(rids) or (
                look == 1 and any(not self.store.is_complete(r) for r in wanted if r not in rids)
            ):
                continue
            listing = next(
                x
                for rid in rids
                for x in self.listings(rid)
                if (x.study, x.profile, x.dataset) == (study, profile, dataset)
            )
            lacking = []
            for rid, ev in wanted.items():
                st = run_state(self.store, rid, ev, leased={})
                if st.state != "done" or st.pending.kinds():
                    lacking.append(rid if st.state != "done" else f"{rid} ({', '.join(st.pending.kinds())})")
            if lacking:
                where = f"{profile}{', ' + dataset if dataset else ''}"
                shown = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
                out.append(
                    f"still missing for the tables of {study} ({where}): {len(lacking)} "
                    f"run{'s' if len(lacking) > 1 else ''} not trained or lacking evaluations: {shown}; "
                    f"{listing.command(self.store, look if look < len(by_look) else None)} brings "
                    f"{'them' if len(lacking) > 1 else 'it'} back"
                )
        return out


def _study_runs(
    path: Path, profile: str, dataset: str | None, store: RunStore
) -> tuple[list[tuple[str, RunConfig, Evaluations]], list[tuple[int, dict[str, Evaluations]]]] | None:
    """The runs a study lists in a setting, as (run id, config, evaluations), and per look of the
    profile {run id: evaluations} of the runs of its first looks (the tuning runs in every one; the
    last look, all); None when the study is skipped there or cannot be loaded (its data absent)."""
    from harness.sweep.experiment import load_experiment, resolve
    from harness.sweep.profiles import looks

    try:
        exp = load_experiment(path, profile, dataset)
        if exp.skipped:
            return None
        listed = [(c, Evaluations()) for c in exp.tuning_configs()]
        n_tuning = len(listed)
        try:
            listed += [(c, exp.evaluations) for c in resolve(exp, store).configs]
        except HarnessError:  # the arms' rates are not chosen yet: the tuning runs are what it lists
            pass
        ids = [(run_id(c), c, ev) for c, ev in listed]
        design, tuning = looks(profile), {run_id(c) for c in exp.tuning_configs()}
        replicate = {run_id(c): exp.replicate_of(c) for c, _ in listed[n_tuning:]} if exp.replicate_of else {}
    except HarnessError:
        return None
    by_look = [
        (k, {i: ev for i, _, ev in ids if i in tuning or (k == len(design) or replicate.get(i, 0) < n)})
        for k, n in enumerate(design, start=1)
    ]
    return ids, by_look
