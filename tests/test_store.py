import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from harness.store.identity import run_id
from harness.store.manifest import MANIFEST, RUN_FILES
from harness.store.runs import RunStore
from harness.sweep.run import execute

RUNS_COLUMNS = {
    "run_id",
    "experiment",
    "dataset",
    "model",
    "widths",
    "p_drop_input",
    "p_drop_hidden",
    "seed",
    "train_size",
    "epochs",
    "status",
    "wall_time_s",
    "train_loss",
    "train_error",
    "test_loss",
    "test_error",
}


def test_run_folder_holds_everything_and_reruns_are_cached(store, tiny_cfg):
    rec = execute(tiny_cfg, store)
    assert rec.path.name == run_id(tiny_cfg) and not rec.cached
    assert sorted(os.listdir(rec.path)) == sorted([*RUN_FILES, MANIFEST])
    prov = json.loads((rec.path / "provenance.json").read_text())
    assert {"torch", "numpy", "git_commit", "host", "device"} <= set(prov)
    assert store.load_config(rec.run_id) == tiny_cfg
    mtime = (rec.path / "checkpoint.pt").stat().st_mtime_ns
    again = execute(tiny_cfg, store)
    assert again.cached and (rec.path / "checkpoint.pt").stat().st_mtime_ns == mtime
    forced = execute(tiny_cfg, store, force=True)
    assert not forced.cached and store.run_ids() == [run_id(tiny_cfg)]
    table = store.runs_table()
    assert RUNS_COLUMNS <= set(table.columns) and len(table) == 1


def test_a_failing_write_leaves_nothing(store):
    def write(folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.commit("abc123", write)
    assert os.listdir(store.root) == []


def test_a_killed_writer_leaves_no_run_and_its_debris_is_cleaned(tmp_path):
    root = tmp_path / "runs"
    script = textwrap.dedent(f"""
        import os
        from harness.store.runs import RunStore
        def write(folder):
            (folder / "config.json").write_text("{{}}")
            os._exit(9)   # killed mid-write
        RunStore({str(root)!r}).commit("abc123", write)
    """)
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == []
    store = RunStore(root)  # a new store sweeps away folders of dead writers
    assert os.listdir(root) == [] and not store.is_complete("abc123")


def test_tables_are_tidy_and_readable_with_pandas(store, tiny_cfg):
    rec = execute(tiny_cfg, store)
    store.write_table(
        rec.run_id, "evaluations", pd.DataFrame({"run_id": [rec.run_id], "metric": ["error"], "value": [0.1]})
    )
    df = pd.read_parquet(rec.path / "evaluations.parquet")
    assert df.to_dict("records") == [{"run_id": rec.run_id, "metric": "error", "value": 0.1}]
    assert len(store.read_table("evaluations")) == 1


def test_a_damage_error_crosses_process_boundaries_whole():
    """A worker's DamageError reaches the parent (pickled by pools and Ray) with its record and words."""
    import pickle

    from harness.store.damage import Damage, DamageError

    err = DamageError(Damage(Path("/s"), "abc123", {"history.parquet": "truncated: 1 of 9 bytes"}, {}))
    back = pickle.loads(pickle.dumps(err))
    assert back.damage == err.damage and str(back) == str(err) and "abc123" in str(back)
