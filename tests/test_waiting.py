"""Leases that cannot block forever, and sweeps that wait for runs another process computes.

- A lease file is written whole (temporary file, then a hard link onto its name), with the umask's
  mode; an empty or garbled one is debris, taken over under the leases lock.
- A sweep that meets a run leased by a live process waits for it, then reads it from the store, or
  computes it when its owner died; `--no-wait` skips it as before; `--wait-limit` bounds the wait.
- Two sweeps of overlapping studies started together both exit 0. `make -j2 all` on a fresh store
  (paper profile, stand-in data) is `tests/test_paper_check.py`, which runs it anyway.
"""

import errno
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import harness.store.leases as hs
import harness.sweep.waiting as waiting
from harness.cli import main
from harness.config import RunConfig
from harness.store.identity import run_id
from harness.store.runs import RunStore
from harness.sweep.executors import run_sweep, sweep_status

ROOT = Path(__file__).resolve().parent.parent
HOST = socket.gethostname()

EXPERIMENT = """
from harness.config import RunConfig
NAME = "{name}"
def configs(profile):
    base = RunConfig().replace(**{{"data.name": "digits", "model.widths": [16], "train.epochs": 2}})
    return [base.replace(seed=s) for s in {seeds}]
"""


def configs(seeds, experiment="w"):
    base = RunConfig(experiment=experiment, profile="smoke").replace(
        **{"data.name": "digits", "model.widths": [16], "train.epochs": 2}
    )
    return [base.replace(seed=s) for s in seeds]


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def lease_path(store: RunStore, run_id: str) -> Path:
    return store.root / ".claims" / run_id


