"""The store's integrity under kills, full disks and concurrent commands, and bad values refused with
exit 2 before anything is written (issue 10). Each test reproduces a hole found in review."""

import math
import os
import socket
import subprocess
from pathlib import Path

import pytest

import harness.store.manifest
import harness.store.provenance
from harness.cli import main
from harness.config import RunConfig, TrainConfig
from harness.errors import ConfigError, StoreError
from harness.inference.evaluation import MCSettings
from harness.store.identity import run_id
from harness.sweep.evaluations import Evaluations
from harness.sweep.executors import run_sweep
from harness.sweep.run import evaluate_stored, execute, pending, run_state


def mc(T, streams):
    return Evaluations(mc=MCSettings(T=T, streams=streams, per_example=False))


def test_an_evaluation_killed_half_written_is_pending_not_mixed(store, tiny_cfg, monkeypatch):
    rid = execute(tiny_cfg, store, evaluations=mc(4, 2)).run_id
    real = harness.store.manifest.atomic_write

    def full_disk(path, data):
        if path.name == "subnetworks.parquet":  # evaluations.parquet already replaced: the old way this mixed settings
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(harness.store.manifest, "atomic_write", full_disk)
    with pytest.raises(StoreError, match="No space left on device"):  # a full store is named, not a traceback
        evaluate_stored(store, rid, mc(20, 3))
    monkeypatch.setattr(harness.store.manifest, "atomic_write", real)
    # neither the old settings nor the new ones vouch for these tables now
    assert pending(store, rid, mc(4, 2)).kinds() == ["mc"] and pending(store, rid, mc(20, 3)).kinds() == ["mc"]
    assert not store.leases.holds(rid) and not store.leases.owners()  # the lease taken for the evaluation is released
    summary = run_sweep([tiny_cfg], store, evaluations=mc(20, 3))  # the sweep evaluates again, never "cached"
    assert not summary.records[0].cached
    ev, subs = store.read_table("evaluations", [rid]), store.read_table("subnetworks", [rid])
    assert ev[ev["mode"] == "mc_shared"].k.max() == 20 and ev.repeat.nunique() == 3 and len(subs) == 20 * 3


def test_a_run_evaluated_elsewhere_is_not_evaluated_twice_at_once(store, tiny_cfg, capsys):
    rid = execute(tiny_cfg, store).run_id
    other = subprocess.Popen(["sleep", "60"])
    try:
        (store.root / ".claims").mkdir(exist_ok=True)
        (store.root / ".claims" / rid).write_text(f"{socket.gethostname()} {other.pid}")
        with pytest.raises(StoreError, match="being trained or evaluated by"):
            evaluate_stored(store, rid, mc(4, 2))
        assert main(["mc", rid, "--T", "4", "--streams", "2", "--store", str(store.root)]) == 2
        assert "being trained or evaluated" in capsys.readouterr().err
        assert not (store.path(rid) / "evaluations.parquet").exists()
    finally:
        other.kill()
        other.wait()
    evaluate_stored(store, rid, mc(4, 2))  # the owner is gone: its lease is taken over
    assert not pending(store, rid, mc(4, 2)).kinds()


@pytest.mark.parametrize(
    "override, field",
    [
        ("train.lr=NaN", "train.lr"),
        ("model.max_norm=Infinity", "model.max_norm"),
        ("model.p_drop_hidden=NaN", "model.p_drop_hidden[0]"),
        ("train.momentum=-Infinity", "train.momentum"),
    ],
)
def test_non_finite_numbers_are_refused_by_name(tmp_path, capsys, override, field):
    s = tmp_path / "s"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--set", override, "--store", str(s)]) == 2
    err = capsys.readouterr().err
    assert f"{field}=" in err and "must be a finite number" in err
    assert not any(p for p in s.iterdir() if not p.name.startswith(".")) if s.exists() else True


