"""Collected tables are verified (issue 25, item 1): each study's tables folder has a manifest
(size and SHA-256 of every file, written last), every reader checks the bytes it reads against it,
and a damaged or missing table is named with the make command that collects it again, exit 2.
Before, 8 flipped bytes in a collected evaluations table turned a KL divergence of 0.028 into
-153.7 and the claims and figures exited 0."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_analysis import robustness_table

from analysis import claims, fig_shift, generality, report, style, tables
from harness.cli import main as harness_main
from harness.store.output_manifest import MANIFEST

ROOT = Path(__file__).resolve().parent.parent
SHIFT = robustness_table(
    lambda method, name, r, m: (
        {("dropout", "mc_shared", 6): 0.5, ("dropout", "ensemble", 2): 0.7}.get(method, 0.0) + r / 100
    )
)


def flip(path: Path) -> None:
    data = path.read_bytes()
    mid = len(data) // 2
    path.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 8]) + data[mid + 8 :])


@pytest.fixture
def out(tmp_path, monkeypatch):
    """An output folder with the shift study's tables collected in two settings."""
    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    for setting in ("quick", "quick-mnist1d"):
        adapted = {"dataset": "mnist1d", "skipped": None, "notes": []} if setting != "quick" else None
        tables.write(
            {"runs": pd.DataFrame({"run_id": ["x"]}), "shift": SHIFT},
            tmp_path / "reports" / setting / "tables" / "shift",
            adapted,
        )
    return tmp_path


def test_the_manifest_lists_every_file_with_its_size_and_hash(out):
    folder = out / "reports" / "quick-mnist1d" / "tables" / "shift"
    listed = json.loads((folder / MANIFEST).read_bytes())["files"]
    assert sorted(listed) == ["adaptation.json", "runs.parquet", "shift.parquet"]
    assert listed["shift.parquet"]["size"] == (folder / "shift.parquet").stat().st_size
    pd.testing.assert_frame_equal(tables.load("quick", "shift", "shift"), SHIFT)


@pytest.mark.parametrize("how", ["flip", "truncate", "remove", "manifest", "unlisted"])
def test_every_reader_refuses_a_damaged_table_by_name_with_exit_2(out, capsys, how):
    folder = out / "reports" / "quick" / "tables" / "shift"
    table = folder / "shift.parquet"
    if how == "flip":
        flip(table)
    elif how == "truncate":
        table.write_bytes(table.read_bytes()[:100])
    elif how == "remove":
        table.unlink()
    elif how == "manifest":  # a collection killed after its tables, before its manifest
        (folder / MANIFEST).unlink()
    else:
        SHIFT.to_parquet(folder / "extra.parquet")
    what = {
        "flip": "shift.parquet: changed: its SHA-256 differs from the manifest's",
        "truncate": "shift.parquet: truncated: 100 of",
        "remove": "shift.parquet: missing",
        "manifest": "manifest.json: missing",
        "unlisted": "extra.parquet: not in the folder's manifest",
    }[how]
    fix = (
        "collect them again: `make shift PROFILE=quick OUT="
        + str(out)
        + "` (or `python -m analysis.tables shift --profile quick`)"
    )
    readers = {
        "claims": (claims.main, ["--profile", "quick"]),
        "report": (report.main, ["--profile", "quick"]),
        "generality": (generality.main, ["--profile", "quick", "--datasets", "mnist5k,mnist1d"]),
    }
    for name, (main, argv) in readers.items():
        assert tables.exit_2(main, argv) == 2, name
        err = capsys.readouterr().err
        assert (
            f"the collected tables of shift (quick) in {folder} are damaged or incomplete: {what}" in err and fix in err
        ), name
    if how != "unlisted":  # a figure reads only its own tables
        assert style.run("shift", fig_shift.draw, ["--profile", "quick"]) == 2
        err = capsys.readouterr().err
        assert what in err and fix in err
        assert not (out / "figures" / "quick" / "shift.png").exists()


def test_the_claims_command_exits_2_from_outside(out):
    flip(out / "reports" / "quick" / "tables" / "shift" / "shift.parquet")
    env = dict(os.environ, HARNESS_OUT=str(out))
    done = subprocess.run(
        [sys.executable, "-m", "analysis.claims", "--profile", "quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "shift.parquet: changed" in done.stderr and "Traceback" not in done.stderr


def test_verify_checks_an_output_folder(out, tmp_path, capsys):
    store = tmp_path / "store"
    store.mkdir()
    assert harness_main(["verify", "--store", str(store), "--out", str(out)]) == 0
    assert "2 table folders checked under" in capsys.readouterr().out
    flip(out / "reports" / "quick-mnist1d" / "tables" / "shift" / "shift.parquet")
    assert harness_main(["verify", "--store", str(store), "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert (
        f"tables {out}/reports/quick-mnist1d/tables/shift: shift.parquet: changed: its SHA-256 differs from the "
        f"manifest's; collect them again: `make shift PROFILE=quick DATASET=mnist1d OUT={out}`"
    ) in text
    assert harness_main(["verify", "--store", str(store), "--out", str(tmp_path / "nosuch")]) == 2


def test_the_rebuild_command_of_a_npz_setting_names_its_file(tmp_path, monkeypatch):
    from harness.store.output_manifest import rebuild_command
    from harness.sweep.setting import Setting

    monkeypatch.setenv("HARNESS_OUT", str(tmp_path))
    path = str(tmp_path / "my data.npz")
    setting = Setting("smoke", path).name
    tables.write(
        {"runs": pd.DataFrame({"run_id": ["x"]})},
        tmp_path / "reports" / setting / "tables" / "exact",
        {"dataset": path, "skipped": None, "notes": []},
    )
    assert tables.rebuild_command(setting, "exact") == (
        f"`make exact PROFILE=smoke DATASET='{path}' OUT={tmp_path}` (or `python -m analysis.tables exact --profile "
        f"smoke --dataset '{path}'`)"
    )
    assert "DATASET=PATH/OF/THE.npz" in rebuild_command(setting, "exact")  # no folder to read the path from
