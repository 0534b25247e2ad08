"""The Makefile builds files from the files they depend on: editing one file rebuilds exactly what
depends on it. Checked with `make -n` on a scratch copy of the tree whose outputs are all up to date."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.sweep import studies as registry

ROOT = Path(__file__).resolve().parent.parent
STUDIES = registry.names()  # the one list the Makefile reads (`python -m harness.sweep.studies make`)
FIGURES = registry.figures()  # {figure: the study whose tables it reads}
# the files make itself reads when it starts: the Makefile, and the list of studies it asks Python for
READ_BY_MAKE = ("Makefile", "harness/sweep/studies.py")


def figures_of(*studies: str) -> set[str]:
    """The figures drawn from these studies' tables."""
    return {fig for fig, study in FIGURES.items() if study in studies}


pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@pytest.fixture
def tree(tmp_path):
    """The sources (empty stand-ins but for READ_BY_MAKE: make reads only names and times) and every output, oldest
    first, so that `make -q all` says everything is up to date."""
    t = tmp_path / "tree"
    sources = ["Makefile", "pyproject.toml"] + [
        str(p.relative_to(ROOT)) for d in ("harness", "analysis", "experiments") for p in (ROOT / d).rglob("*.py")
    ]
    outputs = [".venv/bin/python", ".venv/.installed"]
    outputs += [f"reports/quick/.runs/{s}" for s in STUDIES] + [
        f"reports/quick/tables/{s}/runs.parquet" for s in STUDIES
    ]
    outputs += [f"figures/quick/{f}.png" for f in FIGURES] + ["reports/quick/index.html"]
    for age, rel in enumerate(sources + outputs):
        p = t / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes((ROOT / rel).read_bytes() if rel in READ_BY_MAKE else b"")
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


def test_make_takes_the_studies_from_the_registry(tree):
    out = subprocess.run(["make", "-s", "help"], cwd=tree, capture_output=True, text=True, check=True).stdout
    assert f"STUDY in: {' '.join(STUDIES)}" in out
    words = subprocess.run(
        [sys.executable, "-m", "harness.sweep.studies", "make"], cwd=tree, capture_output=True, text=True, check=True
    ).stdout.split()
    assert words[: len(STUDIES)] == [f"s/{s}" for s in STUDIES]
    assert words[len(STUDIES) :] == [f"f/{f}={s}" for f, s in FIGURES.items()]


@pytest.mark.parametrize(
    "touched, runs, tables, figs",
    [
        ("analysis/fig_rate_grid.py", set(), set(), {"rate_grid"}),
        ("analysis/style.py", set(), set(), "all"),
        ("analysis/labels.py", "all", "all", "all"),
        ("analysis/paths.py", set(), set(), "all"),
        ("harness/stats/intervals.py", "all", "all", "all"),
        ("analysis/tables.py", "all", "all", "all"),
        ("experiments/placement.py", {"placement"}, {"placement"}, figures_of("placement")),
        # a study's looks continue while its claims are open: the claims decide how many seeds it runs
        ("analysis/claims.py", "all", "all", "all"),
        ("analysis/looks.py", "all", "all", "all"),
        ("harness/stats/verdicts.py", "all", "all", "all"),
        # shift analyses ensemble_vs_dropout's runs: editing that file reruns both
        (
            "experiments/ensemble_vs_dropout.py",
            {"ensemble_vs_dropout", "shift"},
            {"ensemble_vs_dropout", "shift"},
            figures_of("ensemble_vs_dropout", "shift"),
        ),
        ("experiments/shift.py", {"shift"}, {"shift"}, figures_of("shift")),
    ],
)
def test_an_edit_rebuilds_exactly_what_depends_on_it(tree, touched, runs, tables, figs):
    got = kinds(planned(tree, touched))
    everything = set(STUDIES)
    assert got["runs"] == (everything if runs == "all" else runs)
    assert got["tables"] == (everything if tables == "all" else tables)
    assert got["figures"] == (set(FIGURES) if figs == "all" else figs)
    assert got["report"] == {"report"}  # the report reads every table and figure, and the claims


