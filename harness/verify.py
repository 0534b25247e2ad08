"""Checking a run store against its manifests and repairing it: ``python -m harness verify [--repair]``.

Like `git fsck`: every committed run folder's files are hashed and checked against the run's
manifest (`harness.store`). With `repair`, what is damaged is repaired the way a sweep would:

- a run file (config, checkpoint, history, run row, provenance) or the manifest itself: the run is
  trained again from its stored config.json when that file still names this run (its config hashes
  to the run id), with the evaluations whose settings files are intact and the torch threads its
  provenance recorded, so that on CPU it is bit-identical to the run it replaces. Otherwise the run
  folder is removed, and the next sweep that lists the run trains it;
- a table or settings file of an evaluation: the evaluation is computed again with the settings in
  its settings file when that file is intact; otherwise the evaluation is dropped, and the next
  sweep that asks for it computes it;
- a table of no evaluation (`RunStore.write_table`): removed.

Runs claimed by a live process (being trained or evaluated now) are neither checked nor repaired.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from .config import RunConfig, from_dict
from .errors import DataError, HarnessError, StoreError
from .identity import run_id
from .run import SETTINGS_FILES, Evaluations
from .store import MANIFEST, RUN_FILES, RunStore


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
                fix = "the run must be trained again"
            elif name in self.evaluations:
                fix = f"its {self.evaluations[name]} evaluation must be computed again"
            else:
                fix = "a table of no evaluation: to be removed"
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


def repair(store: RunStore, finding: Finding, threads: int | None = None) -> tuple[bool, str]:
    """Repair one damaged run (see the module's docstring): (whether it is whole now, what was
    done). `threads` overrides the torch threads recorded in the run's provenance."""
    from .executors import run_sweep

    rid = finding.run_id
    intact = _intact_settings(store, finding)
    threads = threads or _recorded_threads(store, finding)
    if finding.retrain:
        cfg, why = _stored_config(store, rid)
        if cfg is None:
            early = _under_claim(store, finding, lambda: store.remove_run(rid))
            if early is not None:
                return early
            return True, (f"run {rid}: removed: {why}, so the run cannot be trained again from it; "
                          "the next sweep that lists the run trains it")
        summary = run_sweep([cfg], store, evaluations=Evaluations(**intact), threads=threads)
        kept = f" with its {', '.join(intact)} evaluation{'s' if len(intact) > 1 else ''}" if intact else ""
        return _outcome(store, summary, rid, f"trained again{kept}")
    redo = {kind for kind in finding.evaluations.values() if kind in intact}
    dropped = sorted({kind for kind in finding.evaluations.values() if kind not in intact})
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
    done = ([f"dropped its {', '.join(dropped)} evaluation (its settings file is damaged; the next sweep that asks for it computes it)"] if dropped else []) \
        + ([f"removed {', '.join(loose)}"] if loose else [])
    if redo:
        summary = run_sweep([store.load_config(rid)], store, evaluations=Evaluations(**{k: intact[k] for k in redo}), threads=threads)
        return _outcome(store, summary, rid, "; ".join(done + [f"computed its {', '.join(sorted(redo))} evaluation again"]))
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
    return f"run {rid}: not repaired: it is being trained or evaluated by {store.claimed().get(rid, 'another process')}; verify again when it has finished"


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
    from .coadaptation import CoadaptSettings
    from .evaluation import MCSettings
    from .robustness import RobustnessSettings

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


def verify(store: RunStore, do_repair: bool = False, threads: int | None = None, out=print) -> int:
    """Check every run of the store and print what is damaged (with `do_repair`, repair it and
    print what was done): 0 when the store is whole, 1 when damage remains."""
    findings, checked, running = check_store(store)
    busy = f" ({len(running)} being trained or evaluated now, not checked: {', '.join(running)})" if running else ""
    for f in findings:
        for line in f.lines():
            out(line)
    if not findings:
        out(f"{len(checked)} runs checked{busy}: every file matches its run's manifest")
        return 0
    retrain = sum(f.retrain for f in findings)
    evaluate = len(findings) - retrain
    out(f"{len(checked)} runs checked{busy}: {len(findings)} damaged ({retrain} to train again, {evaluate} with evaluations to compute again "
        "or tables to remove)")
    if not do_repair:
        out(f"repair: `python -m harness verify --repair --store {shlex.quote(str(store.root))}`, or run the sweeps that list these runs again")
        return 1
    left = 0
    for f in findings:
        try:
            whole, what = repair(store, f, threads)
        except HarnessError as exc:
            whole, what = False, f"run {f.run_id}: not repaired: {exc}"
        left += not whole
        out(what)
    if left:
        out(f"{left} of {len(findings)} damaged runs are still damaged: see above")
        return 1
    out(f"repaired {len(findings)} runs: the store is whole")
    return 0
