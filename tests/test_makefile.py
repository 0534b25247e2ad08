"""The Makefile builds files from the files they depend on: editing one file rebuilds exactly what
depends on it. Checked with `make -n` on a scratch copy of the tree whose outputs are all up to date."""

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STUDIES = [
    "mc_vs_ws",
    "keep_sweep",
    "data_size",
    "features",
    "coadaptation",
    "rate_grid",
    "placement",
    "exact",
    "ensemble_vs_dropout",
    "shift",
]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def figures() -> dict[str, str]:
    """{figure: study} as the Makefile declares them."""
    text = (ROOT / "Makefile").read_text()
    return dict(re.findall(r"^study_(\w+) := (\w+)$", text, flags=re.M))


@pytest.fixture
def tree(tmp_path):
    """The sources (empty stand-ins: make reads only names and times) and every output, oldest
    first, so that `make -q all` says everything is up to date."""
    t = tmp_path / "tree"
    sources = ["Makefile", "pyproject.toml"] + [
        str(p.relative_to(ROOT)) for d in ("harness", "analysis", "experiments") for p in (ROOT / d).rglob("*.py")
    ]
    outputs = [".venv/bin/python", ".venv/.installed"]
    outputs += [f"reports/quick/.runs/{s}" for s in STUDIES] + [
        f"reports/quick/tables/{s}/runs.parquet" for s in STUDIES
    ]
    outputs += [f"figures/quick/{f}.png" for f in figures()] + ["reports/quick/index.html"]
    for age, rel in enumerate(sources + outputs):
        p = t / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes((ROOT / rel).read_bytes() if rel == "Makefile" else b"")
        os.utime(p, (1_000_000 + age, 1_000_000 + age))
    return t


def planned(tree: Path, touched: str) -> list[str]:
    """The commands `make -n all` would run after `touched` is edited."""
    os.utime(tree / touched, (2_000_000, 2_000_000))
    out = subprocess.run(["make", "-n", "all"], cwd=tree, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if ".venv/bin/python" in line]


def kinds(commands: list[str]) -> dict[str, set[str]]:
    out = {"runs": set(), "tables": set(), "figures": set(), "report": set()}
    for c in commands:
        if m := re.search(r"harness run experiments/(\w+)\.py", c) or re.search(r"analysis\.looks (\w+)", c):
            out["runs"].add(m.group(1))
        elif m := re.search(r"analysis\.tables (\w+)", c):
            out["tables"].add(m.group(1))
        elif m := re.search(r"analysis\.fig_(\w+)", c):
            out["figures"].add(m.group(1))
        elif "analysis.report" in c:
            out["report"].add("report")
    return out


def test_everything_up_to_date_runs_nothing(tree):
    assert subprocess.run(["make", "-q", "all"], cwd=tree).returncode == 0


@pytest.mark.parametrize(
    "touched, runs, tables, figs",
    [
        ("analysis/fig_rate_grid.py", set(), set(), {"rate_grid"}),
        ("analysis/style.py", set(), set(), "all"),
        ("analysis/labels.py", "all", "all", "all"),
        ("analysis/paths.py", set(), set(), "all"),
        ("harness/stats/intervals.py", "all", "all", "all"),
        ("analysis/tables.py", "all", "all", "all"),
        ("experiments/placement.py", {"placement"}, {"placement"}, {"placement"}),
        # a study's looks continue while its claims are open: the claims decide how many seeds it runs
        ("analysis/claims.py", "all", "all", "all"),
        ("analysis/looks.py", "all", "all", "all"),
        ("harness/stats/verdicts.py", "all", "all", "all"),
        # shift analyses ensemble_vs_dropout's runs: editing that file reruns both
        (
            "experiments/ensemble_vs_dropout.py",
            {"ensemble_vs_dropout", "shift"},
            {"ensemble_vs_dropout", "shift"},
            {"diversity", "shift", "entropy"},
        ),
        ("experiments/shift.py", {"shift"}, {"shift"}, {"shift", "entropy"}),
    ],
)
def test_an_edit_rebuilds_exactly_what_depends_on_it(tree, touched, runs, tables, figs):
    got = kinds(planned(tree, touched))
    everything = set(STUDIES)
    assert got["runs"] == (everything if runs == "all" else runs)
    assert got["tables"] == (everything if tables == "all" else tables)
    assert got["figures"] == (set(figures()) if figs == "all" else figs)
    assert got["report"] == {"report"}  # the report reads every table and figure, and the claims