def test_the_report_depends_on_every_module_it_imports():
    """Every analysis module the report imports (found by importing it, not typed here) is a prerequisite of
    the report's rule, so that editing one rebuilds the report; the library's modules rebuild it through the
    studies' stamps, which depend on all of harness/."""
    text = (ROOT / "Makefile").read_text()
    rule = re.search(r"^\$\(REPORT\)/index\.html: (.*)$", text, flags=re.M).group(1)
    code = "import sys, analysis.report; print(' '.join(sorted(m for m in sys.modules if m.startswith('analysis.'))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    imported = [m.replace(".", "/") + ".py" for m in out.split()]
    assert "analysis/claim_specs.py" in imported and len(imported) >= 8
    assert [m for m in imported if m not in rule.split()] == []
    assert "$(LIB)" in re.search(r"^\$\(STAMPS\)/%: (.*)$", text, flags=re.M).group(1)
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
    import pandas as pd

    import analysis.tables as tables

    (tree / ".venv" / "bin" / "python").unlink()
    (tree / ".venv" / "bin" / "python").symlink_to(sys.executable)
    for module in ("harness/store/output_manifest.py", "harness/config.py", "harness/errors.py"):  # what make runs
        (tree / module).write_bytes((ROOT / module).read_bytes())
        os.utime(tree / module, (1_000_000, 1_000_000))  # the library as old as before
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
    assert got["figures"] == figures_of("mc_vs_ws") and got["report"] == {"report"}


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


TOY_EXPERIMENT = '''"""A toy study: one tiny network with and without dropout on its hidden layer."""

from harness.sweep.profiles import base, replicates

NAME = "toy"


def configs(profile: str):
    b = base(profile).replace(**{"model.widths": [8]})
    return [b.replace(seed=s, **{"model.p_drop_hidden": [p]}) for p in (0.0, 0.5) for s in replicates(profile)]
'''

TOY_FIGURE = '''"""A toy figure: the toy study's test error against its dropout rate."""

import sys

from . import style
from .tables import load


def draw(profile: str):
    runs = load(profile, "toy", "runs")
    fig, axes = style.figure(ncols=1, width=3.0, height=2.5)
    axes[0][0].plot(runs.p_drop_hidden, 100 * runs.test_error, "o")
    return fig, f"n = {style.n_runs(runs)} runs."


if __name__ == "__main__":
    sys.exit(style.run("toy", draw))
'''


def copy_of_the_repository(dest: Path) -> Path:
    """The repository's files as a fresh clone would hold them (tracked, and new files git does not
    ignore), without runs, outputs or the virtual environment."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for rel in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / rel).is_file():  # a tracked file deleted in the working tree is not copied
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def test_a_study_added_in_one_line_gets_its_runs_tables_figure_and_plan(tmp_path):
    """Adding a study: one line in `harness.sweep.studies.STUDIES`, its experiment file and its figure
    script. Then `make` plans its runs, tables and figure and the report reads them, and the plan
    counts its runs; nothing is trained (`make -n`, and the plan without calibration)."""
    repo = copy_of_the_repository(tmp_path / "repo")
    studies_py = repo / "harness" / "sweep" / "studies.py"
    text = studies_py.read_text()
    end = text.index("\n}\n", text.index("STUDIES: "))  # the end of the STUDIES dict
    studies_py.write_text(text[:end] + '\n    "toy": ("toy",),' + text[end:])
    (repo / "experiments" / "toy.py").write_text(TOY_EXPERIMENT)
    (repo / "analysis" / "fig_toy.py").write_text(TOY_FIGURE)
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_OUT", "HARNESS_STORE", "MAKEFLAGS", "MAKELEVEL")}

    def make_n(target: str) -> dict[str, set[str]]:
        # PYTHON: the Python that reads the list of studies when make starts (the system's may be older than 3.11)
        done = subprocess.run(
            ["make", "-n", target, f"PYTHON={sys.executable}"], cwd=repo, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return kinds([line for line in done.stdout.splitlines() if ".venv/bin/python" in line])

    got = make_n("toy")
    assert (got["runs"], got["tables"], got["figures"]) == ({"toy"}, {"toy"}, {"toy"})
    got = make_n("all")
    assert got["runs"] == got["tables"] == {*STUDIES, "toy"}
    assert got["figures"] == {*FIGURES, "toy"} and got["report"] == {"report"}

    done = subprocess.run(
        [sys.executable, "-m", "harness.sweep.plan", "--profile", "smoke", "--calibrate-s", "0", "--json"],
        cwd=repo,  # `python -m` puts the copy first on sys.path: its harness, its experiments
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    planned = {row["study"]: row for row in json.loads(done.stdout)["studies"]}
    assert list(planned) == [*STUDIES, "toy"]
    # 2 arms x the smoke profile's 5 replicates; its grid of one learning rate tunes nothing
    assert (planned["toy"]["runs"], planned["toy"]["tuning_runs"]) == (10, 0)
