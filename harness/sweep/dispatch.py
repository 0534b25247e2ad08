"""The three ways a sweep computes its tasks, each calling `run.run_task` and reporting every task
to `finished(task, files, error)` (only the sweep's driver writes the store):

- `run_local`: in this process, one task after another.
- `run_processes`: a pool of spawned worker processes; a worker's death is attributed to the task
  that caused it before anyone is charged.
- `run_ray`: Ray tasks, on a cluster (`ray_address`) or a local one started on demand.

A task that raises is reported with its error and the sweep goes on; bad input (HarnessError) stops it.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import os
import tempfile
import traceback
from pathlib import Path

from harness.errors import ConfigError, HarnessError
from harness.sweep.run import run_task
from harness.sweep.tasks import Task


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_exception(exc))}"


def run_local(tasks: list[Task], threads, workers, finished) -> None:
    """The tasks one after another in this process (`workers` is unused)."""
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


def _exit_with_parent(parent: int) -> None:
    """A pool worker's initializer: exit when the sweep that started it is gone (killed with SIGKILL, its
    workers would otherwise live on as orphans, computing runs nobody will store)."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def run_processes(tasks: list[Task], threads, workers, finished, max_attempts: int = 2) -> None:
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
            with cf.ProcessPoolExecutor(
                min(workers, len(batch)), ctx, initializer=_exit_with_parent, initargs=(os.getpid(),)
            ) as pool:
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


def run_ray(tasks: list[Task], threads, workers, finished, ray_address=None, task_cpus=1.0, task_gpus=0.0) -> None:
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
            f"--task-gpus {task_gpus:g}: the Ray cluster's nodes have at most {most_gpus:g} GPUs; use --task-gpus 0 "
            "(CPU), or a cluster with GPUs"
        )
    if task_cpus > most_cpus:
        raise ConfigError(
            f"--task-cpus {task_cpus:g}: the Ray cluster's nodes have at most {most_cpus:g} CPUs; ask for at most "
            f"{most_cpus:g} (or start the local cluster with more --workers)"
        )


DISPATCH = {"local": run_local, "processes": run_processes, "ray": run_ray}  # by executor name
