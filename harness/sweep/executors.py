"""Executors: a list of run configs -> finished runs in the store.

- `local`: in this process, one run after another.
- `processes`: a local pool of N worker processes.
- `ray`: Ray tasks, on a cluster (`ray_address="auto"`) or a local one started on demand.

All three (`harness.sweep.dispatch`) call the same function, `run.run_task`, which returns a run's
files; only this driver writes the store. Before dispatch the driver plans the sweep from the store
(finished runs are cached; a run that raised before is skipped unless `retry_failed`) and leases each
run it will compute, so two sweeps on one store never compute or write the same run. A run another
live process has leased is waited for once this sweep's own runs are done (`harness.sweep.waiting`):
when its lease goes, the sweep reads the result from the store, or computes the run itself if that
process died or stopped without finishing it (`wait=False` skips such runs instead). A sweep killed at
any moment and started again computes the remaining runs only.

Results are bit-identical across executors when runs use the same number of CPU threads
(`threads`): matrix products sum in a thread-dependent order.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING

from harness.config import RunConfig
from harness.errors import ConfigError, HarnessError
from harness.progress import progress_bar
from harness.store.identity import run_id
from harness.store.runs import RunStore
from harness.sweep.dispatch import DISPATCH
from harness.sweep.evaluations import Evaluations
from harness.sweep.run import RunRecord, run_state
from harness.sweep.tasks import SweepSummary, Task
from harness.sweep.waiting import skip_reason, wait_for

if TYPE_CHECKING:
    import pandas as pd

EXECUTORS = ("local", "processes", "ray")


def plan(
    configs: list[RunConfig], store: RunStore, force: bool, retry_failed: bool, evaluations: Evaluations
) -> tuple[list[Task], SweepSummary]:
    """Split the sweep into tasks and what the store already answers."""
    tasks, summary = [], SweepSummary()
    for cfg in configs:
        rid = run_id(cfg)
        st = run_state(store, rid, evaluations, leased={})  # leases are taken (or refused) by the caller
        if force or st.state in ("missing", "damaged") or (retry_failed and st.state != "done"):
            tasks.append(Task(cfg, evaluations))
        elif st.state == "failed":
            summary.skipped.append((cfg, f"failed earlier (use --retry-failed): {st.note}"))
        elif st.pending.kinds():
            tasks.append(Task(cfg, st.pending, evaluate_only=True))
        else:
            summary.records.append(RunRecord(rid, store.path(rid), st.row, cached=True))
    return tasks, summary


MAX_WORKERS = max(
    64, 8 * (os.cpu_count() or 1)
)  # more parallel runs than this only queue for the cores (and fork a process each)


def check_sweep_flags(
    executor: str, workers, threads, wait_limit_s, task_cpus: float = 1.0, task_gpus: float = 0.0
) -> None:
    """Refuse bad sweep flags (ConfigError) before anything is leased, run or created: a bad flag
    must never reach the store (the command line checks them before it opens the store)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r}; allowed values: {', '.join(EXECUTORS)}")
    for name, value in (("workers", workers), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{name}={value!r}: must be a positive integer (or left out for the default)")
    if workers is not None and workers > MAX_WORKERS:
        raise ConfigError(
            f"workers={workers}: at most {MAX_WORKERS} parallel runs (this machine has {os.cpu_count()} cores; each "
            "worker is a process of its own); leave it out for one per core"
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
            f"--wait-limit {wait_limit_s!r}: must be a number of seconds >= 0 (or left out to wait until the other "
            "process finishes or dies)"
        )


def longest_first(tasks: list[Task]) -> list[Task]:
    """Tasks in order of their training FLOPs, longest first (stable; evaluation-only tasks last):
    a pool of workers that starts the longest runs first does not end a sweep with one core busy on
    the last CNN while the other waits. A run whose cost cannot be told keeps its place."""
    from harness.sweep.cost import run_flops

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

    wait: a run leased by another live process is waited for once this sweep's own runs are
    done, with a line on stderr naming the runs and who holds them. When its lease goes, the run
    is read from the store (cached), or computed here if its owner died or stopped without
    finishing it. The wait ends when every such lease is gone (a lease of a dead process of this
    host is taken over), or after `wait_limit_s` seconds (default: no limit), when the runs still
    leased are skipped. wait=False skips them at once ("leased by another sweep").
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
    kwargs = {"ray_address": ray_address, "task_cpus": task_cpus, "task_gpus": task_gpus} if executor == "ray" else {}
    sweep = _Sweep(store, summary, executor, threads, workers, force, retry_failed, kwargs)
    try:
        mine, others = sweep.take(tasks)
        if others and not wait:
            owners = store.leases.owners()
            summary.skipped += [(t.cfg, skip_reason(owners.get(t.run_id), store, t.run_id)) for t in others]
            others = []
        sweep.compute(mine)
        if others:
            sweep.wait(others, wait_limit_s)
    finally:
        sweep.close()
    summary.wall_time_s = time.perf_counter() - t0
    return summary


class _Sweep:
    """One sweep while it runs: the runs it leased (released at the end, whatever happens), its
    summary, its progress bar and how it computes a batch of tasks."""

    def __init__(self, store: RunStore, summary: SweepSummary, executor: str, threads, workers, force, retry, kwargs):
        self.store, self.summary = store, summary
        self.executor, self.threads, self.workers, self.kwargs = executor, threads, workers, kwargs
        self.force, self.retry_failed = force, retry
        self.held: list[str] = []
        self.bar = progress_bar(total=0, desc=f"sweep ({executor})", unit="run")

    def take(self, candidates: list[Task]) -> tuple[list[Task], list[Task]]:
        """Lease what can be leased: (tasks to compute, tasks another process holds)."""
        mine, others = [], []
        for task in candidates:
            if not self.store.leases.take(task.run_id):
                others.append(task)
                continue
            self.held.append(task.run_id)
            # plan again under the lease: another sweep may have finished the run since the first look
            again, seen = plan([task.cfg], self.store, self.force, self.retry_failed, task.evaluations)
            if again:
                task = again[0]
                if task.evaluate_only:
                    task.state = self.store.read_bytes(task.run_id, "checkpoint.pt")  # checked against the manifest
                mine.append(task)
            else:
                self.store.leases.release(task.run_id)
                self.summary.records += seen.records
                self.summary.skipped += seen.skipped
        return mine, others

    def finished(self, task: Task, files: dict[str, bytes] | None, error: str | None) -> None:
        """Store what a task returned (its files, or its error), then release its lease."""
        store = self.store
        try:
            if error is None:
                if not task.evaluate_only:
                    store.commit_files(task.run_id, files, force=True)
                else:
                    store.add_files(task.run_id, files)
                store.failures.clear(task.run_id)
                row = store.load_row(task.run_id)
                self.summary.records.append(RunRecord(task.run_id, store.path(task.run_id), row, cached=False))
            else:
                store.failures.record(task.run_id, task.cfg.to_dict(), error)
                self.summary.failures.append((task.cfg, error))
        finally:
            store.leases.release(task.run_id)
        self.bar.update(1)
        self.bar.set_postfix(failed=len(self.summary.failures))

    def compute(self, batch: list[Task]) -> None:
        if batch:
            self.bar.total += len(batch)
            self.bar.refresh()
            DISPATCH[self.executor](batch, self.threads, self.workers, self.finished, **self.kwargs)

    def wait(self, others: list[Task], limit_s: float | None) -> None:
        """Wait for the runs other processes hold (`harness.sweep.waiting`), timed in the summary."""
        self.summary.waited = len(others)
        started = time.monotonic()
        try:
            wait_for(others, self.store, self.take, self.compute, self.summary, limit_s, self.bar)
        finally:
            self.summary.waited_s = time.monotonic() - started

    def close(self) -> None:
        for rid in self.held:  # whatever was not finished (an interrupt) is released for the next sweep
            self.store.leases.release(rid)
        self.bar.close()


def sweep_status(configs: list[RunConfig], store: RunStore, evaluations: Evaluations = Evaluations()) -> pd.DataFrame:
    """One row per run of a sweep, from the store alone: run_id, state (done, diverged, failed,
    running, pending), evaluations still missing, and the error or message."""
    import pandas as pd

    leased = store.leases.owners()
    rows = []
    for cfg in configs:
        st = run_state(store, run_id(cfg), evaluations, leased)
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
