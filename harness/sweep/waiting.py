"""Waiting for runs another process holds: a sweep that meets runs leased by another live process
computes its own runs first, then polls those until each lease goes (the run is then read from the
store, or computed here when its owner died or stopped without finishing it), with a line on stderr
naming the runs and who holds them; `skip_reason` says why a run still leased was skipped.
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from harness.store.leases import owner_words
from harness.store.runs import RunStore
from harness.sweep.tasks import SweepSummary, Task

WAIT_POLL_S = 1.0  # how often a waiting sweep looks again at the runs it waits for
WAIT_REPORT_S = 30.0  # how often it says again which runs it waits for, while the same processes hold them


def wait_for(
    others: list[Task],
    store: RunStore,
    take: Callable[[list[Task]], tuple[list[Task], list[Task]]],
    compute: Callable[[list[Task]], None],
    summary: SweepSummary,
    limit_s: float | None,
    bar,
) -> None:
    """Poll the runs other processes hold until each can be leased here (then it is read from
    the store or computed, by `take` and `compute`), or until `limit_s` has passed."""
    started = time.monotonic()
    reported_at, reported = -math.inf, None
    while others:
        mine, others = take(others)
        if mine:
            compute(mine)
            continue
        if not others:
            break
        leased = store.leases.owners()
        owners = {t.run_id: leased[t.run_id] for t in others if t.run_id in leased}  # the rest were released just now
        for t in [t for t in others if owners.get(t.run_id) == "unreadable"]:
            others.remove(t)
            summary.skipped.append((t.cfg, unreadable_reason(store, t.run_id)))
        now = time.monotonic()
        if limit_s is not None and now - started >= limit_s:
            summary.skipped += [(t.cfg, skip_reason(owners.get(t.run_id), store, t.run_id, limit_s)) for t in others]
            return
        holders = set(owners.values())
        if owners and (holders != reported or now - reported_at >= WAIT_REPORT_S):
            bar.write(waiting_line(owners, store), file=sys.stderr)
            reported_at, reported = now, holders
        time.sleep(WAIT_POLL_S)


def unreadable_reason(store: RunStore, run_id: str) -> str:
    """Why a run whose lease file this user cannot read was skipped."""
    return (
        f"its lease {store.leases.path(run_id)} cannot be read by this user, so whether its owner still runs cannot "
        "be told; remove the file if no sweep is computing the run"
    )


def waiting_line(owners: dict[str, str], store: RunStore) -> str:
    """Which runs a sweep waits for, grouped by the process that holds them."""
    by_owner: dict[str, list[str]] = {}
    for rid, owner in owners.items():
        by_owner.setdefault(owner, []).append(rid)
    parts = []
    for owner, ids in by_owner.items():
        shown = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
        parts.append(f"{len(ids)} held by {describe_owner(owner, store, ids)}: {shown}")
    n = len(owners)
    return f"waiting for {n} run{'s' if n != 1 else ''} leased by another process ({'; '.join(parts)})"


def describe_owner(owner: str, store: RunStore, run_ids: list[str] | None = None) -> str:
    """A lease's owner ("host pid boot_id start_time") in words: on this host, its command line;
    on another, how to clear its leases if it is gone, since that cannot be checked from here."""
    try:
        host, pid = owner_words(owner).split()
    except ValueError:
        return repr(owner)
    if host != socket.gethostname():
        files = (
            " ".join(shlex.quote(str(store.leases.path(r))) for r in run_ids)
            if run_ids
            else shlex.quote(str(store.leases.folder)) + "/RUN_ID"
        )
        return (
            f"process {pid} on host {host}: whether it still runs cannot be checked from here. If that sweep is "
            f"gone, remove its leases (`rm {files}`) and this sweep goes on at once; to stop waiting instead, "
            "interrupt this sweep and run it again with --wait-limit SECONDS or --no-wait, which skip the runs "
            "still leased"
        )
    command = _command_line(pid)
    if command is None:
        return f"process {pid}"
    shown = f"process {pid} ({command})"
    if len(owner.split()) == 2:  # an older harness's lease names no start time, so a reused pid cannot be told
        files = " ".join(shlex.quote(str(store.leases.path(r))) for r in run_ids or [])
        shown += f"; if that is not a sweep of this store, remove its leases (`rm {files}`)"
    return shown


def _command_line(pid: str) -> str | None:
    """A process of this host's command line, on one line of at most 120 characters; None when it
    cannot be read."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return None
    words = [
        os.path.basename(a.decode(errors="replace")) if i == 0 else a.decode(errors="replace")
        for i, a in enumerate(argv)
    ]
    command = " ".join(" ".join(words).split())  # one line, whatever the arguments hold
    return command[:117] + "..." if len(command) > 120 else command


def skip_reason(owner: str | None, store: RunStore, run_id: str, waited_s: float | None = None) -> str:
    """Why a leased run was skipped, with how to clear the lease when its owner is of another host
    (whose death cannot be seen from here)."""
    who = owner_words(owner) if owner else "?"
    what = (
        f"still leased by another sweep ({who}) after waiting {waited_s:g} s (--wait-limit)"
        if waited_s is not None
        else f"leased by another sweep ({who})"
    )
    host = who.split()[0]
    if owner and host not in ("?", socket.gethostname()):
        what += (
            f"; a process of host {host} cannot be checked from here: if that sweep is gone, remove its lease (`rm "
            f"{shlex.quote(str(store.leases.path(run_id)))}`) and run again"
        )
    return what