def test_non_finite_numbers_are_refused_when_configs_are_built_directly():
    with pytest.raises(ConfigError, match="train.lr=nan: must be a finite number"):
        TrainConfig(lr=math.nan)
    with pytest.raises(ConfigError, match="finite"):
        RunConfig().replace(**{"data.val_fraction": math.inf})


@pytest.mark.parametrize("flag", [["--threads", "-1"], ["--threads", "0"], ["--workers", "0"], ["--workers", "-3"]])
def test_bad_worker_and_thread_counts_never_reach_the_store(tmp_path, capsys, flag):
    s = tmp_path / "s"
    assert (
        main(["run", "experiments/exact.py", "--profile", "smoke", "--executor", "processes", *flag, "--store", str(s)])
        == 2
    )
    assert "must be a positive integer" in capsys.readouterr().err
    assert not s.exists()  # refused before the store folder is made


def test_run_sweep_refuses_bad_counts_before_leasing(store, tiny_cfg):
    with pytest.raises(ConfigError, match="threads=-1"):
        run_sweep([tiny_cfg], store, executor="processes", threads=-1)
    assert not store.leases.owners() and not (store.root / ".failed").exists() and not store.run_ids()


def test_a_damaged_checkpoint_names_the_run_and_the_fix(store, tiny_cfg, capsys):
    rid = execute(tiny_cfg, store).run_id
    ckpt = store.path(rid) / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: len(ckpt.read_bytes()) // 2])
    with pytest.raises(StoreError, match=f"run {rid}: checkpoint.pt is damaged"):
        store.load_state(rid)
    assert main(["mc", rid, "--T", "2", "--streams", "1", "--store", str(store.root)]) == 2
    err = capsys.readouterr().err
    assert rid in err and "--force" in err and "weights_only" not in err


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_debris_of_a_writer_killed_inside_add_files_is_cleaned(store, tiny_cfg):
    rid = execute(tiny_cfg, store).run_id
    dead = store.path(rid) / f".evaluations.parquet.{socket.gethostname()}-{_dead_pid()}-abcd1234.tmp"
    alive = store.path(rid) / f".evaluations.parquet.{socket.gethostname()}-{os.getpid()}-efgh5678.tmp"
    dead.write_bytes(b"partial")
    alive.write_bytes(b"being written")
    type(store)(store.root)  # any command opening the store
    assert not dead.exists() and alive.exists()


def test_a_truncated_run_file_is_reported_for_that_run_only(store, tiny_cfg, capsys):
    good = execute(tiny_cfg, store).run_id
    bad = execute(tiny_cfg.replace(seed=1), store).run_id
    path = store.path(bad) / "run.parquet"
    path.write_bytes(path.read_bytes()[:100])
    assert list(store.runs_table().run_id) == [good] and bad in store.damaged
    assert main(["runs", "--store", str(store.root)]) == 0
    captured = capsys.readouterr()
    assert good in captured.out and f"run {bad}: run.parquet is damaged" in captured.err
    row = next(
        line for line in captured.out.splitlines() if line.startswith(bad)
    )  # a row marked damaged, not left out (issue 25)
    assert (
        row.split()[:2] == [bad, "?"]
        and row.split().count("damaged") == 1
        and set(row.split()[2:]) <= {"NaN", "<NA>", "damaged"}
    )
    assert (
        next(line for line in captured.out.splitlines() if line.startswith(good)).split()[7] == "0"
    )  # the seed, still an integer
    with pytest.raises(StoreError, match="retrain the run with --force"):
        store.load_row(bad)
    st = run_state(store, bad)
    assert st.state == "damaged" and not st.trained
    summary = run_sweep([tiny_cfg, tiny_cfg.replace(seed=1)], store)  # the sweep retrains the damaged run only
    assert sorted(r.cached for r in summary.records) == [False, True] and store.load_row(bad)["status"] == "ok"


def test_files_of_a_new_run_are_on_disk_before_its_folder_is_renamed(store, tiny_cfg, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1]
    )
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))[1])
    rid = execute(tiny_cfg, store).run_id
    rename = events.index(("replace", str(store.path(rid))))
    synced = {Path(p).name for kind, p in events[:rename] if kind == "fsync"}
    assert {"config.json", "checkpoint.pt", "history.parquet", "run.parquet", "provenance.json"} <= synced


