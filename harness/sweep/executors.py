"""Executors: a list of run configs -> finished runs in the store.

- `local`: in this process, one run after another.
- `processes`: a local pool of N worker processes.
- `ray`: Ray tasks, on a cluster (`ray_address="auto"`) or a local one started on demand.

All three call the same function, `run.run_task`, which returns a run's files; only this driver
writes the store. Before dispatch the driver plans the sweep from the store (finished runs are
cached; a run that raised before is skipped unless `retry_failed`) and claims each run it will
compute, so two sweeps on one store never compute or write the same run. A run another live
process has claimed is waited for once this sweep's own runs are done: when its claim goes, the
sweep reads the result from the store, or computes the run itself if that process died or stopped
without finishing it (`wait=False` skips such runs instead). A sweep killed at any moment and
started again computes the remaining runs only.

Results are bit-identical across executors when runs use the same number of CPU threads
(`threads`): matrix products sum in a thread-dependent order.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.config import RunConfig
from harness.errors import ConfigError, HarnessError
from harness.progress import progress_bar
from harness.store.identity import run_id
from harness.store.runs import RunStore
from harness.sweep.run import Evaluations, RunRecord, run_state, run_task

if TYPE_CHECKING:
    import pandas as pd

EXECUTORS = ("local", "processes", "ray")


@dataclass
class Task:
    cfg: RunConfig
    evaluations: Evaluations
    evaluate_only: bool = False  # the run is trained; only evaluations are missing
    state: bytes | None = None  # its checkpoint, read once the run is claimed
    attempts: int = 0

    @property
    def run_id(self) -> str:
        return run_id(self.cfg)


@dataclass
class SweepSummary:
    records: list[RunRecord] = field(default_factory=list)
    failures: list[tuple[RunConfig, str]] = field(default_factory=list)
    skipped: list[tuple[RunConfig, str]] = field(default_factory=list)  # failed earlier, or claimed by another sweep
    wall_time_s: float = 0.0
    waited: int = 0  # runs found claimed by another process and waited for
    waited_s: float = 0.0  # time spent waiting for them

    @property
    def done(self) -> int:
        return sum(not r.cached for r in self.records)

    @property
    def cached(self) -> int:
        return sum(r.cached for r in self.records)

    def line(self) -> str:
        total = len(self.records) + len(self.failures) + len(self.skipped)
        waited = (
            f" (waited {self.waited_s:.0f} s for {self.waited} runs claimed by another process)" if self.waited else ""
        )
        return (
            f"{total} runs: {self.done} computed, {self.cached} cached, {len(self.failures)} failed, "
            f"{len(self.skipped)} skipped, {self.wall_time_s:.1f} s{waited}"
        )


def plan(
    configs: list[RunConfig], store: RunStore, force: bool, retry_failed: bool, evaluations: Evaluations
) -> tuple[list[Task], SweepSummary]:
    """Split the sweep into tasks and what the store already answers."""
    tasks, summary = [], SweepSummary()
    for cfg in configs:
        rid = run_id(cfg)
        st = run_state(store, rid, evaluations, claimed={})  # claims are taken (or refused) by the caller
        if force or st.state in ("missing", "damaged") or (retry_failed and st.state != "done"):
            tasks.append(Task(cfg, evaluations))
        elif st.state == "failed":
            summary.skipped.append((cfg, f"failed earlier (use --retry-failed): {st.note}"))
        elif st.pending.kinds():
            tasks.append(Task(cfg, st.pending, evaluate_only=True))
        else:
            summary.records.append(RunRecord(rid, store.path(rid), st.row, cached=True))
    return tasks, summary


WAIT_POLL_S = 1.0  # how often a waiting sweep looks again at the runs it waits for
WAIT_REPORT_S = 30.0  # how often it says again which runs it waits for, while the same processes hold them


MAX_WORKERS = max(
    64, 8 * (os.cpu_count() or 1)
)  # more parallel runs than this only queue for the cores (and fork a process each)


def check_sweep_flags(
    executor: str, workers, threads, wait_limit_s, task_cpus: float = 1.0, task_gpus: float = 0.0
) -> None:
    """Refuse bad sweep flags (ConfigError) before anything is claimed, run or created: a bad flag
    must never reach the store (the command line checks them before it opens the store)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r}; allowed values: {', '.join(EXECUTORS)}")
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name}={value!r}: must be a positive integer (or left out for the default)")
    if workers is not None and workers > MAX_WORKERS:
        raise ConfigError(
            f"workers={workers}: at most {MAX_WORKERS} parallel runs (this machine has {os.cpu_count()} cores; each "
            "worker is a "
            "process of its own); leave it out for one per core"
        )
    if not (math.isfinite(task_cpus) and task_cpus > 0):
        raise ConfigError(f"--task-cpus {task_cpus}: CPUs per Ray task must be a finite number > 0 (default 1)")
    if not (math.isfinite(task_gpus) and task_gpus >= 0):
        raise ConfigError(
            f"--task-gpus {task_gpus}: GPUs per Ray task must be a finite number >= 0, fractional to share a GPU "
            "(default 0)"
        )
    if wait_limit_s is not None and (
        isinstance(wait_limit_s, bool)
        or not isinstance(wait_limit_s, (int, float))
        or not math.isfinite(wait_limit_s)
        or wait_limit_s < 0
    ):
        raise ConfigError(
            f"--wait-limit {wait_limit_s!r}: must be a number of seconds >= 0 "
            "(or left out to wait until the other process finishes or dies)"
        )


