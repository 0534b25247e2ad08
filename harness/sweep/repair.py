"""Repairing one damaged run the way a sweep would (`repair`), for ``python -m harness verify --repair``.

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

`complete` then computes the evaluations a repaired run had and lacks now. Every change is made under
the run's lease, and only if the run is still as it was found (another process may have repaired it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from harness.config import RunConfig, from_dict
from harness.errors import DataError, StoreError
from harness.store.damage import Damage, damage_text
from harness.store.identity import run_id
from harness.store.runs import RunStore
from harness.sweep.evaluations import KINDS, SETTINGS_FILES, Evaluations
from harness.sweep.executors import run_sweep
from harness.sweep.run import run_state
from harness.sweep.study_index import StudyIndex
from harness.sweep.tasks import SweepSummary


def repair(
    store: RunStore, damage: Damage, threads: int | None = None, index: StudyIndex | None = None
) -> tuple[bool, str]:
    """Repair one damaged run (see the module's docstring): (whether it is whole now, what was
    done). `threads` overrides the torch threads recorded in the run's provenance; `index` (built
    here when not given) names the studies that list the run."""
    index = index if index is not None else StudyIndex(store)
    intact = _intact_settings(store, damage)
    threads = threads or _recorded_threads(store, damage.run_id, damage.files)
    if damage.retrain:
        return _retrain(store, damage, index, intact, threads)
    return _redo_evaluations(store, damage, index.wanted(damage.run_id), intact, threads)


def _retrain(store: RunStore, damage: Damage, index: StudyIndex, intact: dict, threads: int | None) -> tuple[bool, str]:
    """Train a run whose run file or manifest is damaged again, with the evaluations it had (or
    remove it when neither its config.json nor a study gives its config)."""
    rid = damage.run_id
    cfg, why = _stored_config(store, rid)
    source = ""
    if cfg is None and index.listings(rid):
        listing = index.listings(rid)[0]
        cfg, source = listing.config, f" from its config as study {listing.study} ({listing.profile}) lists it ({why})"
    if cfg is None:
        early = _under_lease(store, damage, lambda: store.remove_run(rid))
        if early is not None:
            return early
        return True, (
            f"run {rid}: removed: {why}, and no study under experiments/ lists the run for the profiles and datasets "
            "of this store, so it cannot be trained again from here; the next sweep that lists the run trains it"
        )
    asked = index.wanted(rid)
    try:  # the evaluations the run had; with its manifest damaged, every one its studies ask for
        had = set(store.manifest(rid)["evaluations"])
    except StoreError:
        had = set(asked)
    evals = {k: v for k, v in asked.items() if k in had} | intact
    summary = run_sweep([cfg], store, evaluations=Evaluations(**evals), threads=threads)
    kept = f" with its {', '.join(sorted(evals))} evaluation{'s' if len(evals) > 1 else ''}" if evals else ""
    return _outcome(store, summary, rid, f"trained again{source}{kept}")


def _redo_evaluations(
    store: RunStore, damage: Damage, asked: dict, intact: dict, threads: int | None
) -> tuple[bool, str]:
    """Compute a run's damaged evaluations again (with their settings files' settings, else those
    of the studies that ask for them), drop those no settings can be found for, and remove damaged
    tables of no evaluation."""
    rid = damage.run_id
    damaged_kinds = set(damage.kinds.values())
    redo = {kind: intact.get(kind, asked.get(kind)) for kind in damaged_kinds if kind in intact or kind in asked}
    dropped = sorted(kind for kind in damaged_kinds if kind not in intact)
    loose = [name for name in damage.files if name not in damage.kinds]
    if dropped or loose:

        def drop() -> None:
            for kind in dropped:
                store.drop_evaluation(rid, kind)
            for name in loose:
                store.drop_file(rid, name)

        early = _under_lease(store, damage, drop)
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


def check_run(store: RunStore, run_id: str) -> Damage | None:
    """What is damaged in one run (None: every file matches its manifest)."""
    damage = store.damage(run_id)
    return store.damage_record(run_id, damage) if damage else None


def complete(store: RunStore, rid: str, index: StudyIndex, had: set[str] | None, threads: int | None) -> str | None:
    """After its repair, compute the evaluations of a run that the studies listing it ask for and
    that it had before the damage (every one they ask for when its manifest was damaged) but lacks
    now; what was done, or None when nothing was missing."""
    asked = {k: v for k, v in index.wanted(rid).items() if had is None or k in had}
    if not asked or not store.is_complete(rid):
        return None
    st = run_state(store, rid, Evaluations(**asked), leased={})
    if st.state != "done" or not st.pending.kinds():
        return None
    todo = {k: asked[k] for k in st.pending.kinds()}
    threads = threads or _recorded_threads(store, rid, ())
    summary = run_sweep([store.load_config(rid)], store, evaluations=Evaluations(**todo), threads=threads)
    return _outcome(
        store,
        summary,
        rid,
        f"computed its {', '.join(todo)} evaluation{'s' if len(todo) > 1 else ''}, with the settings of the study "
        "that asks for it",
    )[1]


def recorded_kinds(store: RunStore, rid: str) -> set[str] | None:
    """The evaluation kinds a run's manifest records; None when the manifest is damaged."""
    try:
        return set(store.manifest(rid)["evaluations"])
    except StoreError:
        return None


