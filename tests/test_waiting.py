"""Claims that cannot block forever, and sweeps that wait for runs another process computes.

- A claim file is written whole (temporary file, then a hard link onto its name), with the umask's
  mode; an empty or garbled one is debris, taken over under the claims lock.
- A sweep that meets a run claimed by a live process waits for it, then reads it from the store, or
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

import harness.store.runs as hs
import harness.sweep.executors as ex
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


def claim_path(store: RunStore, run_id: str) -> Path:
    return store.root / ".claims" / run_id


@pytest.fixture
def sleeper():
    """A live process of this host, to stand for another sweep that holds a claim."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setattr(ex, "WAIT_POLL_S", 0.05)


# -- claims written whole, debris taken over ------------------------------------------------------


def test_a_claim_is_written_whole_with_the_umask_mode(store):
    assert store.claim("r1") and store.holds("r1")
    folder = store.root / ".claims"
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    start = Path(f"/proc/{os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert (
        claim_path(store, "r1").read_text() == f"{HOST} {os.getpid()} {boot} {start}"
    )  # host, pid, boot id, start time
    assert sorted(p.name for p in folder.iterdir()) == ["r1"]  # no temporary file left behind
    assert store.claim("r1") and store.holds("r1")  # claiming again (through the lock) is idempotent for its owner
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "r1"]
    for name in ("r1", ".lock"):  # were 0755 (os.open's default mode), so the lock was closed to other users
        assert (folder / name).stat().st_mode & 0o777 == 0o666 & ~umask(), name
    store.release("r1")
    assert not claim_path(store, "r1").exists() and store.claimed() == {}


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
def test_an_empty_or_garbled_claim_is_debris_and_taken_over(store, content):
    """Before, an empty claim (a full disk or a kill between creating and writing it) was never taken
    over: every later sweep skipped the run and `status` showed it as running."""
    (store.root / ".claims").mkdir()
    claim_path(store, "r1").write_bytes(content)
    assert store.claim("r1") and store.holds("r1")
    assert claim_path(store, "r1").read_text() == hs._me()
    store.release("r1")
    claim_path(store, "r1").write_bytes(content)
    assert store.claimed() == {} and not claim_path(store, "r1").exists()  # listing the claims removes debris too