def test_mc_on_a_diverged_run_is_refused_with_exit_2(store, tiny_cfg, capsys):
    bad = tiny_cfg.replace(**{"train.lr": 1e12, "model.max_norm": None, "train.lr_schedule": "constant"})
    rid = execute(bad, store).run_id
    assert main(["mc", rid, "--T", "2", "--store", str(store.root)]) == 2
    assert f"run {rid} is diverged" in capsys.readouterr().err


TAKER = """
import os, sys, time, pathlib
from harness.store.runs import RunStore
store = RunStore(sys.argv[1])
here = pathlib.Path(sys.argv[2])
(here / f"ready-{os.getpid()}").touch()
while not (here / "start").exists():
    time.sleep(0.01)
print(store.leases.take("r1"), flush=True)
while not (here / "done").exists():
    time.sleep(0.02)
"""


def test_taking_over_a_dead_lease_is_atomic(tmp_path):
    """Two live processes find the same dead owner's lease. The first to reach the critical point
    (owner read, lease not yet removed) is held there; the other must not get past the same point
    meanwhile, and in the end exactly one holds the run."""
    import sys
    import time

    store = type_store(tmp_path)
    pause = tmp_path / "pause"
    pause.mkdir()
    env = dict(os.environ, HARNESS_TEST_PAUSE=str(pause))

    def wait_for(cond, timeout=60):
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            time.sleep(0.02)
        return cond()

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TAKER, str(store.root), str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    try:
        assert wait_for(lambda: all((tmp_path / f"ready-{p.pid}").exists() for p in procs))
        (store.root / ".claims").mkdir()
        (store.root / ".claims" / "r1").write_text(f"{socket.gethostname()} {_dead_pid()}")
        (tmp_path / "start").touch()
        assert wait_for(lambda: any(pause.glob("takeover-*")))
        time.sleep(1.0)  # the other process is leasing meanwhile
        held = list(pause.glob("takeover-*"))
        assert len(held) == 1  # only one past the read, the other waits for the lock
        (pause / "go").touch()
        results = [p.stdout.readline().strip() for p in procs]
        assert sorted(results) == ["False", "True"]
        winner = procs[results.index("True")]  # either may win the create that follows the removal
        assert (store.root / ".claims" / "r1").read_text().split()[:2] == [socket.gethostname(), str(winner.pid)]
    finally:
        (tmp_path / "done").touch()
        for p in procs:
            p.wait(timeout=60)


def type_store(tmp_path):
    from harness.store.runs import RunStore

    return RunStore(tmp_path / "runs")


BROKEN_EXPERIMENTS = {
    "import": ("import nonexistent_module_xyz\nNAME = 'x'\n", "importing it raised ModuleNotFoundError"),
    "syntax": ("NAME = 'x'\ndef configs(profile:\n", "syntax error at line 2"),
    "configs": (
        "NAME = 'x'\ndef configs(profile):\n    return [1 / 0]\n",
        "configs('smoke') raised ZeroDivisionError: division by zero (line 3)",
    ),
    "evaluations": (
        "from harness.config import RunConfig\nNAME = 'x'\ndef configs(profile):\n    return [RunConfig()]\ndef "
        "evaluations(profile):\n    raise RuntimeError('oops')\n",
        "evaluations('smoke') raised RuntimeError: oops (line 6)",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_EXPERIMENTS))