def longest_first(tasks: list[Task]) -> list[Task]:
    """Tasks in order of their training FLOPs, longest first (stable; evaluation-only tasks last):
    a pool of workers that starts the longest runs first does not end a sweep with one core busy on
    the last CNN while the other waits. A run whose cost cannot be told keeps its place."""
    from harness.sweep.plan import run_flops

    def cost(task) -> float:
        if task.evaluate_only:
            return 0.0
        try:
            return run_flops(task.cfg)
        except (HarnessError, ValueError, KeyError):
            return 0.0

    return sorted(tasks, key=cost, reverse=True)


def run_sweep(
    configs: list[RunConfig],
    store: RunStore,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    force: bool = False,
    retry_failed: bool = False,
    evaluations: Evaluations = Evaluations(),
    ray_address: str | None = None,
    task_cpus: float = 1.0,
    task_gpus: float = 0.0,
    wait: bool = True,
    wait_limit_s: float | None = None,
) -> SweepSummary:
    """Compute every run of `configs` that the store lacks, with the chosen executor.

    workers: parallel runs (default: CPU count); threads: torch CPU threads per run (default: all
    cores for `local`, cores / workers otherwise). A run that raises is recorded in the store with
    its error and the sweep goes on; bad input (HarnessError) stops the sweep.

    wait: a run claimed by another live process is waited for once this sweep's own runs are
    done, with a line on stderr naming the runs and who holds them. When its claim goes, the run
    is read from the store (cached), or computed here if its owner died or stopped without
    finishing it. The wait ends when every such claim is gone (a claim of a dead process of this
    host is taken over), or after `wait_limit_s` seconds (default: no limit), when the runs still
    claimed are skipped. wait=False skips them at once ("claimed by another sweep").
    """
    check_sweep_flags(executor, workers, threads, wait_limit_s, task_cpus, task_gpus)
    workers = workers or os.cpu_count() or 1
    if threads is None and executor != "local":
        threads = max(1, (os.cpu_count() or 1) // workers)
    t0 = time.perf_counter()
    tasks, summary = plan(configs, store, force, retry_failed, evaluations)
    tasks = longest_first(tasks)
    if tasks:
        store.check_writable()
    held: list[str] = []  # every run this sweep claimed: released at the end, whatever happens
    bar = progress_bar(total=0, desc=f"sweep ({executor})", unit="run")

    def take(candidates: list[Task]) -> tuple[list[Task], list[Task]]:
        """Claim what can be claimed: (tasks to compute, tasks another process holds)."""
        mine, others = [], []
        for task in candidates:
            if not store.claim(task.run_id):
                others.append(task)
                continue
            held.append(task.run_id)
            # plan again under the claim: another sweep may have finished the run since the first look
            again, seen = plan([task.cfg], store, force, retry_failed, task.evaluations)
            if again:
                task = again[0]
                if task.evaluate_only:
                    task.state = store.read_bytes(task.run_id, "checkpoint.pt")  # checked against the manifest
                mine.append(task)
            else:
                store.release(task.run_id)
                summary.records += seen.records
                summary.skipped += seen.skipped
        return mine, others

    def finished(task: Task, files: dict[str, bytes] | None, error: str | None) -> None:
        try:
            if error is None:
                if not task.evaluate_only:
                    store.commit_files(task.run_id, files, force=True)
                else:
                    store.add_files(task.run_id, files)
                store.clear_failure(task.run_id)
                summary.records.append(
                    RunRecord(task.run_id, store.path(task.run_id), store.load_row(task.run_id), cached=False)
                )
            else:
                store.record_failure(task.run_id, task.cfg.to_dict(), error)
                summary.failures.append((task.cfg, error))
        finally:
            store.release(task.run_id)
        bar.update(1)
        bar.set_postfix(failed=len(summary.failures))

    dispatch = {"local": _local, "processes": _processes, "ray": _ray}[executor]
    kwargs = {"ray_address": ray_address, "task_cpus": task_cpus, "task_gpus": task_gpus} if executor == "ray" else {}

    def compute(batch: list[Task]) -> None:
        if batch:
            bar.total += len(batch)
            bar.refresh()
            dispatch(batch, threads, workers, finished, **kwargs)

    try:
        mine, others = take(tasks)
        if others and not wait:
            owners = store.claimed()
            summary.skipped += [(t.cfg, skip_reason(owners.get(t.run_id), store, t.run_id)) for t in others]
            others = []
        compute(mine)
        if others:
            summary.waited = len(others)
            started = time.monotonic()
            try:
                _wait_for(others, store, take, compute, summary, wait_limit_s, bar)
            finally:
                summary.waited_s = time.monotonic() - started
    finally:
        for run_id in held:  # whatever was not finished (an interrupt) is released for the next sweep
            store.release(run_id)
        bar.close()
    summary.wall_time_s = time.perf_counter() - t0
    return summary


def _wait_for(
    others: list[Task], store: RunStore, take, compute, summary: SweepSummary, limit_s: float | None, bar
) -> None:
    """Poll the runs other processes hold until each can be claimed here (then it is read from
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
        claimed = store.claimed()
        owners = {t.run_id: claimed[t.run_id] for t in others if t.run_id in claimed}  # the rest were released just now
        for t in [t for t in others if owners.get(t.run_id) == "unreadable"]:
            others.remove(t)
            summary.skipped.append(
                (
                    t.cfg,
                    f"its claim {store.root / '.claims' / t.run_id} cannot be read by this user, so whether its "
                    "owner still runs cannot be told; remove the file if no sweep is computing the run",
                )
            )
        now = time.monotonic()
        if limit_s is not None and now - started >= limit_s:
            summary.skipped += [(t.cfg, skip_reason(owners.get(t.run_id), store, t.run_id, limit_s)) for t in others]
            return
        holders = set(owners.values())
        if owners and (holders != reported or now - reported_at >= WAIT_REPORT_S):
            bar.write(_waiting_line(owners, store), file=sys.stderr)
            reported_at, reported = now, holders
        time.sleep(WAIT_POLL_S)


def _waiting_line(owners: dict[str, str], store: RunStore) -> str:
    """Which runs a sweep waits for, grouped by the process that holds them."""
    by_owner: dict[str, list[str]] = {}
    for rid, owner in owners.items():
        by_owner.setdefault(owner, []).append(rid)
    parts = []
    for owner, ids in by_owner.items():
        shown = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
        parts.append(f"{len(ids)} held by {_describe_owner(owner, store, ids)}: {shown}")
    n = len(owners)
    return f"waiting for {n} run{'s' if n != 1 else ''} claimed by another process ({'; '.join(parts)})"


def _describe_owner(owner: str, store: RunStore, run_ids: list[str] | None = None) -> str:
    """A claim's owner ("host pid boot_id start_time") in words: on this host, its command line;
    on another, how to clear its claims if it is gone, since that cannot be checked from here."""
    import socket

    from harness.store.runs import owner_words

    try:
        host, pid = owner_words(owner).split()
    except ValueError:
        return repr(owner)
    if host != socket.gethostname():
        files = (
            " ".join(shlex.quote(str(store.root / ".claims" / r)) for r in run_ids)
            if run_ids
            else shlex.quote(str(store.root / ".claims")) + "/RUN_ID"
        )
        return (
            f"process {pid} on host {host}: whether it still runs cannot be checked from here. If that sweep is gone, "
            f"remove its claims (`rm {files}`) and this sweep goes on at once; to stop waiting instead, interrupt "
            "this sweep "
            f"and run it again with --wait-limit SECONDS or --no-wait, which skip the runs still claimed"
        )
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return f"process {pid}"
    words = [
        os.path.basename(a.decode(errors="replace")) if i == 0 else a.decode(errors="replace")
        for i, a in enumerate(argv)
    ]
    command = " ".join(" ".join(words).split())  # one line, whatever the arguments hold
    shown = f"process {pid} ({command[:117] + '...' if len(command) > 120 else command})"
    if len(owner.split()) == 2:  # an older harness's claim names no start time, so a reused pid cannot be told
        files = " ".join(shlex.quote(str(store.root / ".claims" / r)) for r in run_ids or [])
        shown += f"; if that is not a sweep of this store, remove its claims (`rm {files}`)"
    return shown


def skip_reason(owner: str | None, store: RunStore, run_id: str, waited_s: float | None = None) -> str:
    """Why a claimed run was skipped, with how to clear the claim when its owner is of another host
    (whose death cannot be seen from here)."""
    import socket

    from harness.store.runs import owner_words

    who = owner_words(owner) if owner else "?"
    what = (
        f"still claimed by another sweep ({who}) after waiting {waited_s:g} s (--wait-limit)"
        if waited_s is not None
        else f"claimed by another sweep ({who})"
    )
    host = who.split()[0]
    if owner and host not in ("?", socket.gethostname()):
        what += (
            f"; a process of host {host} cannot be checked from here: if that sweep is gone, remove its claim "
            f"(`rm {shlex.quote(str(store.root / '.claims' / run_id))}`) and run again"
        )
    return what


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}"


def _local(tasks: list[Task], threads, workers, finished) -> None:
    for task in tasks:
        try:
            files = run_task(task.cfg, task.evaluations, task.state, threads)
        except HarnessError:
            raise
        except Exception as exc:  # a crashing run must not take the sweep down
            finished(task, None, _error(exc))
            continue
        finished(task, files, None)


def _run_marked(marks: str, key: str, cfg, evaluations, state, threads):
    """run_task in a pool worker, leaving a mark that the task started (for crash attribution)."""
    (Path(marks) / key).touch()
    return run_task(cfg, evaluations, state, threads)


def _processes(tasks: list[Task], threads, workers, finished, max_attempts: int = 2) -> None:
    """A pool of spawned processes (fork would copy torch's thread pools).

    A worker that dies breaks the whole pool, so a death is attributed before anyone is charged:
    of the tasks the broken pool did not finish, those that never started go back to the queue
    uncharged, and each that had started is a suspect, rerun alone in a pool of its own. Only a
    task that kills a pool it has to itself is charged an attempt; after `max_attempts` it is
    recorded as failed. One run that always dies therefore fails alone."""
    queue, suspects = list(tasks), []
    ctx = multiprocessing.get_context("spawn")
    while queue or suspects:
        alone = not queue  # suspects wait until the innocent tasks are done
        batch = [suspects.pop(0)] if alone else queue
        queue = [] if not alone else queue
        broken = []
        with tempfile.TemporaryDirectory(prefix="harness-pool-") as marks:
            with cf.ProcessPoolExecutor(max_workers=min(workers, len(batch)), mp_context=ctx) as pool:
                futures = {
                    pool.submit(_run_marked, marks, str(i), t.cfg, t.evaluations, t.state, threads): (str(i), t)
                    for i, t in enumerate(batch)
                }
                for fut in cf.as_completed(futures):
                    key, task = futures[fut]
                    try:
                        files = fut.result()
                    except cf.process.BrokenProcessPool:
                        broken.append((key, task))
                        continue
                    except HarnessError:
                        raise
                    except Exception as exc:
                        finished(task, None, _error(exc))
                        continue
                    finished(task, files, None)
            started = {key for key, _ in broken if (Path(marks) / key).exists()}
        for key, task in broken:
            if alone:
                task.attempts += 1
                if task.attempts < max_attempts:
                    suspects.append(task)
                else:
                    finished(task, None, "worker process died (killed or out of memory) on every attempt")
            elif key in started:
                suspects.append(task)
            else:
                queue.append(task)


def _ray(tasks: list[Task], threads, workers, finished, ray_address=None, task_cpus=1.0, task_gpus=0.0) -> None:
    """Ray tasks; a task whose worker process dies is retried once by Ray, then recorded as failed."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor=ray needs Ray: pip install 'dropout-harness[ray]' (make test installs it)"
        ) from None
    if not (math.isfinite(task_cpus) and task_cpus > 0) or not (math.isfinite(task_gpus) and task_gpus >= 0):
        raise ConfigError(
            f"--task-cpus {task_cpus} / --task-gpus {task_gpus}: CPUs per task must be > 0 and GPUs per task >= 0"
        )
    started = False
    if not ray.is_initialized():
        if ray_address:
            try:
                ray.init(address=ray_address, log_to_driver=False)
            except ConnectionError as exc:
                raise ConfigError(
                    f"--ray-address {ray_address}: no Ray cluster found ({exc}); start one with `ray start --head`, "
                    "or leave --ray-address out to start a local one"
                ) from None
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        _check_ray_request(ray, task_cpus, task_gpus)
        remote = ray.remote(num_cpus=task_cpus, num_gpus=task_gpus, max_retries=1, retry_exceptions=False)(run_task)
        refs = {remote.remote(t.cfg, t.evaluations, t.state, threads): t for t in tasks}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            task = refs[done[0]]
            try:
                files = ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                if isinstance(cause, HarnessError):
                    raise cause from None
                finished(task, None, _error(cause))
                continue
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayError) as exc:
                finished(task, None, f"Ray worker died on every attempt: {type(exc).__name__}: {exc}")
                continue
            finished(task, files, None)
    finally:
        if started:
            ray.shutdown()