@pytest.fixture
def sleeper():
    """A live process of this host, to stand for another sweep that holds a lease."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setattr(waiting, "WAIT_POLL_S", 0.05)


# -- leases written whole, debris taken over ------------------------------------------------------


def test_a_lease_is_written_whole_with_the_umask_mode(store):
    assert store.leases.take("r1") and store.leases.holds("r1")
    folder = store.root / ".claims"
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert (
        lease_path(store, "r1").read_text() == f"{HOST} {os.getpid()} {boot} {start}"
    )  # host, pid, boot id, start time
    assert sorted(p.name for p in folder.iterdir()) == ["r1"]  # no temporary file left behind
    assert store.leases.take("r1") and store.leases.holds(
        "r1"
    )  # leasing again (through the lock) is idempotent for its owner
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "r1"]
    for name in ("r1", ".lock"):  # were 0755 (os.open's default mode), so the lock was closed to other users
        assert (folder / name).stat().st_mode & 0o777 == 0o666 & ~umask(), name
    store.leases.release("r1")
    assert not lease_path(store, "r1").exists() and store.leases.owners() == {}


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n",
        b"  ",
        HOST.encode(),
        f"{HOST} ".encode(),
        f"{HOST} 12ab".encode(),
        f"{HOST} 0".encode(),
        f"{HOST} 1 2".encode(),
        f"{HOST} 1 boot 12x".encode(),
        b"\xff\xfe\x00\x01garbage \x80",
    ],
    ids=[
        "empty",
        "newline",
        "spaces",
        "host-only",
        "truncated",
        "bad-pid",
        "pid-0",
        "three-fields",
        "bad-start",
        "non-utf8",
    ],
)
def test_an_empty_or_garbled_lease_is_debris_and_taken_over(store, content):
    """Before, an empty lease (a full disk or a kill between creating and writing it) was never taken
    over: every later sweep skipped the run and `status` showed it as running."""
    (store.root / ".claims").mkdir()
    lease_path(store, "r1").write_bytes(content)
    assert store.leases.take("r1") and store.leases.holds("r1")
    assert lease_path(store, "r1").read_text() == hs._me()
    store.leases.release("r1")
    lease_path(store, "r1").write_bytes(content)
    assert store.leases.owners() == {} and not lease_path(store, "r1").exists()  # listing the leases removes debris too


def test_a_sweep_computes_a_run_whose_lease_file_is_empty(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    cfg = configs([0])[0]
    (store.root / ".claims").mkdir()
    lease_path(store, run_id(cfg)).write_bytes(b"")
    assert sweep_status([cfg], store).state.tolist() == ["pending"]  # not "running"
    lease_path(store, run_id(cfg)).write_bytes(b"")
    exp = tmp_path / "one.py"
    exp.write_text(EXPERIMENT.format(name="w", seeds=[0]))
    assert main(["run", str(exp), "--profile", "smoke", "--store", str(store.root), "--threads", "1"]) == 0
    assert "1 runs: 1 computed, 0 cached, 0 failed, 0 skipped" in capsys.readouterr().out
    assert store.is_complete(run_id(cfg)) and store.leases.owners() == {}


def test_a_live_owners_lease_is_kept(store, sleeper):
    (store.root / ".claims").mkdir()
    lease_path(store, "r1").write_text(f"{HOST} {sleeper.pid}")
    assert not store.leases.take("r1") and not store.leases.holds("r1")
    assert store.leases.owners() == {"r1": f"{HOST} {sleeper.pid}"}
    store.leases.release("r1")  # not ours: left alone
    assert lease_path(store, "r1").read_text() == f"{HOST} {sleeper.pid}"


def test_a_live_owners_lease_with_its_boot_and_start_time_is_kept(store, sleeper):
    (store.root / ".claims").mkdir()
    owner = f"{HOST} {sleeper.pid} {hs._boot_id()} {hs._start_time(sleeper.pid)}"
    lease_path(store, "r1").write_text(owner)
    assert not store.leases.take("r1") and store.leases.owners() == {"r1": owner}
    assert lease_path(store, "r1").read_text() == owner


@pytest.mark.parametrize("which", ["start-time", "boot"])
def test_a_lease_whose_pid_is_now_another_process_is_taken_over(store, sleeper, which):
    """After a restart or a pid wrap, a lease of a killed sweep names a pid that is alive but is
    another process: before, the next sweep waited for it forever (issue 25, item 3)."""
    (store.root / ".claims").mkdir()
    start = int(hs._start_time(sleeper.pid))
    owner = (
        f"{HOST} {sleeper.pid} {hs._boot_id()} {start - 1}"
        if which == "start-time"
        else f"{HOST} {sleeper.pid} 00000000-0000-0000-0000-000000000000 {start}"
    )
    lease_path(store, "r1").write_text(owner)
    assert store.leases.owners() == {} and not lease_path(store, "r1").exists()
    lease_path(store, "r1").write_text(owner)
    assert store.leases.take("r1") and lease_path(store, "r1").read_text() == hs._me()


def test_a_lease_naming_pid_1_with_another_start_time_does_not_block_a_sweep(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    cfg = configs([0])[0]
    (store.root / ".claims").mkdir()
    lease_path(store, run_id(cfg)).write_text(f"{HOST} 1 {hs._boot_id()} {int(hs._start_time(1)) + 12345}")
    summary = run_sweep([cfg], store, threads=1, wait_limit_s=30)
    assert summary.done == 1 and not summary.skipped and store.is_complete(run_id(cfg))


def test_an_older_harness_lease_older_than_its_process_is_stale(store, sleeper):
    """A lease as older harnesses wrote it ("host pid") has no start time: its file's age tells when
    the pid's process started after the lease was written."""
    (store.root / ".claims").mkdir()
    lease_path(store, "r1").write_text(f"{HOST} {sleeper.pid}")
    assert store.leases.owners() == {"r1": f"{HOST} {sleeper.pid}"}  # written after the process started: kept
    old = time.time() - 3600
    os.utime(lease_path(store, "r1"), (old, old))  # written an hour before the process started
    assert store.leases.owners() == {} and not lease_path(store, "r1").exists()