def test_a_sweep_computes_a_run_whose_claim_file_is_empty(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    cfg = configs([0])[0]
    (store.root / ".claims").mkdir()
    claim_path(store, run_id(cfg)).write_bytes(b"")
    assert sweep_status([cfg], store).state.tolist() == ["pending"]  # not "running"
    claim_path(store, run_id(cfg)).write_bytes(b"")
    exp = tmp_path / "one.py"
    exp.write_text(EXPERIMENT.format(name="w", seeds=[0]))
    assert main(["run", str(exp), "--profile", "smoke", "--store", str(store.root), "--threads", "1"]) == 0
    assert "1 runs: 1 computed, 0 cached, 0 failed, 0 skipped" in capsys.readouterr().out
    assert store.is_complete(run_id(cfg)) and store.claimed() == {}


def test_a_live_owners_claim_is_kept(store, sleeper):
    (store.root / ".claims").mkdir()
    claim_path(store, "r1").write_text(f"{HOST} {sleeper.pid}")
    assert not store.claim("r1") and not store.holds("r1")
    assert store.claimed() == {"r1": f"{HOST} {sleeper.pid}"}
    store.release("r1")  # not ours: left alone
    assert claim_path(store, "r1").read_text() == f"{HOST} {sleeper.pid}"


def test_a_live_owners_claim_with_its_boot_and_start_time_is_kept(store, sleeper):
    (store.root / ".claims").mkdir()
    owner = f"{HOST} {sleeper.pid} {hs._boot_id()} {hs._start_time(sleeper.pid)}"
    claim_path(store, "r1").write_text(owner)
    assert not store.claim("r1") and store.claimed() == {"r1": owner}
    assert claim_path(store, "r1").read_text() == owner


@pytest.mark.parametrize("which", ["start-time", "boot"])
def test_a_claim_whose_pid_is_now_another_process_is_taken_over(store, sleeper, which):
    """After a restart or a pid wrap, a claim of a killed sweep names a pid that is alive but is
    another process: before, the next sweep waited for it forever (issue 25, item 3)."""
    (store.root / ".claims").mkdir()
    start = int(hs._start_time(sleeper.pid))
    owner = (
        f"{HOST} {sleeper.pid} {hs._boot_id()} {start - 1}"
        if which == "start-time"
        else f"{HOST} {sleeper.pid} 00000000-0000-0000-0000-000000000000 {start}"
    )
    claim_path(store, "r1").write_text(owner)
    assert store.claimed() == {} and not claim_path(store, "r1").exists()
    claim_path(store, "r1").write_text(owner)
    assert store.claim("r1") and claim_path(store, "r1").read_text() == hs._me()


def test_a_claim_naming_pid_1_with_another_start_time_does_not_block_a_sweep(tmp_path, capsys):
    store = RunStore(tmp_path / "runs")
    cfg = configs([0])[0]
    (store.root / ".claims").mkdir()
    claim_path(store, run_id(cfg)).write_text(f"{HOST} 1 {hs._boot_id()} {int(hs._start_time(1)) + 12345}")
    summary = run_sweep([cfg], store, threads=1, wait_limit_s=30)
    assert summary.done == 1 and not summary.skipped and store.is_complete(run_id(cfg))


def test_an_older_harness_claim_older_than_its_process_is_stale(store, sleeper):
    """A claim as older harnesses wrote it ("host pid") has no start time: its file's age tells when
    the pid's process started after the claim was written."""
    (store.root / ".claims").mkdir()
    claim_path(store, "r1").write_text(f"{HOST} {sleeper.pid}")
    assert store.claimed() == {"r1": f"{HOST} {sleeper.pid}"}  # written after the process started: kept
    old = time.time() - 3600
    os.utime(claim_path(store, "r1"), (old, old))  # written an hour before the process started
    assert store.claimed() == {} and not claim_path(store, "r1").exists()


def test_another_hosts_claim_says_how_to_clear_it(tmp_path, capsys, fast_polls):
    store = RunStore(tmp_path / "runs")
    cfg = configs([0])[0]
    (store.root / ".claims").mkdir()
    claim = claim_path(store, run_id(cfg))
    claim.write_text(f"elsewhere 4242 {hs._boot_id()} 77")
    summary = run_sweep([cfg], store, threads=1, wait_limit_s=0.3)
    assert summary.skipped[0][1] == (
        f"still claimed by another sweep (elsewhere 4242) after waiting 0.3 s (--wait-limit); a process of host "
        f"elsewhere cannot be checked from here: if that sweep is gone, remove its claim (`rm {claim}`) and run again"
    )
    err = capsys.readouterr().err  # the line printed while waiting, as a sweep without --wait-limit prints it
    assert (
        "1 held by process 4242 on host elsewhere: whether it still runs cannot be checked from here. If that sweep "
        "is gone, "
        f"remove its claims (`rm {claim}`) and this sweep goes on at once; to stop waiting instead, interrupt this "
        "sweep and run it "
        f"again with --wait-limit SECONDS or --no-wait, which skip the runs still claimed: {run_id(cfg)}"
    ) in err
    assert claim.read_text() == f"elsewhere 4242 {hs._boot_id()} 77"  # never taken over from here


def test_a_claim_that_cannot_be_written_leaves_no_claim(store, monkeypatch):
    """Out of disk space while writing the claim: an error, and no empty claim file left behind."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    real = hs.create_tmp

    def full(folder, prefix):
        fd, tmp = real(folder, prefix)
        os.close(fd)
        return os.open("/dev/full", os.O_WRONLY), tmp

    monkeypatch.setattr(hs, "create_tmp", full)
    with pytest.raises(OSError) as exc:
        store.claim("r1")
    assert exc.value.errno == errno.ENOSPC
    assert [p.name for p in (store.root / ".claims").iterdir() if p.name != ".lock"] == []
    monkeypatch.setattr(hs, "create_tmp", real)
    assert store.claim("r1")


def test_without_hard_links_a_claim_is_still_exclusive(store, monkeypatch, sleeper):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert store.claim("r1") and store.holds("r1")
    assert claim_path(store, "r1").read_text() == hs._me()
    claim_path(store, "r2").write_text(f"{HOST} {sleeper.pid}")
    assert not store.claim("r2")
    claim_path(store, "r3").write_bytes(b"")
    assert store.claim("r3")
    assert sorted(p.name for p in (store.root / ".claims").iterdir()) == [".lock", "r1", "r2", "r3"]


RACER = """
import os, sys, time, pathlib
from harness.store.runs import RunStore
store = RunStore(sys.argv[1])
here = pathlib.Path(sys.argv[2])
(here / f"ready-{os.getpid()}").touch()
while not (here / "start").exists():
    time.sleep(0.002)
print(store.claim("r1"), flush=True)
while not (here / "done").exists():
    time.sleep(0.02)
"""


@pytest.mark.parametrize("before", [None, b"", "dead"])
def test_processes_racing_for_a_claim_never_both_hold_it(tmp_path, before):
    """Four processes claim one run at the same moment: on a free run, on debris, on a dead owner's
    claim. Exactly one wins, and the claim names it."""
    store = RunStore(tmp_path / "runs")
    (store.root / ".claims").mkdir()
    if before == "dead":
        dead = subprocess.Popen(["true"])
        dead.wait()
        claim_path(store, "r1").write_text(f"{HOST} {dead.pid}")
    elif before is not None:
        claim_path(store, "r1").write_bytes(before)
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
        assert hs.owner_words(claim_path(store, "r1").read_text()) == f"{HOST} {winner.pid}"
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
assert store.claim(run_id(cfg))
print("claimed", flush=True)
time.sleep(float(sys.argv[2]))
summary = run_sweep([cfg], store, threads=1)  # computes the run under the claim it holds, then releases it
assert summary.done == 1, summary.line()
"""


def test_a_sweep_waits_for_a_live_owner_and_reads_its_result(tmp_path, capsys, fast_polls):
    store = RunStore(tmp_path / "runs")
    shared, own = configs([0, 1])
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.root), "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
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
        rf"waiting for 1 run claimed by another process \(1 held by process {holder.pid} \(python\S* -c .*\): "
        rf"{run_id(shared)}\)",
        err,
    ), err
    assert store.claimed() == {}