def _check_ray_request(ray, task_cpus: float, task_gpus: float) -> None:
    """A task that asks for more than any node has would wait forever: refuse it with the numbers."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    if task_gpus > most_gpus:
        raise ConfigError(
            f"--task-gpus {task_gpus:g}: the Ray cluster's nodes have at most {most_gpus:g} GPUs; "
            "use --task-gpus 0 (CPU), or a cluster with GPUs"
        )
    if task_cpus > most_cpus:
        raise ConfigError(
            f"--task-cpus {task_cpus:g}: the Ray cluster's nodes have at most {most_cpus:g} CPUs; "
            f"ask for at most {most_cpus:g} (or start the local cluster with more --workers)"
        )


def sweep_status(configs: list[RunConfig], store: RunStore, evaluations: Evaluations = Evaluations()) -> pd.DataFrame:
    """One row per run of a sweep, from the store alone: run_id, state (done, diverged, failed,
    running, pending), evaluations still missing, and the error or message."""
    import pandas as pd

    claimed = store.claimed()
    rows = []
    for cfg in configs:
        st = run_state(store, run_id(cfg), evaluations, claimed)
        state = "pending" if st.state == "missing" else st.state
        rows.append(
            {
                "run_id": run_id(cfg),
                "state": state,
                "missing_evaluations": ",".join(st.pending.kinds()),
                "seed": cfg.seed,
                "note": st.note,
            }
        )
    return pd.DataFrame(rows)