def test_the_report_depends_on_every_module_it_imports():
    text = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(REPORT\)/index\.html: (.*)$", text, flags=re.M).group(1)
    for dep in (
        "analysis/report.py",
        "analysis/claims.py",
        "analysis/presentation.py",
        "analysis/labels.py",
        "analysis/reference.py",
        "analysis/paths.py",
        "harness/stats/intervals.py",
        "harness/stats/verdicts.py",
        "harness/inference/coadaptation.py",
    ):
        assert dep in rule, dep
    assert ".DELETE_ON_ERROR:" in text


def test_version_floors_match_what_the_code_uses():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["requires-python"].strip() == ">=3.11"  # tomllib
    scipy = next(d for d in meta["dependencies"] if d.startswith("scipy"))
    assert scipy == "scipy>=1.15"  # stats.bootstrap(rng=...), stats.false_discovery_control


def test_tables_write_runs_parquet_then_the_manifest_last(tmp_path, monkeypatch):
    import pandas as pd

    import analysis.tables as tables

    (tmp_path / "manifest.json").write_text("{}")
    order = []
    monkeypatch.setattr(
        tables,
        "atomic_write",
        lambda path, data: order.append((Path(path).name, (tmp_path / "manifest.json").exists())),
    )
    tables.write(
        {
            "runs": pd.DataFrame({"a": [1]}),
            "evaluations": pd.DataFrame({"b": [2]}),
            "subnetworks": pd.DataFrame({"c": [3]}),
        },
        tmp_path,
    )
    assert [name for name, _ in order] == [
        "evaluations.parquet",
        "subnetworks.parquet",
        "runs.parquet",
        "manifest.json",
    ]
    assert not any(had for _, had in order)  # the old manifest went first: a folder killed half-way has none


def test_make_collects_again_a_study_whose_tables_do_not_match_their_manifest(tree):
    """Eight bytes flipped in a collected table (issue 25, item 1): before, make took it as up to
    date and the claims read it. Now make collects that study again, and what depends on it."""
    import sys

    import pandas as pd

    import analysis.tables as tables

    (tree / ".venv" / "bin" / "python").unlink()
    (tree / ".venv" / "bin" / "python").symlink_to(sys.executable)
    (tree / "harness" / "output_manifest.py").write_bytes((ROOT / "harness" / "output_manifest.py").read_bytes())
    os.utime(tree / "harness" / "output_manifest.py", (1_000_000, 1_000_000))  # the library as old as before
    for s in STUDIES:
        folder = tree / "reports" / "quick" / "tables" / s
        tables.write(
            {"runs": pd.DataFrame({"a": range(100)}), "evaluations": pd.DataFrame({"kl_ws": [0.028] * 100})}, folder
        )
        for p in folder.iterdir():
            os.utime(p, (1_500_000, 1_500_000))  # older than the figures and the report, newer than the runs
    os.utime(tree / "reports/quick/index.html", (1_600_000, 1_600_000))
    for p in (tree / "figures" / "quick").glob("*.png"):
        os.utime(p, (1_550_000, 1_550_000))
    assert subprocess.run(["make", "-q", "all"], cwd=tree).returncode == 0
    table = tree / "reports" / "quick" / "tables" / "mc_vs_ws" / "evaluations.parquet"
    data = table.read_bytes()
    mid = len(data) // 2
    table.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 8]) + data[mid + 8 :])
    os.utime(table, (1_500_000, 1_500_000))  # its time unchanged: only the manifest tells
    out = subprocess.run(["make", "-n", "all"], cwd=tree, capture_output=True, text=True, check=True).stdout
    got = kinds([line for line in out.splitlines() if ".venv/bin/python" in line])
    assert got["tables"] == {"mc_vs_ws"} and got["runs"] == set()
    assert got["figures"] == {"mc_convergence", "subnetwork_errors"} and got["report"] == {"report"}


def test_a_dataset_path_with_spaces_works_in_make_as_on_the_command_line(tmp_path):
    """Before, `make all DATASET="/path/with space/my data.npz"` said the existing file did not exist."""
    folder = tmp_path / "with space"
    folder.mkdir()
    (folder / "my data.npz").write_bytes(b"")
    args = [
        "make",
        "-n",
        "experiments",
        "PROFILE=smoke",
        f"DATASET={folder / 'my data.npz'}",
        f"STORE={tmp_path / 'st'}",
        f"OUT={tmp_path / 'o'}",
    ]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"analysis.looks mc_vs_ws --profile smoke --dataset '{folder / 'my data.npz'}' --stamp" in done.stdout
    args[4] = f"DATASET={folder / 'no data.npz'}"
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and f"DATASET={folder / 'no data.npz'}: no such file" in done.stderr
