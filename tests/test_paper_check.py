"""`make paper-check`: every study of the paper profile end to end on stand-in files, in minutes."""

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness.data.datasets import load_raw
from harness.data.standins import write_all
from harness.store.runs import RunStore
from harness.sweep.studies import names

ROOT = Path(__file__).resolve().parent.parent


def test_stand_ins_are_read_by_the_real_loaders(tmp_path, monkeypatch):
    write_all(tmp_path)
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    for name, shape in (("mnist", (1, 28, 28)), ("fashion-mnist", (1, 28, 28)), ("cifar10", (3, 32, 32))):
        raw = load_raw(name)  # the same parsing and checks as the real files
        assert raw.x.shape[1:] == shape and raw.x_test.shape[1:] == shape and sorted(set(raw.y)) == list(range(10))


@pytest.mark.slow
def test_paper_check_runs_every_study_of_the_paper_profile_end_to_end(tmp_path):
    """`make -j2 paper-check` on a fresh store exits 0 with every study's tables, the claims and the
    page. It is also the make -j2 regression test on a fresh store: before, the `shift` sweep met the
    runs the concurrent `ensemble_vs_dropout` sweep had leased and exited 1, so make exited 2; no
    lease may be left behind."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HARNESS_OUT", "HARNESS_STORE", "HARNESS_DATA_DIR", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    # -j2: two studies at a time (each with two one-thread workers) overlap the start-up of the
    # processes that dominate a three-step check: 257 s against 288 s one study at a time (2-core CPU)
    done = subprocess.run(
        ["make", "--no-print-directory", "-j2", "paper-check", f"CHECK_DIR={tmp_path}", "WORKERS=2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "paper-check passed" in done.stdout
    assert "leased by another sweep" not in done.stderr
    assert RunStore(tmp_path / "runs").leases.owners() == {}
    report = tmp_path / "reports" / "paper"
    for study in names():
        runs = pd.read_parquet(report / "tables" / study / "runs.parquet")
        assert len(runs) and set(runs.profile) == {"paper"} and runs.steps.max() == 3  # cut down, and every run trained
        assert json.loads((report / "tables" / study / "adaptation.json").read_text())["notes"][0].startswith(
            "paper-check:"
        )
    assert set(pd.read_parquet(report / "tables" / "placement" / "runs.parquet").dataset) == {
        "cifar10"
    }  # the paper's layout
    claims = pd.read_csv(report / "claims.csv")
    assert {"C1", "C2", "C5", "C7", "C9", "C10"} <= set(claims.claim)
    page = (report / "index.html").read_text()
    assert (
        "its numbers are not results" in page and "Srivastava" in page
    )  # the check's caveat and the reference numbers