def test_a_sweep_computes_a_run_whose_owner_died_while_it_waited(tmp_path, capsys, fast_polls, sleeper):
    store = RunStore(tmp_path / "runs")
    cfg = configs([0])[0]
    (store.root / ".claims").mkdir()
    claim_path(store, run_id(cfg)).write_text(f"{HOST} {sleeper.pid}")
    threading.Timer(1.0, sleeper.kill).start()  # killed, and never reaped meanwhile (a zombie is gone too)
    summary = run_sweep([cfg], store, threads=1)
    assert summary.done == 1 and summary.waited == 1 and not summary.skipped
    # a claim as an older harness wrote it (no start time): the line says how to clear it if the pid is no sweep
    assert (
        f"1 held by process {sleeper.pid} (sleep 120); if that is not a sweep of this store, remove its claims "
        f"(`rm {claim_path(store, run_id(cfg))}`): {run_id(cfg)}"
    ) in capsys.readouterr().err
    assert store.is_complete(run_id(cfg)) and store.claimed() == {}


def test_the_wait_is_bounded_by_wait_limit(tmp_path, sleeper, fast_polls):
    store = RunStore(tmp_path / "runs")
    cfg, other = configs([0, 1])
    (store.root / ".claims").mkdir()
    claim_path(store, run_id(cfg)).write_text(f"{HOST} {sleeper.pid}")
    t0 = time.monotonic()
    summary = run_sweep([cfg, other], store, threads=1, wait_limit_s=0.5)
    assert time.monotonic() - t0 < 30
    assert summary.done == 1 and [run_id(c) for c, _ in summary.skipped] == [run_id(cfg)]
    assert f"still claimed by another sweep ({HOST} {sleeper.pid}) after waiting 0.5 s" in summary.skipped[0][1]
    assert claim_path(store, run_id(cfg)).read_text() == f"{HOST} {sleeper.pid}"  # a live owner's claim is never taken
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="--wait-limit"):
        run_sweep([cfg], store, wait_limit_s=float("nan"))


def test_no_wait_skips_a_claimed_run_as_before(tmp_path, capsys, sleeper):
    store = RunStore(tmp_path / "runs")
    cfg, other = configs([0, 1])
    exp = tmp_path / "two.py"
    exp.write_text(EXPERIMENT.format(name="w", seeds=[0, 1]))
    (store.root / ".claims").mkdir()
    claim_path(store, run_id(cfg)).write_text(f"{HOST} {sleeper.pid}")
    t0 = time.monotonic()
    assert main(["run", str(exp), "--profile", "smoke", "--store", str(store.root), "--threads", "1", "--no-wait"]) == 1
    assert time.monotonic() - t0 < 60
    out, err = capsys.readouterr()
    assert "2 runs: 1 computed, 0 cached, 0 failed, 1 skipped" in out and "waited" not in out
    assert f"skipped run {run_id(cfg)}: claimed by another sweep ({HOST} {sleeper.pid})" in err
    assert not store.is_complete(run_id(cfg)) and store.is_complete(run_id(other))
    assert run_sweep([cfg], store, wait=False).skipped[0][1] == f"claimed by another sweep ({HOST} {sleeper.pid})"


def cli(*args):
    env = dict(os.environ, HARNESS_PROGRESS="0")
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_two_sweeps_of_overlapping_studies_started_together_both_finish(tmp_path):
    """Before, the sweep that met runs the other had claimed skipped them and exited 1."""
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
    assert any("(waited" in out for out, _ in outs), outs  # one of them met the other's claims
    store = RunStore(store_dir)
    assert store.claimed() == {} and len(store.run_ids()) == 6
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
        return subprocess.run(
            ["make", "-s", "print-store", *args], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    assert store(None) == str(tmp_path / "runs")
    assert store(str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere")
    assert store("relative") == str(tmp_path / "relative")
    assert store(str(tmp_path / "elsewhere"), "STORE=mine") == str(tmp_path / "mine")  # STORE= still wins