def test_a_broken_experiment_file_exits_2_naming_the_file_and_step(tmp_path, capsys, case):
    text, message = BROKEN_EXPERIMENTS[case]
    path = tmp_path / f"{case}.py"
    path.write_text(text)
    assert main(["run", str(path), "--profile", "smoke", "--store", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.split_seed=-1", "data.split_seed=-1: a seed must be an integer in [0, 2**63)"),
        ("seed=100000000000000000000000", "seed=100000000000000000000000: a seed must be"),
        ("seed=1e23", "seed=1e+23: expected int"),
        ("model.widths=100000000", "model.widths[0]=100000000: a layer this wide needs at least 1,168 GiB"),
    ],
)
def test_out_of_range_values_exit_2_and_write_nothing(tmp_path, capsys, override, message):
    s = tmp_path / "s"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--set", override, "--store", str(s)]) == 2
    assert message in capsys.readouterr().err
    assert not s.exists() or not [p for p in s.iterdir() if not p.name.startswith(".")]


def test_a_config_file_that_is_not_utf8_exits_2(tmp_path, capsys):
    bad = tmp_path / "c.toml"
    bad.write_bytes(b'experiment = "caf\xe9"\n')
    assert main(["train", "--config", str(bad), "--store", str(tmp_path / "s")]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_mc_with_a_negative_seed_exits_2(store, tiny_cfg, capsys):
    rid = execute(tiny_cfg, store).run_id
    assert main(["mc", rid, "--seed", "-1", "--store", str(store.root)]) == 2
    assert "seed=-1" in capsys.readouterr().err and not (store.path(rid) / "evaluations.parquet").exists()


def test_bad_store_paths_exit_2(tmp_path, capsys, monkeypatch):
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--store", ""]) == 2
    assert "--store is empty" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--store", str(afile)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    monkeypatch.setenv("HARNESS_STORE", "")
    assert main(["runs"]) == 2 and "HARNESS_STORE is empty" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_is_refused_before_computing_as_non_root(tmp_path, capsys):
    s = tmp_path / "s"
    s.mkdir()
    s.chmod(0o555)
    try:
        assert main(["train", "--dataset", "digits", "--epochs", "1", "--store", str(s)]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        s.chmod(0o755)


def test_a_store_that_cannot_take_files_is_refused_before_computing(store, tiny_cfg, monkeypatch, capsys):
    """A full disk (or a read-only mount) fails the probe write: nothing is trained first."""
    import harness.sweep.run

    trained = []
    monkeypatch.setattr(harness.sweep.run, "train", lambda *a, **k: trained.append(1))
    real_open = open

    def full(path, *args, **kwargs):
        if Path(str(path)).name.startswith(".probe-"):
            raise OSError(28, "No space left on device")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(StoreError, match="is not writable \\(No space left on device\\)"):
        execute(tiny_cfg, store)
    with pytest.raises(StoreError, match="not writable"):
        run_sweep([tiny_cfg], store)
    assert not trained and not store.run_ids() and not store.leases.owners()


def test_a_truncated_embedded_data_cache_is_rebuilt(tmp_path, monkeypatch):
    from harness.data.datasets import load_raw

    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    first = load_raw("mnist5k")
    cache = tmp_path / "mnist5k.npz"
    cache.write_bytes(cache.read_bytes()[:1000])  # truncated: numpy raises BadZipFile
    again = load_raw("mnist5k")
    assert (again.x == first.x).all() and (again.y == first.y).all()
    assert cache.stat().st_size > 1000  # rebuilt in place


def _idx(a, code=0x08, dims=None):
    import struct

    import numpy as np

    a = np.asarray(a)
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0D: ">f4"}[code]
    dims = a.shape if dims is None else dims
    return (
        struct.pack(">BBBB", 0, 0, code, len(dims))
        + struct.pack(">" + "I" * len(dims), *dims)
        + a.astype(dtype).tobytes()
    )


def _mnist_files(folder, train_x=None, train_y=None):
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "train-images-idx3-ubyte": train_x if train_x is not None else _idx(rng.integers(0, 256, (40, 28, 28))),
        "train-labels-idx1-ubyte": train_y if train_y is not None else _idx(np.arange(40) % 10),
        "t10k-images-idx3-ubyte": _idx(rng.integers(0, 256, (20, 28, 28))),
        "t10k-labels-idx1-ubyte": _idx(np.arange(20) % 10),
    }
    for name, blob in files.items():
        (folder / name).write_bytes(blob)