def test_another_hosts_lease_says_how_to_clear_it(tmp_path, capsys, fast_polls):
    store = RunStore(tmp_path / "runs")
    cfg = configs([0])[0]
    (store.root / ".claims").mkdir()
    lease = lease_path(store, run_id(cfg))
    lease.write_text(f"elsewhere 4242 {hs._boot_id()} 77")
    summary = run_sweep([cfg], store, threads=1, wait_limit_s=0.3)
    assert summary.skipped[0][1] == (
        "still leased by another sweep (elsewhere 4242) after waiting 0.3 s (--wait-limit); a process of host "
        f"elsewhere cannot be checked from here: if that sweep is gone, remove its lease (`rm {lease}`) and run again"
    )
    err = capsys.readouterr().err  # the line printed while waiting, as a sweep without --wait-limit prints it
    assert (
        "1 held by process 4242 on host elsewhere: whether it still runs cannot be checked from here. If that sweep "
        f"is gone, remove its leases (`rm {lease}`) and this sweep goes on at once; to stop waiting instead, "
        "interrupt this sweep and run it again with --wait-limit SECONDS or --no-wait, which skip the runs still "
        f"leased: {run_id(cfg)}"
    ) in err
    assert lease.read_text() == f"elsewhere 4242 {hs._boot_id()} 77"  # never taken over from here


def test_a_lease_that_cannot_be_written_leaves_no_lease(store, monkeypatch):
    """Out of disk space while writing the lease: an error, and no empty lease file left behind."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    real = hs.create_tmp

    def full(folder, prefix):
        fd, tmp = real(folder, prefix)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), tmp

    monkeypatch.setattr(hs, "create_tmp", full)
    with pytest.raises(OSError) as exc:
        store.leases.take("r1")
    assert exc.value.errno == errno.ENOSPC
    assert [p.name for p in (store.root / ".claims").iterdir() if p.name != ".lock"] == []
    monkeypatch.setattr(hs, "create_tmp", real)
    assert store.leases.take("r1")


def test_without_hard_links_a_lease_is_still_exclusive(store, monkeypatch, sleeper):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert store.leases.take("r1") and store.leases.holds("r1")
    assert lease_path(store, "r1").read_text() == hs._me()
    lease_path(store, "r2").write_text(f"{HOST} {sleeper.pid}")
    assert not store.leases.take("r2")
    lease_path(store, "r3").write_bytes(b"")
    assert store.leases.take("r3")
    assert sorted(p.name for p in (store.root / ".claims").iterdir()) == [".lock", "r1", "r2", "r3"]


RACER = """
import os, sys, time, pathlib
from harness.store.runs import RunStore
store = RunStore(sys.argv[1])
here = pathlib.Path(sys.argv[2])
(here / f"ready-{os.getpid()}").touch()
while not (here / "start").exists():
    time.sleep(0.002)
print(store.leases.take("r1"), flush=True)
while not (here / "done").exists():
    time.sleep(0.02)
