"""Checking a run store against its manifests and repairing it: ``python -m harness verify [--repair]``.

Like `git fsck`: every committed run folder's files are hashed and checked against the run's
manifest (`harness.store.runs`). With `repair`, what is damaged is repaired the way a sweep would:

- a run file (config, checkpoint, history, run row, provenance) or the manifest itself: the run is
  trained again, with the torch threads its provenance recorded, so that on CPU it is bit-identical
  to the run it replaces. Its config comes from its config.json when that file still names this run
  (its config hashes to the run id), else from the study under experiments/ that lists the run
  (`StudyIndex`); its evaluations are those it had, with the settings of their settings files when
  intact, else those of the studies listing it (with a damaged manifest, every evaluation those
  studies ask for). A run that no study lists and whose config.json is damaged is removed;
- a table or settings file of an evaluation: the evaluation is computed again, with the settings in
  its settings file when that file is intact, else with the settings of the study that asks for it;
  an evaluation no study asks for and whose settings file is damaged is dropped;
- a table of no evaluation (`RunStore.write_table`): removed.

After repairs, every study that lists a repaired run is checked for what its tables need (every run
trained, every evaluation there), and what is still missing is named with the command that brings it
back. Runs claimed by a live process (being trained or evaluated now) are neither checked nor
repaired, and named: `verify` then exits with SKIPPED, never 0.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.config import RunConfig, from_dict
from harness.errors import DataError, HarnessError, StoreError
from harness.store.identity import run_id
from harness.store.runs import MANIFEST, RUN_FILES, RunStore, owner_words
from harness.sweep.run import SETTINGS_FILES, Evaluations, run_state

WHOLE, DAMAGED, SKIPPED = 0, 1, 3  # exit statuses of `verify` (2 is bad input, as for every command)
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@dataclass
class Finding:
    """The damaged files of one run: damage is {file: what is wrong}; evaluations maps each
    damaged file of an evaluation to its kind (mc, coadapt, robustness)."""

    run_id: str
    damage: dict[str, str]
    evaluations: dict[str, str]

    @property
    def retrain(self) -> bool:
        """Whether a run file or the manifest is damaged: then the whole run is trained again."""
        return any(f in RUN_FILES or f == MANIFEST for f in self.damage)

    def lines(self) -> list[str]:
        out = []
        for name, what in self.damage.items():
            if name in RUN_FILES or name == MANIFEST:
                fix = "the run must be trained again; --repair does so from its config, or from the study that lists it"
            elif name in self.evaluations:
                fix = (
                    f"its {self.evaluations[name]} evaluation must be computed again; --repair does so with its "
                    "settings file, "
                    "or with the settings of the study that asks for it"
                )
            else:
                fix = "a table of no evaluation: --repair removes it"
            out.append(f"run {self.run_id}: {name}: {what} ({fix})")
        return out


def check_store(store: RunStore) -> tuple[list[Finding], list[str], list[str]]:
    """(findings for the damaged runs, ids of the runs checked, ids of runs skipped because a live
    process holds their claim)."""
    claimed = store.claimed()
    findings, checked, running = [], [], []
    for rid in store.run_ids():
        if rid in claimed:
            running.append(rid)
            continue
        checked.append(rid)
        finding = check_run(store, rid)
        if finding is not None:
            findings.append(finding)
    return findings, checked, running


def check_run(store: RunStore, run_id: str) -> Finding | None:
    damage = store.damage(run_id)
    if not damage:
        return None
    try:
        recorded = store.manifest(run_id)["evaluations"]
    except StoreError:
        recorded = {}
    kinds = {name: kind for kind, names in recorded.items() for name in names if name in damage}
    return Finding(run_id, damage, kinds)


def _under_claim(store: RunStore, finding: Finding, act) -> tuple[bool, str] | None:
    """Call `act()` under the run's claim if the run is still as `finding` saw it; None when it
    did, else the outcome to report (the run is busy, or another process repaired it)."""
    rid = finding.run_id
    if not store.claim(rid):
        return False, _busy(store, rid)
    try:
        if check_run(store, rid) != finding:  # changed since it was checked: another process repaired it
            return _outcome(store, None, rid, "")
        act()
    finally:
        store.release(rid)
    return None


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
            f"`python -m harness run experiments/{self.study}.py --profile {self.profile}{dataset}{looks} "
            f"--store {shlex.quote(str(store.root))}`"
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
        from harness.sweep.experiment import load_experiment, resolve
        from harness.sweep.profiles import looks
        from harness.sweep.setting import Setting

        runs: dict[str, list[Listing]] = {}
        seen = set()
        for profile, name in sorted(self._settings()):
            for dataset in (None, name):
                try:
                    dataset = Setting(profile, dataset).dataset
                except HarnessError:
                    continue
                if (profile, dataset) in seen:
                    continue
                seen.add((profile, dataset))
                for path in sorted(self.experiments.glob("[!_]*.py")):
                    try:
                        exp = load_experiment(path, profile, dataset)
                        if exp.skipped:
                            continue
                        listed = [(c, Evaluations()) for c in exp.tuning_configs()]
                        n_tuning = len(listed)
                        try:
                            listed += [(c, exp.evaluations) for c in resolve(exp, self.store).configs]
                        except HarnessError:  # the arms' rates are not chosen yet: the tuning runs are what it lists
                            pass
                        ids = [(run_id(c), c, ev) for c, ev in listed]
                        # per look, the runs of the first looks (the tuning runs in every one); the last, all
                        design, tuning = looks(profile), {run_id(c) for c in exp.tuning_configs()}
                        replicate = (
                            {run_id(c): exp.replicate_of(c) for c, _ in listed[n_tuning:]} if exp.replicate_of else {}
                        )
                        by_look = [
                            (
                                k,
                                {
                                    i: ev
                                    for i, _, ev in ids
                                    if i in tuning or (k == len(design) or replicate.get(i, 0) < n)
                                },
                            )
                            for k, n in enumerate(design, start=1)
                        ]
                    except HarnessError:  # a study that cannot be loaded here (its data absent) lists nothing here
                        continue
                    self.studies[(path.stem, profile, dataset)] = by_look
                    for rid, cfg, ev in ids:
                        runs.setdefault(rid, []).append(Listing(path.stem, profile, dataset, cfg, ev))
        return runs

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
                st = run_state(self.store, rid, ev, claimed={})
                if st.state != "done" or st.pending.kinds():
                    lacking.append(rid if st.state != "done" else f"{rid} ({', '.join(st.pending.kinds())})")
            if lacking:
                where = f"{profile}{', ' + dataset if dataset else ''}"
                shown = ", ".join(lacking[:3]) + (f" and {len(lacking) - 3} more" if len(lacking) > 3 else "")
                out.append(
                    f"still missing for the tables of {study} ({where}): {len(lacking)} "
                    f"run{'s' if len(lacking) > 1 else ''} not "
                    f"trained or lacking evaluations: {shown}; "
                    f"{listing.command(self.store, look if look < len(by_look) else None)} brings "
                    f"{'them' if len(lacking) > 1 else 'it'} back"
                )
        return out


def repair(
    store: RunStore, finding: Finding, threads: int | None = None, index: StudyIndex | None = None
) -> tuple[bool, str]:
    """Repair one damaged run (see the module's docstring): (whether it is whole now, what was
    done). `threads` overrides the torch threads recorded in the run's provenance; `index` (built
    here when not given) names the studies that list the run."""
    from harness.sweep.executors import run_sweep

    rid = finding.run_id
    index = index if index is not None else StudyIndex(store)
    intact = _intact_settings(store, finding)
    asked = index.wanted(rid)
    threads = threads or _recorded_threads(store, finding)
    if finding.retrain:
        cfg, why = _stored_config(store, rid)
        source = ""
        if cfg is None and index.listings(rid):
            listing = index.listings(rid)[0]
            cfg, source = (
                listing.config,
                f" from its config as study {listing.study} ({listing.profile}) lists it ({why})",
            )
        if cfg is None:
            early = _under_claim(store, finding, lambda: store.remove_run(rid))
            if early is not None:
                return early
            return True, (
                f"run {rid}: removed: {why}, and no study under experiments/ lists the run for the profiles and "
                "datasets of "
                "this store, so it cannot be trained again from here; the next sweep that lists the run trains it"
            )
        try:  # the evaluations the run had; with its manifest damaged, every one its studies ask for
            had = set(store.manifest(rid)["evaluations"])
        except StoreError:
            had = set(asked)
        evals = {k: v for k, v in asked.items() if k in had} | intact
        summary = run_sweep([cfg], store, evaluations=Evaluations(**evals), threads=threads)
        kept = f" with its {', '.join(sorted(evals))} evaluation{'s' if len(evals) > 1 else ''}" if evals else ""
        return _outcome(store, summary, rid, f"trained again{source}{kept}")
    damaged_kinds = set(finding.evaluations.values())
    redo = {kind: intact.get(kind, asked.get(kind)) for kind in damaged_kinds if kind in intact or kind in asked}
    dropped = sorted(kind for kind in damaged_kinds if kind not in intact)
    loose = [name for name in finding.damage if name not in finding.evaluations]
    if dropped or loose:

        def drop() -> None:
            for kind in dropped:
                store.drop_evaluation(rid, kind)
            for name in loose:
                store.drop_file(rid, name)

        early = _under_claim(store, finding, drop)
        if early is not None:
            return early
    gone = [kind for kind in dropped if kind not in redo]
    done = (
        [
            f"dropped its {', '.join(gone)} evaluation (its settings file is damaged and no study under experiments/ "
            "asks for it)"
        ]
        if gone
        else []
    ) + ([f"removed {', '.join(loose)}"] if loose else [])
    if redo:
        how = [
            f"computed its {k} evaluation again, with "
            f"{'its settings file' if k in intact else 'the settings of the study that asks for it'}"
            for k in sorted(redo)
        ]
        summary = run_sweep([store.load_config(rid)], store, evaluations=Evaluations(**redo), threads=threads)
        return _outcome(store, summary, rid, "; ".join(done + how))
    return store.damage(rid) == {}, f"run {rid}: " + "; ".join(done)


def _outcome(store: RunStore, summary, rid: str, what: str) -> tuple[bool, str]:
    """(whole, what was done) after a repair by `summary` (a sweep's), or by another process (None)."""
    if summary is not None and summary.failures:
        return False, f"run {rid}: not repaired: {summary.failures[0][1].splitlines()[0]}"
    if summary is not None and summary.skipped:
        return False, f"run {rid}: not repaired: {summary.skipped[0][1]}"
    left = store.damage(rid) if store.is_complete(rid) else {}
    if left:
        return False, f"run {rid}: still damaged after repair: {store.damage_message(rid, left)}"
    return True, f"run {rid}: {what or 'whole now (repaired by another process meanwhile)'}"


def _busy(store: RunStore, rid: str) -> str:
    who = store.claimed().get(rid, "another process")
    return f"run {rid}: not repaired: it is being trained or evaluated by {who}; verify again when it has finished"


def _intact_settings(store: RunStore, finding: Finding) -> dict:
    """{kind: settings} of the run's recorded evaluations whose settings file is intact (with a
    damaged manifest, none can be vouched for)."""
    try:
        recorded = store.manifest(finding.run_id)["evaluations"]
    except StoreError:
        return {}
    out = {}
    for kind in recorded:
        name = SETTINGS_FILES.get(kind)
        if name is None or name in finding.damage or name not in recorded[kind]:
            continue
        try:
            out[kind] = settings_from_json(kind, store.read_bytes(finding.run_id, name))
        except (StoreError, ValueError, TypeError):
            continue
    return out


def settings_from_json(kind: str, text: bytes | str):
    """The settings object of an evaluation kind from its settings file (`Evaluations.settings_json`);
    ValueError (ConfigError) or TypeError when the text does not hold such settings."""
    from harness.inference.coadaptation import CoadaptSettings
    from harness.inference.evaluation import MCSettings
    from harness.inference.robustness import RobustnessSettings

    cls = {"mc": MCSettings, "coadapt": CoadaptSettings, "robustness": RobustnessSettings}[kind]
    d = json.loads(text)
    settings = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    if Evaluations(**{kind: settings}).settings_json(kind) != (text.decode() if isinstance(text, bytes) else text):
        raise ValueError(f"{kind} settings do not round-trip")
    return settings


def _stored_config(store: RunStore, expected: str) -> tuple[RunConfig | None, str]:
    """The run's config from its config.json when that file still names this run (its resolved
    config hashes to the run id, which also catches damage the manifest cannot vouch for); else
    (None, why not)."""
    try:
        cfg = from_dict(json.loads((store.path(expected) / "config.json").read_bytes())["config"])
    except FileNotFoundError:
        return None, "its config.json is missing"
    except (OSError, ValueError, KeyError, TypeError) as exc:  # ValueError: not UTF-8, not JSON, or a ConfigError
        return None, f"its config.json is damaged ({type(exc).__name__})"
    try:
        rid = run_id(cfg)
    except DataError as exc:  # the data is not here: a retrain would fail too, and nothing is removed for it
        raise StoreError(f"run {expected}: cannot check its config.json against the run id: {exc}") from None
    if rid != expected:
        return None, f"its config.json names run {rid} (changed, or the data or FORMAT_VERSION differ)"
    return cfg, ""


def _recorded_threads(store: RunStore, finding: Finding) -> int | None:
    """The torch threads the run was trained with (equal threads give bit-identical runs)."""
    if "provenance.json" in finding.damage:
        return None
    try:
        threads = json.loads(store.read_bytes(finding.run_id, "provenance.json")).get("torch_threads")
    except (StoreError, ValueError, AttributeError):
        return None
    return threads if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0 else None


def verify(
    store: RunStore, do_repair: bool = False, threads: int | None = None, out=print, index: StudyIndex | None = None
) -> int:
    """Check every run of the store and print what is damaged (with `do_repair`, repair it, print
    what was done and what the studies listing the repaired runs still need): WHOLE (0) when every
    run was checked and is whole (and, after repairs, every such study's tables can be collected),
    DAMAGED (1) when damage or something a table needs remains, SKIPPED (3) when the rest is whole
    but runs held by a live process were not checked (they are named)."""
    findings, checked, running = check_store(store)
    claimed = store.claimed() if running else {}
    busy = f" ({len(running)} claimed by a live process, not checked)" if running else ""
    for f in findings:
        for line in f.lines():
            out(line)
    for rid in running:
        out(f"run {rid}: not checked: {_holder(store, rid, claimed.get(rid))}")
    if not findings:
        if running:
            out(
                f"{len(checked)} runs checked{busy}: the files checked match their manifests, but the store is not "
                "known to be whole"
            )
            return SKIPPED
        out(f"{len(checked)} runs checked: every file matches its run's manifest")
        return WHOLE
    retrain = sum(f.retrain for f in findings)
    evaluate = len(findings) - retrain
    out(
        f"{len(checked)} runs checked{busy}: {len(findings)} damaged ({retrain} to train again, {evaluate} with "
        "evaluations to compute again "
        "or tables to remove)"
    )
    if not do_repair:
        out(
            f"repair: `python -m harness verify --repair --store {shlex.quote(str(store.root))}`, or run the sweeps "
            "that list these runs again"
        )
        return DAMAGED
    index = index if index is not None else StudyIndex(store)
    had = {f.run_id: _recorded_kinds(store, f.run_id) for f in findings}
    left = 0
    for f in findings:
        try:
            whole, what = repair(store, f, threads, index)
        except HarnessError as exc:
            whole, what = False, f"run {f.run_id}: not repaired: {exc}"
        left += not whole
        out(what)
    # Studies are listed again now that their runs are whole: a damaged tuning run hid which rate
    # each arm chose, and so which evaluations its study asks of the runs it lists.
    index = StudyIndex(store, index.experiments)
    for f in findings:
        try:
            line = _complete(store, f.run_id, index, had[f.run_id], threads)
        except HarnessError as exc:
            line = f"run {f.run_id}: its evaluations not computed: {exc}"
        if line:
            out(line)
    missing = index.missing([f.run_id for f in findings])
    for line in missing:
        out(line)
    if left:
        out(f"{left} of {len(findings)} damaged runs are still damaged: see above")
        return DAMAGED
    if missing:
        out(
            f"repaired {len(findings)} runs, but the tables of {len(missing)} "
            f"stud{'ies' if len(missing) > 1 else 'y'} cannot be collected yet: "
            "run the commands above"
        )
        return DAMAGED
    if running:
        out(f"repaired {len(findings)} runs; the runs claimed by a live process were not checked (see above)")
        return SKIPPED
    out(
        f"repaired {len(findings)} runs: the store is whole, and the studies that list them have every run and "
        "evaluation their tables need"
    )
    return WHOLE


def _recorded_kinds(store: RunStore, rid: str) -> set[str] | None:
    """The evaluation kinds a run's manifest records; None when the manifest is damaged."""
    try:
        return set(store.manifest(rid)["evaluations"])
    except StoreError:
        return None


def _complete(store: RunStore, rid: str, index: StudyIndex, had: set[str] | None, threads: int | None) -> str | None:
    """After its repair, compute the evaluations of a run that the studies listing it ask for and
    that it had before the damage (every one they ask for when its manifest was damaged) but lacks
    now; what was done, or None when nothing was missing."""
    from harness.sweep.executors import run_sweep

    asked = {k: v for k, v in index.wanted(rid).items() if had is None or k in had}
    if not asked or not store.is_complete(rid):
        return None
    st = run_state(store, rid, Evaluations(**asked), claimed={})
    if st.state != "done" or not st.pending.kinds():
        return None
    todo = {k: asked[k] for k in st.pending.kinds()}
    threads = threads or _recorded_threads(store, Finding(rid, {}, {}))
    summary = run_sweep([store.load_config(rid)], store, evaluations=Evaluations(**todo), threads=threads)
    return _outcome(
        store,
        summary,
        rid,
        f"computed its {', '.join(todo)} evaluation{'s' if len(todo) > 1 else ''}, "
        "with the settings of the study that asks for it",
    )[1]


def _holder(store: RunStore, rid: str, owner: str | None) -> str:
    """Who holds a run that verify skipped, and how to clear the claim when that cannot be checked."""
    import socket

    who = owner_words(owner) if owner else "another process"
    path = shlex.quote(str(store.root / ".claims" / rid))
    if owner and owner != "unreadable" and who.split()[0] != socket.gethostname():
        return (
            f"claimed by {who} (a process of another host, which cannot be checked from here): verify again when it "
            "has "
            f"finished, or if that sweep is gone, remove its claim (`rm {path}`) and verify again"
        )
    if owner == "unreadable":
        return (
            f"its claim {path} cannot be read by this user: if no sweep is computing the run, remove it and verify "
            "again"
        )
    return f"being trained or evaluated by {who}: verify again when it has finished"
