"""Sweeps: identical results whichever executor ran them, resume after SIGKILL, failures recorded
and retried on request, dead workers survived, concurrent sweeps on one store."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from harness.config import RunConfig
from harness.store.identity import run_id
from harness.store.runs import RunStore
from harness.sweep.executors import run_sweep, sweep_status

EXPERIMENT = """
from harness.config import RunConfig
NAME = "sweep"
def configs(profile):
    base = RunConfig().replace(**{{"data.name": "digits", "model.widths": [16], "train.epochs": {epochs}}})
    return [base.replace(seed=s) for s in range({n})]
"""


def configs(n=4, epochs=2):
    base = RunConfig(experiment="sweep", profile="smoke").replace(
        **{"data.name": "digits", "model.widths": [16], "train.epochs": epochs}
    )
    return [base.replace(seed=s) for s in range(n)]


def experiment_file(tmp_path, n, epochs):
    path = tmp_path / "sweep.py"
    path.write_text(EXPERIMENT.format(n=n, epochs=epochs))
    return path


def cli(*args, **kw):
    env = dict(os.environ, HARNESS_PROGRESS="0")
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def states(store, cfgs):
    return {run_id(cfg): store.load_state(run_id(cfg)) for cfg in cfgs}


def assert_same_runs(a: RunStore, b: RunStore, cfgs):
    for cfg in cfgs:
        sa, sb = a.load_state(run_id(cfg)), b.load_state(run_id(cfg))
        assert all(torch.equal(sa[k], sb[k]) for k in sa), run_id(cfg)
        ra, rb = a.load_row(run_id(cfg)), b.load_row(run_id(cfg))
        assert ra["test_error"] == rb["test_error"] and ra["train_loss"] == rb["train_loss"]


@pytest.mark.slow
def test_every_executor_gives_bit_identical_runs(tmp_path):
    cfgs = configs()
    stores = {}
    for executor in ("local", "processes", "ray"):
        stores[executor] = RunStore(tmp_path / executor)
        summary = run_sweep(cfgs, stores[executor], executor=executor, workers=2, threads=1)
        assert summary.done == len(cfgs) and not summary.failures, summary.failures
    assert_same_runs(stores["local"], stores["processes"], cfgs)
    assert_same_runs(stores["local"], stores["ray"], cfgs)
    again = run_sweep(cfgs, stores["ray"], executor="ray", workers=2, threads=1)
    assert again.cached == len(cfgs) and again.done == 0


def test_a_killed_sweep_resumes_with_the_remaining_runs_only(tmp_path):
    store_dir = tmp_path / "runs"
    exp = experiment_file(tmp_path, n=6, epochs=6)
    proc = cli(
        "run", str(exp), "--profile", "smoke", "--store", str(store_dir), "--threads", "1", start_new_session=True
    )
    deadline = time.time() + 120
    while time.time() < deadline and (not store_dir.is_dir() or len(RunStore(store_dir).run_ids()) < 2):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    store = RunStore(store_dir)  # a new store sweeps away the dead sweep's temporary folders
    before = {rid: (store.path(rid) / "checkpoint.pt").stat().st_mtime_ns for rid in store.run_ids()}
    assert 2 <= len(before) < 6
    assert not [p for p in store_dir.iterdir() if p.name.startswith(".tmp")]
    out = cli("run", str(exp), "--profile", "smoke", "--store", str(store_dir), "--threads", "1")
    stdout, stderr = out.communicate(timeout=300)
    assert out.returncode == 0, stderr
    assert f"{6 - len(before)} computed, {len(before)} cached, 0 failed, 0 skipped" in stdout
    assert len(store.run_ids()) == 6
    for rid, mtime in before.items():
        assert (store.path(rid) / "checkpoint.pt").stat().st_mtime_ns == mtime  # finished work kept, not redone
    assert store.leases.owners() == {}


def test_failures_are_recorded_and_retried_only_on_request(tmp_path, monkeypatch):
    import harness.sweep.dispatch as dispatch

    store = RunStore(tmp_path / "runs")
    cfgs = configs(n=3)
    bad = run_id(cfgs[1])
    real = dispatch.run_task

    def flaky(cfg, *a, **k):
        if run_id(cfg) == bad:
            raise RuntimeError("out of luck")
        return real(cfg, *a, **k)

    monkeypatch.setattr(dispatch, "run_task", flaky)
    first = run_sweep(cfgs, store)
    assert first.done == 2 and len(first.failures) == 1 and "out of luck" in store.failures.error(bad)
    second = run_sweep(cfgs, store)
    assert second.cached == 2 and len(second.skipped) == 1 and "failed earlier" in second.skipped[0][1]
    status = sweep_status(cfgs, store)
    assert status.set_index("run_id").loc[bad, "state"] == "failed"
    monkeypatch.setattr(dispatch, "run_task", real)
    third = run_sweep(cfgs, store, retry_failed=True)
    assert third.done == 1 and store.failures.error(bad) is None and store.is_complete(bad)

    diverged = configs(n=1)[0].replace(**{"train.lr": 1e12, "model.max_norm": None, "train.lr_schedule": "constant"})
    run_sweep([diverged], store)
    assert store.load_row(run_id(diverged))["status"] == "diverged"
    assert run_sweep([diverged], store).cached == 1  # kept as it is...
    assert run_sweep([diverged], store, retry_failed=True).done == 1  # ...until a retry is asked for


@pytest.mark.parametrize("executor", ["processes", "ray"])
@pytest.mark.slow
def test_a_worker_that_dies_does_not_lose_the_sweep(tmp_path, monkeypatch, executor):
    marker = tmp_path / "killed-once"
    monkeypatch.setenv("HARNESS_FAULT_KILL_ONCE", str(marker))
    store = RunStore(tmp_path / "runs")
    cfgs = configs(n=3)
    summary = run_sweep(cfgs, store, executor=executor, workers=2, threads=1)
    assert marker.exists()  # one worker process really was killed
    assert not summary.failures and summary.done == 3
    assert sorted(store.run_ids()) == sorted(run_id(c) for c in cfgs) and store.leases.owners() == {}


@pytest.mark.slow
def test_two_sweeps_at_once_share_a_store_without_duplicates(tmp_path):
    store_dir = tmp_path / "runs"
    exp = experiment_file(tmp_path, n=6, epochs=3)
    procs = [cli("run", str(exp), "--profile", "smoke", "--store", str(store_dir), "--threads", "1") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    computed = [int(re.search(r"(\d+) computed", out).group(1)) for out, _ in outs]
    store = RunStore(store_dir)
    assert len(store.run_ids()) == 6 and store.leases.owners() == {}
    for rid in store.run_ids():  # every run whole and readable
        assert store.load_config(rid).experiment == "sweep" and store.load_state(rid)
    # every run computed by exactly one sweep; the other found it cached or leased
    assert sum(computed) == 6, outs
    status = cli("status", str(exp), "--profile", "smoke", "--store", str(store_dir))
    out, _ = status.communicate(timeout=60)
    assert "6 runs: 6 done" in out


def test_evaluations_added_later_reuse_the_trained_runs(tmp_path):
    from harness.inference.evaluation import MCSettings
    from harness.sweep.evaluations import Evaluations

    store = RunStore(tmp_path / "runs")
    cfgs = configs(n=2)
    assert run_sweep(cfgs, store).done == 2
    mtimes = {run_id(c): (store.path(run_id(c)) / "checkpoint.pt").stat().st_mtime_ns for c in cfgs}
    wanted = Evaluations(mc=MCSettings(T=4, streams=1, per_example=False))
    assert set(sweep_status(cfgs, store, wanted)["missing_evaluations"]) == {"mc"}
    summary = run_sweep(cfgs, store, executor="processes", workers=2, threads=1, evaluations=wanted)
    assert summary.done == 2 and not summary.failures
    for c in cfgs:
        assert (store.path(run_id(c)) / "checkpoint.pt").stat().st_mtime_ns == mtimes[run_id(c)]  # not retrained
        assert len(store.read_table("subnetworks", [run_id(c)])) == 4
    assert run_sweep(cfgs, store, evaluations=wanted).cached == 2


@pytest.mark.slow
def test_a_run_that_always_kills_its_worker_fails_alone(tmp_path, monkeypatch):
    """One run that always dies (as out of memory would) among runs that do not: the broken pools'
    deaths are attributed to it, the others finish, and the next sweep skips only it."""
    store = RunStore(tmp_path / "runs")
    cfgs = configs(n=6)
    doomed = run_id(cfgs[2])
    monkeypatch.setenv("HARNESS_FAULT_KILL_RUN", doomed)
    summary = run_sweep(cfgs, store, executor="processes", workers=2, threads=1)
    assert [run_id(c) for c, _ in summary.failures] == [doomed] and "died" in summary.failures[0][1]
    assert summary.done == 5 and sorted(store.run_ids()) == sorted(run_id(c) for c in cfgs if run_id(c) != doomed)
    assert [p.stem for p in (store.root / ".failed").glob("*.json")] == [doomed] and store.leases.owners() == {}
    monkeypatch.delenv("HARNESS_FAULT_KILL_RUN")
    again = run_sweep(cfgs, store, executor="processes", workers=2, threads=1)
    assert (
        [run_id(c) for c, _ in again.skipped] == [doomed]
        and len(again.records) == 5
        and all(r.cached for r in again.records)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task_gpus": 1.0}, "--task-gpus 1: the Ray cluster's nodes have at most 0 GPUs"),
        ({"task_cpus": 64.0}, "--task-cpus 64: the Ray cluster's nodes have at most 2 CPUs"),
        ({"ray_address": "auto"}, "--ray-address auto: no Ray cluster found"),
    ],
)
@pytest.mark.slow
def test_ray_requests_the_cluster_cannot_meet_are_refused(tmp_path, kwargs, message):
    """These used to hang (a task no node can run waits forever) or end in a traceback."""
    from harness.errors import ConfigError

    store = RunStore(tmp_path / "runs")
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_sweep(configs(n=1), store, executor="ray", workers=2, threads=1, **kwargs)
    assert not store.run_ids() and store.leases.owners() == {} and not (store.root / ".failed").exists()


def test_a_sweep_hands_out_its_longest_runs_first():
    from harness.config import RunConfig
    from harness.sweep.cost import run_flops
    from harness.sweep.evaluations import Evaluations
    from harness.sweep.executors import longest_first
    from harness.sweep.tasks import Task

    small = RunConfig(profile="smoke").replace(**{"data.name": "digits", "model.widths": [16], "train.epochs": 2})
    big = small.replace(**{"model.widths": [256, 256]})
    cnn = small.replace(**{"model.kind": "cnn", "model.widths": [64]})
    longer = small.replace(**{"train.epochs": 20})
    tasks = [
        Task(small, Evaluations()),
        Task(big, Evaluations(), evaluate_only=True),
        Task(cnn, Evaluations()),
        Task(longer, Evaluations()),
        Task(big, Evaluations()),
    ]
    order = longest_first(tasks)
    costs = [run_flops(t.cfg) for t in order if not t.evaluate_only]
    assert (
        costs == sorted(costs, reverse=True)
        and costs[-1] == run_flops(small)
        and run_flops(longer) == pytest.approx(10 * run_flops(small), rel=0.2)
    )
    assert (
        order[-1].evaluate_only and order[0].cfg == cnn
    )  # the CNN is the longest, an evaluation-only task the shortest
