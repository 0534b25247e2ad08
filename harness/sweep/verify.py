"""Checking a run store against its manifests and repairing it: ``python -m harness verify [--repair]``.

Like `git fsck`: every committed run folder's files are hashed and checked against the run's
manifest (`harness.store.manifest`), and each damaged file is named with what is wrong and how it is
repaired. With `repair`, what is damaged is repaired the way a sweep would (`harness.sweep.repair`):
a damaged run file or manifest retrains the run, a damaged evaluation file computes that evaluation
again, a damaged table of no evaluation is removed.

After repairs, every study that lists a repaired run is checked for what its tables need (every run
trained, every evaluation there; `harness.sweep.study_index`), and what is still missing is named
with the command that brings it back. Runs leased by a live process (being trained or evaluated now)
are neither checked nor repaired, and named: `verify` then exits with SKIPPED, never 0.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Callable

from harness.errors import HarnessError
from harness.store.damage import Damage, verify_command
from harness.store.leases import owner_words
from harness.store.manifest import MANIFEST, RUN_FILES
from harness.store.runs import RunStore
from harness.sweep.repair import check_run, complete, recorded_kinds, repair
from harness.sweep.study_index import StudyIndex

WHOLE, DAMAGED, SKIPPED = 0, 1, 3  # exit statuses of `verify` (2 is bad input, as for every command)


def damage_lines(damage: Damage) -> list[str]:
    """One line per damaged file of a run: what is wrong and how `--repair` repairs it."""
    out = []
    for name, what in damage.files.items():
        if name in RUN_FILES or name == MANIFEST:
            fix = "the run must be trained again; --repair does so from its config, or from the study that lists it"
        elif name in damage.kinds:
            fix = (
                f"its {damage.kinds[name]} evaluation must be computed again; --repair does so with its settings "
                "file, or with the settings of the study that asks for it"
            )
        else:
            fix = "a table of no evaluation: --repair removes it"
        out.append(f"run {damage.run_id}: {name}: {what} ({fix})")
    return out


def check_store(store: RunStore) -> tuple[list[Damage], list[str], list[str]]:
    """(the damage of each damaged run, ids of the runs checked, ids of runs skipped because a live
    process holds their lease)."""
    leased = store.leases.owners()
    findings, checked, running = [], [], []
    for rid in store.run_ids():
        if rid in leased:
            running.append(rid)
            continue
        checked.append(rid)
        finding = check_run(store, rid)
        if finding is not None:
            findings.append(finding)
    return findings, checked, running


def verify(
    store: RunStore, do_repair: bool = False, threads: int | None = None, out=print, index: StudyIndex | None = None
) -> int:
    """Check every run of the store and print what is damaged (with `do_repair`, repair it, print
    what was done and what the studies listing the repaired runs still need): WHOLE (0) when every
    run was checked and is whole (and, after repairs, every such study's tables can be collected),
    DAMAGED (1) when damage or something a table needs remains, SKIPPED (3) when the rest is whole
    but runs held by a live process were not checked (they are named)."""
    findings, checked, running = check_store(store)
    leased = store.leases.owners() if running else {}
    busy = f" ({len(running)} leased by a live process, not checked)" if running else ""
    for f in findings:
        for line in damage_lines(f):
            out(line)
    for rid in running:
        out(f"run {rid}: not checked: {_holder(store, rid, leased.get(rid))}")
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
        "evaluations to compute again or tables to remove)"
    )
    if not do_repair:
        out(f"repair: {verify_command(store.root)}, or run the sweeps that list these runs again")
        return DAMAGED
    return _repair_all(store, findings, bool(running), threads, out, index)


def _repair_all(
    store: RunStore,
    findings: list[Damage],
    running: bool,
    threads: int | None,
    out: Callable[[str], object],
    index: StudyIndex | None,
) -> int:
    """Repair every damaged run, complete the evaluations they had, and name what the studies
    listing them still need: `verify`'s exit status after repairs."""
    index = index if index is not None else StudyIndex(store)
    had = {f.run_id: recorded_kinds(store, f.run_id) for f in findings}
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
            line = complete(store, f.run_id, index, had[f.run_id], threads)
        except HarnessError as exc:
            line = f"run {f.run_id}: its evaluations not computed: {exc}"
        if line:
            out(line)
    missing = index.missing([f.run_id for f in findings])
    for line in missing:
        out(line)
    return _after_repairs(len(findings), left, missing, running, out)


def _after_repairs(n: int, left: int, missing: list[str], running: bool, out: Callable[[str], object]) -> int:
    """The closing line and exit status after repairing `n` runs, `left` of them still damaged."""
    if left:
        out(f"{left} of {n} damaged runs are still damaged: see above")
        return DAMAGED
    if missing:
        out(
            f"repaired {n} runs, but the tables of {len(missing)} stud{'ies' if len(missing) > 1 else 'y'} cannot be "
            "collected yet: run the commands above"
        )
        return DAMAGED
    if running:
        out(f"repaired {n} runs; the runs leased by a live process were not checked (see above)")
        return SKIPPED
    out(
        f"repaired {n} runs: the store is whole, and the studies that list them have every run and evaluation their "
        "tables need"
    )
    return WHOLE


def _holder(store: RunStore, rid: str, owner: str | None) -> str:
    """Who holds a run that verify skipped, and how to clear the lease when that cannot be checked."""
    who = owner_words(owner) if owner else "another process"
    path = shlex.quote(str(store.leases.path(rid)))
    if owner and owner != "unreadable" and who.split()[0] != socket.gethostname():
        return (
            f"leased by {who} (a process of another host, which cannot be checked from here): verify again when it "
            f"has finished, or if that sweep is gone, remove its lease (`rm {path}`) and verify again"
        )
    if owner == "unreadable":
        return (
            f"its lease {path} cannot be read by this user: if no sweep is computing the run, remove it and verify "
            "again"
        )
    return f"being trained or evaluated by {who}: verify again when it has finished"