@pytest.mark.parametrize(
    "case, message",
    [
        ("overflow", "the header promises"),
        ("empty", "the training split holds zero examples"),
        ("negative", "the training labels include -3: labels must be >= 0"),
        ("nan", "the training images hold 3 NaN or infinite values"),
    ],
)
def test_damaged_idx_files_exit_2_naming_the_defect(tmp_path, monkeypatch, capsys, case, message):
    import numpy as np

    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    if case == "overflow":
        _mnist_files(tmp_path / "mnist", train_x=_idx(np.zeros((1, 28, 28)), dims=(2**31, 2**31, 2**31)))
    elif case == "empty":
        _mnist_files(tmp_path / "mnist", train_x=_idx(np.zeros((0, 28, 28))), train_y=_idx(np.zeros(0)))
    elif case == "negative":
        _mnist_files(tmp_path / "mnist", train_y=_idx(np.where(np.arange(40) == 5, -3, np.arange(40) % 10), code=0x09))
    else:
        x = np.random.default_rng(0).random((40, 28, 28))
        x[0, 0, :3] = np.nan
        _mnist_files(tmp_path / "mnist", train_x=_idx(x, code=0x0D))
    s = tmp_path / "s"
    assert main(["train", "--dataset", "mnist", "--epochs", "1", "--widths", "8", "--store", str(s)]) == 2
    assert message in capsys.readouterr().err
    assert not s.exists() or not [p for p in s.iterdir() if not p.name.startswith(".")]


def test_an_embedded_cache_of_the_wrong_shape_is_rebuilt(tmp_path, monkeypatch):
    import numpy as np

    from harness.data.datasets import load_raw

    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    first = load_raw("mnist5k")
    np.savez(tmp_path / "mnist5k.npz", x=np.zeros((5, 3)), y=np.zeros((5, 2), dtype=np.int64))
    again = load_raw("mnist5k")
    assert again.x.shape == first.x.shape and (again.y == first.y).all()


def test_a_run_trained_on_other_data_is_another_run(tmp_path, monkeypatch, store):
    """Fixing or replacing data files must not return the run trained on the old ones."""
    import json

    import numpy as np

    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    _mnist_files(tmp_path / "data" / "mnist")
    cfg = RunConfig(experiment="t").replace(
        **{"data.name": "mnist", "model.widths": [8], "train.epochs": 1, "data.val_fraction": 0.0}
    )  # 40 examples: too few for a validation split
    first = execute(cfg, store)
    prov = json.loads((store.path(first.run_id) / "provenance.json").read_text())
    assert prov["data_fingerprint"].startswith("40+20:") and prov["training_code"]
    rng = np.random.default_rng(1)  # same shapes, other pixels
    (tmp_path / "data" / "mnist" / "train-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (40, 28, 28))))
    assert run_id(cfg) != first.run_id
    second = execute(cfg, store)
    assert not second.cached and second.run_id != first.run_id and len(store.run_ids()) == 2


def test_studies_share_identical_runs_and_keep_their_labels(store, tiny_cfg):
    a, b = tiny_cfg.replace(experiment="study_a"), tiny_cfg.replace(experiment="study_b", profile="smoke")
    assert run_id(a) == run_id(b)  # the labels are not part of what is trained
    assert not run_sweep([a], store).records[0].cached and run_sweep([b], store).records[0].cached
    assert len(store.run_ids()) == 1


def test_runs_stale_lists_runs_of_changed_training_code(store, tiny_cfg, capsys, monkeypatch):
    with (
        monkeypatch.context() as m
    ):  # trained by other training code (editing provenance.json by hand would damage the run)
        m.setattr(harness.store.provenance, "training_code", lambda: "0" * 16)
        old = execute(tiny_cfg, store).run_id
    fresh = execute(tiny_cfg.replace(seed=1), store).run_id
    assert store.stale() == [old] and not store.damage(old)
    assert main(["runs", "--stale", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert old in out and fresh not in out and "1 runs were trained by training code that has changed" in out