def _under_lease(store: RunStore, damage: Damage, act: Callable[[], None]) -> tuple[bool, str] | None:
    """Call `act()` under the run's lease if the run is still as `damage` saw it; None when it
    did, else the outcome to report (the run is busy, or another process repaired it)."""
    rid = damage.run_id
    if not store.leases.take(rid):
        return False, _busy(store, rid)
    try:
        if check_run(store, rid) != damage:  # changed since it was checked: another process repaired it
            return _outcome(store, None, rid, "")
        act()
    finally:
        store.leases.release(rid)
    return None


def _outcome(store: RunStore, summary: SweepSummary | None, rid: str, what: str) -> tuple[bool, str]:
    """(whole, what was done) after a repair by `summary` (a sweep's), or by another process (None)."""
    if summary is not None and summary.failures:
        return False, f"run {rid}: not repaired: {summary.failures[0][1].splitlines()[0]}"
    if summary is not None and summary.skipped:
        return False, f"run {rid}: not repaired: {summary.skipped[0][1]}"
    left = store.damage(rid) if store.is_complete(rid) else {}
    if left:
        return False, f"run {rid}: still damaged after repair: {damage_text(store.damage_record(rid, left))}"
    return True, f"run {rid}: {what or 'whole now (repaired by another process meanwhile)'}"


def _busy(store: RunStore, rid: str) -> str:
    who = store.leases.owners().get(rid, "another process")
    return f"run {rid}: not repaired: it is being trained or evaluated by {who}; verify again when it has finished"


def _intact_settings(store: RunStore, damage: Damage) -> dict:
    """{kind: settings} of the run's recorded evaluations whose settings file is intact (with a
    damaged manifest, none can be vouched for)."""
    try:
        recorded = store.manifest(damage.run_id)["evaluations"]
    except StoreError:
        return {}
    out = {}
    for kind in recorded:
        name = SETTINGS_FILES.get(kind)
        if name is None or name in damage.files or name not in recorded[kind]:
            continue
        try:
            out[kind] = settings_from_json(kind, store.read_bytes(damage.run_id, name))
        except (StoreError, ValueError, TypeError):
            continue
    return out


def settings_from_json(kind: str, text: bytes | str):
    """The settings object of an evaluation kind from its settings file (`Evaluations.settings_json`);
    ValueError (ConfigError) or TypeError when the text does not hold such settings."""

    cls = KINDS[kind].settings
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


def _recorded_threads(store: RunStore, rid: str, damaged: Iterable[str]) -> int | None:
    """The torch threads the run was trained with (equal threads give bit-identical runs); None
    when its provenance.json is among the `damaged` files or does not say."""
    if "provenance.json" in damaged:
        return None
    try:
        threads = json.loads(store.read_bytes(rid, "provenance.json")).get("torch_threads")
    except (StoreError, ValueError, AttributeError):
        return None
    return threads if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0 else None