"""


@pytest.mark.parametrize("before", [None, b"", "dead"])
@pytest.mark.slow
def test_processes_racing_for_a_lease_never_both_hold_it(tmp_path, before):
    """Four processes lease one run at the same moment: on a free run, on debris, on a dead owner's
    lease. Exactly one wins, and the lease names it."""
    store = RunStore(tmp_path / "runs")
    (store.root / ".claims").mkdir()
    if before == "dead":
        dead = subprocess.Popen(["true"])
        dead.wait()
        lease_path(store, "r1").write_text(f"{HOST} {dead.pid}")
    elif before is not None:
        lease_path(store, "r1").write_bytes(before)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(store.root), str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    try:
        end = time.monotonic() + 120
        while not all((tmp_path / f"ready-{p.pid}").exists() for p in procs) and time.monotonic() < end:
            time.sleep(0.02)
        (tmp_path / "start").touch()
        results = [p.stdout.readline().strip() for p in procs]
        assert sorted(results) == ["False", "False", "False", "True"]
        winner = procs[results.index("True")]
        assert hs.owner_words(lease_path(store, "r1").read_text()) == f"{HOST} {winner.pid}"
    finally:
        (tmp_path / "done").touch()
        for p in procs:
            p.wait(timeout=60)


# -- sweeps that wait ---------------------------------------------------------------------------

HOLDER = """
import sys, time
from harness.config import RunConfig
from harness.sweep.executors import run_sweep
from harness.store.identity import run_id
from harness.store.runs import RunStore
store = RunStore(sys.argv[1])
cfg = RunConfig(experiment="holder", profile="smoke")
cfg = cfg.replace(**{"data.name": "digits", "model.widths": [16], "train.epochs": 2, "seed": 0})
assert store.leases.take(run_id(cfg))
print("leased", flush=True)
time.sleep(float(sys.argv[2]))
summary = run_sweep([cfg], store, threads=1)  # computes the run under the lease it holds, then releases it
assert summary.done == 1, summary.line()
"""


@pytest.mark.slow
def test_a_sweep_waits_for_a_live_owner_and_reads_its_result(tmp_path, capsys, fast_polls):
    store = RunStore(tmp_path / "runs")
    shared, own = configs([0, 1])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.root), "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "leased"
        summary = run_sweep([shared, own], store, threads=1)
    finally:
        holder.wait(timeout=120)
    assert holder.returncode == 0
    assert summary.done == 1 and summary.cached == 1 and not summary.skipped and not summary.failures
    assert summary.waited == 1 and "(waited" in summary.line()
    assert {r.run_id: r.cached for r in summary.records} == {run_id(shared): True, run_id(own): False}
    assert store.load_row(run_id(shared))["experiment"] == "holder"  # the holder's result, not recomputed here
    err = capsys.readouterr().err
    assert re.search(
        rf"waiting for 1 run leased by another process \(1 held by process {holder.pid} \(python\S* -c .*\): "
        rf"{run_id(shared)}\)",
        err,
    ), err
    assert store.leases.owners() == {}


def test_a_sweep_computes_a_run_whose_owner_died_while_it_waited(tmp_path, capsys, fast_polls, sleeper):
    store = RunStore(tmp_path / "runs")
    cfg = configs([0])[0]
    (store.root / ".claims").mkdir()
    lease_path(store, run_id(cfg)).write_text(f"{HOST} {sleeper.pid}")
    threading.Timer(1.0, sleeper.kill).start()  # killed, and never reaped meanwhile (a zombie is gone too)
    summary = run_sweep([cfg], store, threads=1)
    assert summary.done == 1 and summary.waited == 1 and not summary.skipped
    # a lease as an older harness wrote it (no start time): the line says how to clear it if the pid is no sweep
    assert (
        f"1 held by process {sleeper.pid} (sleep 120); if that is not a sweep of this store, remove its leases (`rm "
        f"{lease_path(store, run_id(cfg))}`): {run_id(cfg)}"
    ) in capsys.readouterr().err
    assert store.is_complete(run_id(cfg)) and store.leases.owners() == {}


def test_the_wait_is_bounded_by_wait_limit(tmp_path, sleeper, fast_polls):
    store = RunStore(tmp_path / "runs")
    cfg, other = configs([0, 1])
    (store.root / ".claims").mkdir()
    lease_path(store, run_id(cfg)).write_text(f"{HOST} {sleeper.pid}")
    t0 = time.monotonic()
    summary = run_sweep([cfg, other], store, threads=1, wait_limit_s=0.5)
    assert time.monotonic() - t0 < 30
    assert summary.done == 1 and [run_id(c) for c, _ in summary.skipped] == [run_id(cfg)]
    assert f"still leased by another sweep ({HOST} {sleeper.pid}) after waiting 0.5 s" in summary.skipped[0][1]
    assert lease_path(store, run_id(cfg)).read_text() == f"{HOST} {sleeper.pid}"  # a live owner's lease is never taken
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="--wait-limit"):
        run_sweep([cfg], store, wait_limit_s=float("nan"))


def test_no_wait_skips_a_leased_run_as_before(tmp_path, capsys, sleeper):
    store = RunStore(tmp_path / "runs")
    cfg, other = configs([0, 1])
    exp = tmp_path / "two.py"
    exp.write_text(EXPERIMENT.format(name="w", seeds=[0, 1]))
    (store.root / ".claims").mkdir()
    lease_path(store, run_id(cfg)).write_text(f"{HOST} {sleeper.pid}")
    t0 = time.monotonic()
    assert main(["run", str(exp), "--profile", "smoke", "--store", str(store.root), "--threads", "1", "--no-wait"]) == 1
    assert time.monotonic() - t0 < 60
    out, err = capsys.readouterr()
    assert "2 runs: 1 computed, 0 cached, 0 failed, 1 skipped" in out and "waited" not in out
    assert f"skipped run {run_id(cfg)}: leased by another sweep ({HOST} {sleeper.pid})" in err
    assert not store.is_complete(run_id(cfg)) and store.is_complete(run_id(other))
    assert run_sweep([cfg], store, wait=False).skipped[0][1] == f"leased by another sweep ({HOST} {sleeper.pid})"


def cli(*args):
    env = dict(os.environ, HARNESS_PROGRESS="0")
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.mark.slow
def test_two_sweeps_of_overlapping_studies_started_together_both_finish(tmp_path):
    """Before, the sweep that met runs the other had leased skipped them and exited 1."""
    store_dir = tmp_path / "runs"
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(EXPERIMENT.format(name="a", seeds=[2, 3, 0, 1]))  # seeds 2 and 3 in both
    b.write_text(EXPERIMENT.format(name="b", seeds=[2, 3, 4, 5]))
    procs = [cli("run", str(f), "--profile", "smoke", "--store", str(store_dir), "--threads", "1") for f in (a, b)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    computed = [
        int(re.search(r"4 runs: (\d+) computed, (\d+) cached, 0 failed, 0 skipped", out).group(1)) for out, _ in outs
    ]
    assert sum(computed) == 6, outs  # every run computed once, by one of them
    assert any("(waited" in out for out, _ in outs), outs  # one of them met the other's leases
    store = RunStore(store_dir)
    assert store.leases.owners() == {} and len(store.run_ids()) == 6
    shared = {run_id(c) for c in configs([2, 3])}
    rows = [
        {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in shared}
        for out, _ in outs
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 2  # both sweeps report the same stored results for the shared runs
    reference = RunStore(tmp_path / "reference")
    run_sweep(configs(range(6)), reference, threads=1)
    for cfg in configs(range(6)):  # and the stored runs are bit-identical to one sweep's
        got, want = store.load_state(run_id(cfg)), reference.load_state(run_id(cfg))
        assert all(torch.equal(got[k], want[k]) for k in want), run_id(cfg)
        assert store.load_row(run_id(cfg))["test_error"] == reference.load_row(run_id(cfg))["test_error"]


# -- make ---------------------------------------------------------------------------------------

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
def test_make_honours_harness_store(tmp_path):
    """Before, `export HARNESS_STORE := $(abspath $(STORE))` with `STORE ?= runs` replaced it."""
    (tmp_path / "Makefile").write_text((ROOT / "Makefile").read_text() + '\nprint-store:\n\t@echo "$$HARNESS_STORE"\n')

    def store(env_store, *args):
        env = {k: v for k, v in os.environ.items() if k != "HARNESS_STORE"} | (
            {"HARNESS_STORE": env_store} if env_store is not None else {}
        )
        env["PYTHONPATH"] = str(ROOT)  # the copied Makefile reads the list of studies from the harness
        return subprocess.run(
            ["make", "-s", "print-store", *args], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert store(None) == str(tmp_path / "runs")
    assert store(str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere")
    assert store("relative") == str(tmp_path / "relative")
    assert store(str(tmp_path / "elsewhere"), "STORE=mine") == str(tmp_path / "mine")  # STORE= still wins
