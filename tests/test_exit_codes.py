"""Every bad input listed in issue 16 (item 5) ends with exit status 2 and a message that names the
file, field or flag and the fix, never a traceback; refused commands write nothing.

The commands run in this process (`harness.cli.main`, `analysis.tables.main`): an exception that
escapes them fails the test, as a traceback would."""

from __future__ import annotations

import gzip
import shutil
import struct
import textwrap

import numpy as np
import pytest

from analysis import tables
from harness.cli import main

TINY = ["--dataset", "digits", "--widths", "8", "--epochs", "1"]


def run_cli(argv, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store holding one tiny finished run: (store folder, run id). Tests copy it before damaging it."""
    root = tmp_path_factory.mktemp("trained") / "s"
    assert main(["train", *TINY, "--store", str(root)]) == 0
    (run_id,) = [p.name for p in root.iterdir() if not p.name.startswith(".")]
    return root, run_id


@pytest.fixture
def store_copy(trained, tmp_path):
    root, run_id = trained
    shutil.copytree(root, tmp_path / "s")
    return tmp_path / "s", run_id


# -- damaged store files -------------------------------------------------------------------------


def test_non_utf8_mc_settings_is_an_evaluation_computed_again(store_copy, capsys):
    s, run_id = store_copy
    assert run_cli(["mc", run_id, "--T", "4", "--streams", "1", "--store", s], capsys)[0] == 0
    settings = (s / run_id / "mc_settings.json").read_bytes()
    (s / run_id / "mc_settings.json").write_bytes(b"\xff\xfe{not utf-8")
    rc, out, err = run_cli(["mc", run_id, "--T", "4", "--streams", "1", "--store", s], capsys)
    # A settings file is an evaluation's file, not a run file: its bytes no longer match the run's manifest, so
    # `harness.sweep.run.run_state` keeps the run done and makes its mc evaluation pending (never decoding the
    # damaged bytes), and `cmd_mc` computes it again: exit 0, with the settings file written afresh.
    assert rc == 0, err
    assert "evaluated" in out and "loaded from the store" not in out
    assert (s / run_id / "mc_settings.json").read_bytes() == settings


def test_garbage_failure_record_names_the_file(tmp_path, trained, capsys):
    _, run_id = trained
    s = tmp_path / "s"
    (s / ".failed").mkdir(parents=True)
    (s / ".failed" / f"{run_id}.json").write_bytes(b"garbage{\x00")
    rc, _, err = run_cli(["train", *TINY, "--store", s], capsys)
    assert rc == 2
    assert f".failed/{run_id}.json" in err and "delete it" in err
    assert not (s / run_id).exists()


@pytest.mark.parametrize(
    "command",
    [["mc", "--force", "--T", "4", "--streams", "1"], ["shift", "--T", "2", "--members", "2", "--angles", "0"]],
)
def test_truncated_config_json(store_copy, command, capsys):
    s, run_id = store_copy
    path = s / run_id / "config.json"
    path.write_bytes(path.read_bytes()[:50])
    rc, _, err = run_cli([command[0], run_id, *command[1:], "--store", s], capsys)
    assert rc == 2
    assert run_id in err and "config.json" in err and "retrain" in err


MINI = """
from harness.config import RunConfig
from harness.inference.ensembles import ensembles_of
from harness.inference.robustness import RobustnessSettings
from harness.sweep.evaluations import Evaluations

NAME = "mini"


def configs(profile):
    base = RunConfig().replace(**{"data.name": "digits", "model.widths": [8], "train.epochs": 1})
    return [base.replace(seed=s) for s in range(2)]


def ensembles(profile):
    return ensembles_of(configs(profile), 2)


def evaluations(profile):
    return Evaluations(robustness=RobustnessSettings(T=2, members=2, angles=(0,), corruptions=("shot_noise",),
                                                     severities=(1,),
                                                     unseen=("permuted",), per_example=("none",)))


def lr_grid(profile):
    return [0.05]
"""


def test_truncated_member_predictions_stop_the_collector_with_exit_2(tmp_path, monkeypatch, capsys):
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mini.py").write_text(MINI)
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    monkeypatch.setenv("HARNESS_OUT", str(tmp_path / "out"))
    s = tmp_path / "s"
    assert run_cli(["run", tmp_path / "experiments" / "mini.py", "--profile", "smoke", "--store", s], capsys)[0] == 0
    member = sorted(p for p in s.iterdir() if (p / "predictions.parquet").is_file())[0]
    data = (member / "predictions.parquet").read_bytes()
    (member / "predictions.parquet").write_bytes(data[: len(data) // 2])
    rc = tables.main(["mini", "--profile", "smoke", "--store", str(s)])
    err = capsys.readouterr().err
    assert rc == 2
    assert member.name in err  # the damaged run is named (the collector may also name the file)
    assert not (tmp_path / "out" / "reports" / "smoke" / "tables" / "mini" / "runs.parquet").exists()


# -- flags and config values ---------------------------------------------------------------------


def test_huge_widths_are_refused_before_allocating(tmp_path, capsys):
    rc, _, err = run_cli(["train", "--widths", "1000000,1000000", "--store", tmp_path / "s"], capsys)
    assert rc == 2
    assert "model.widths=[1000000, 1000000]" in err and "GiB" in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "fraction, needle", [(0.999999, "leaves no training examples"), (0.001, "holds out no validation examples")]
)
def test_a_split_without_examples_is_refused(tmp_path, fraction, needle, capsys):
    rc, _, err = run_cli(["train", *TINY, "--set", f"data.val_fraction={fraction}", "--store", tmp_path / "s"], capsys)
    assert rc == 2
    assert f"data.val_fraction={fraction} {needle}" in err
    assert not (tmp_path / "s").exists()


def test_duplicate_angles_are_refused_and_nothing_is_written(store_copy, capsys):
    s, run_id = store_copy
    before = sorted(p.name for p in (s / run_id).iterdir())
    rc, _, err = run_cli(["shift", run_id, "--angles", "90,90", "--store", s], capsys)
    assert rc == 2 and "angles=[90, 90]: 90 is listed twice" in err and "--angles" in err
    assert sorted(p.name for p in (s / run_id).iterdir()) == before


def test_reading_commands_do_not_create_a_missing_store(tmp_path, capsys):
    for argv in (["mc", "abc"], ["shift", "abc"], ["coadapt", "abc"], ["compare", "--experiment", "x"]):
        rc, _, err = run_cli([*argv, "--store", tmp_path / "nope"], capsys)
        assert rc == 2 and "does not exist" in err, argv
    assert not (tmp_path / "nope").exists()


# -- data files ----------------------------------------------------------------------------------


def idx_bytes(a: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.float32): 0x0D}[a.dtype]
    return (
        struct.pack(">BBBB", 0, 0, code, a.ndim)
        + struct.pack(">" + "I" * a.ndim, *a.shape)
        + a.astype(a.dtype.newbyteorder(">")).tobytes()
    )


def write_idx(folder, x, y, xt, yt):
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in (
        ("train-images-idx3-ubyte", x),
        ("train-labels-idx1-ubyte", y),
        ("t10k-images-idx3-ubyte", xt),
        ("t10k-labels-idx1-ubyte", yt),
    ):
        (folder / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(a)))


def images(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size)).astype(np.uint8)


LABELS = (np.arange(60) % 10).astype(np.uint8)
TEST_LABELS = (np.arange(20) % 10).astype(np.uint8)
DATA_CASES = {
    "sizes": (
        (images(60, 28), LABELS, images(20, 20), TEST_LABELS),
        ["train-images-idx3-ubyte.gz holds 28 x 28", "t10k-images-idx3-ubyte.gz holds 20 x 20"],
    ),
    "float labels": (
        (images(60, 28), LABELS.astype(np.float32), images(20, 28), TEST_LABELS),
        ["train-labels-idx1-ubyte.gz holds float32 labels", "integers"],
    ),
    "unseen test labels": (
        (images(60, 28), LABELS, images(20, 28), TEST_LABELS + 40),
        ["test labels include 40..49", "training labels: 0..9"],
    ),
    "no pixels": (
        (np.zeros((60, 0, 0), np.uint8), LABELS, np.zeros((20, 0, 0), np.uint8), TEST_LABELS),
        ["hold no pixels"],
    ),
    "constant": (
        (np.full((60, 28, 28), 7, np.uint8), LABELS, images(20, 28), TEST_LABELS),
        ["are constant", "standard deviation, 0"],
    ),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_degenerate_idx_files_are_refused_by_name(tmp_path, monkeypatch, case, capsys):
    arrays, needles = DATA_CASES[case]
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    write_idx(tmp_path / "data" / "mnist", *arrays)
    rc, _, err = run_cli(
        [
            "train",
            "--dataset",
            "mnist",
            "--widths",
            "8",
            "--epochs",
            "1",
            "--set",
            "data.val_fraction=0.5",
            "--store",
            tmp_path / "s",
        ],
        capsys,
    )
    assert rc == 2, err
    for needle in needles:
        assert needle in err
    assert not (tmp_path / "s").exists()  # no run stored as "diverged", no empty store


# -- experiment files ----------------------------------------------------------------------------

GOOD = """
from harness.config import RunConfig
NAME = "bad"
def configs(profile):
    return [RunConfig().replace(**{"data.name": "digits", "model.widths": [8], "train.epochs": 1})]
"""

EXPERIMENT_CASES = {
    "configs None": (GOOD.replace("return [", "["), "configs('smoke') returned NoneType, expected a list of RunConfig"),
    "configs int": (
        GOOD.replace("return [", "return 3 or ["),
        "configs('smoke') returned int, expected a list of RunConfig",
    ),
    "ensembles None": (
        GOOD + "def ensembles(profile):\n    pass\n",
        "ensembles('smoke') returned NoneType, expected a list of harness.inference.ensembles.Ensemble",
    ),
    "ensembles int": (GOOD + "def ensembles(profile):\n    return 7\n", "ensembles('smoke') returned int"),
    "evaluations str": (
        GOOD + "def evaluations(profile):\n    return 'mc'\n",
        "evaluations('smoke') returned str, expected harness.sweep.evaluations.Evaluations",
    ),
    "exit in configs": (
        GOOD.replace("    return [", "    import sys; sys.exit(3)\n    return ["),
        "configs('smoke') called sys.exit(3)",
    ),
    "exit on import": ("import sys\nsys.exit(3)\n" + GOOD, "importing it called sys.exit(3)"),
}


@pytest.mark.parametrize("case", list(EXPERIMENT_CASES))
def test_broken_experiment_files_exit_2_and_write_nothing(tmp_path, case, capsys):
    text, needle = EXPERIMENT_CASES[case]
    path = tmp_path / "bad.py"
    path.write_text(textwrap.dedent(text))
    s = tmp_path / "s"
    rc, _, err = run_cli(["run", path, "--profile", "smoke", "--store", s], capsys)
    assert rc == 2, err
    assert str(path) in err and needle in err
    assert "fix the experiment file" in err or "an experiment file must not exit" in err
    assert not s.exists()  # no store, so no .failed record either


# -- compare -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Two runs of one experiment with co-adaptation tables, both at one hidden rate."""
    s = tmp_path_factory.mktemp("measured") / "s"
    for seed in (0, 1):
        assert main(["train", *TINY, "--experiment", "cmp", "--seed", str(seed), "--store", str(s)]) == 0
    assert main(["coadapt", "--experiment", "cmp", "--pairs", "10", "--store", str(s)]) == 0
    return s


def test_compare_with_one_group_says_so(measured, capsys):
    rc, _, err = run_cli(["compare", "--experiment", "cmp", "--store", measured], capsys)
    assert rc == 2 and "--by p_drop_hidden" in err and "needs at least two groups" in err


def test_compare_with_an_unknown_metric_lists_the_known_ones(measured, capsys):
    rc, _, err = run_cli(
        ["compare", "--experiment", "cmp", "--metrics", "mean_abs_r,nosuch", "--store", measured], capsys
    )
    assert rc == 2 and "--metrics: 'nosuch' is not a co-adaptation metric" in err and "effective_rank" in err


def test_compare_with_an_unwritable_out(measured, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, needle in ((tmp_path, "is a folder"), (tmp_path / "file" / "c.csv", "not a folder")):
        rc, _, err = run_cli(["compare", "--experiment", "cmp", "--out", out, "--store", measured], capsys)
        assert rc == 2 and f"--out {out}" in err and needle in err


# -- analysis.tables -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["nosuch"], "unknown study 'nosuch'; studies: "),
        (["shift", "--profile", "fast"], "--profile 'fast' is not known"),
    ],
)
def test_tables_refuses_unknown_study_and_profile(tmp_path, monkeypatch, argv, needle, capsys):
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / "s"))
    monkeypatch.setenv("HARNESS_OUT", str(tmp_path / "out"))
    with pytest.raises(SystemExit) as exc:
        tables.main(argv)
    assert exc.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "out").exists()


def test_bad_sweep_flags_create_no_store_folder(tmp_path, capsys):
    from harness.cli import main

    store = tmp_path / "new_store"
    for flags in (["--workers", "0"], ["--threads", "0"], ["--wait-limit", "-1"]):
        assert main(["run", "experiments/exact.py", "--profile", "smoke", "--store", str(store), *flags]) == 2
        assert not store.exists()
    assert "workers=0: must be a positive integer" in capsys.readouterr().err


def test_a_full_store_while_writing_is_refused_and_publishes_nothing(tmp_path, monkeypatch, tiny_cfg):
    import errno

    from harness.errors import StoreError
    from harness.store import runs as store_module
    from harness.store.runs import RunStore
    from harness.sweep.run import execute

    store = RunStore(tmp_path / "runs")

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "write_synced", full)
    with pytest.raises(
        StoreError, match=r"could not take run \w+ \(No space left on device\); nothing of it was published"
    ):
        execute(tiny_cfg, store)
    assert store.run_ids() == [] and not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".tmp-")]


def test_a_read_only_store_is_refused_even_when_the_probe_cannot_be_removed(tmp_path, monkeypatch):
    """As root a folder is never read-only, so the file system's answers are simulated: the probe
    cannot be created, and removing it fails again (EROFS), which used to replace the message."""
    import builtins
    import errno
    from pathlib import Path

    from harness.errors import StoreError
    from harness.store.runs import RunStore

    store = RunStore(tmp_path / "runs")
    real_open = builtins.open

    def read_only_open(path, *args, **kwargs):
        if ".probe-" in str(path):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, *args, **kwargs)

    def read_only_unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(Path, "unlink", read_only_unlink)
    with pytest.raises(StoreError, match="is not writable \\(Read-only file system\\)"):
        store.check_writable()


# -- issue 25, item 4: inputs that passed when they should not ------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "model.widths=8,,8"], "model.widths: value '8,,8': element 2 of the list is empty"),
        (["--widths", "8,,8"], "--widths 8,,8: element 2 is empty"),
        (["--set", "train.lr=nan"], "train.lr=nan: must be a finite number"),
        (["--set", "train.lr=-Infinity"], "train.lr=-inf: must be a finite number"),
        (["--set", "model.p_drop_hidden=[0.5,nan]"], "model.p_drop_hidden[1]=nan: must be a finite number"),
        (
            ["--set", "model.p_drop_conv=[0.5]"],
            "model.p_drop_conv=[0.5] applies to a cnn's conv blocks only, and model.kind is mlp",
        ),
        (["--set", "model.conv_channels=8,8"], "model.conv_channels=[8, 8] applies to a cnn's conv blocks only"),
    ],
)
def test_overrides_that_passed_before_are_refused_by_name(tmp_path, capsys, argv, message):
    rc, _, err = run_cli(["train", "--dataset", "digits", "--epochs", "1", *argv, "--store", tmp_path / "s"], capsys)
    assert rc == 2 and message in err and "expected float, got str" not in err
    assert not (tmp_path / "s").exists()


def test_a_bracketed_list_parses_element_by_element():
    from harness.config import parse_assignment

    assert parse_assignment("model.widths=[8, 8]") == ("model.widths", [8, 8])
    assert parse_assignment("model.widths=8,8") == ("model.widths", [8, 8])
    assert parse_assignment("model.activation=tanh") == ("model.activation", "tanh")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--task-gpus", "nan"], "--task-gpus nan: GPUs per Ray task must be a finite number >= 0"),
        (["--task-cpus", "inf"], "--task-cpus inf: CPUs per Ray task must be a finite number > 0"),
        (["--executor", "processes", "--workers", "100000"], "workers=100000: at most"),
    ],
)
def test_sweep_flags_are_checked_before_the_store_is_made(tmp_path, capsys, flags, message):
    rc, _, err = run_cli(
        ["run", "experiments/exact.py", "--profile", "smoke", *flags, "--store", tmp_path / "s"], capsys
    )
    assert rc == 2 and message in err
    assert not (tmp_path / "s").exists()


def test_refusals_of_run_and_runs_write_no_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))  # no mnist files there
    rc, _, err = run_cli(
        ["run", "experiments/exact.py", "--profile", "smoke", "--dataset", "mnist", "--store", tmp_path / "s"], capsys
    )
    assert rc == 2 and "mnist needs" in err and not (tmp_path / "s").exists()
    rc, _, err = run_cli(
        ["status", "experiments/exact.py", "--profile", "smoke", "--dataset", "mnist", "--store", tmp_path / "s"],
        capsys,
    )
    assert rc == 2 and "mnist needs" in err and not (tmp_path / "s").exists()
    rc, _, err = run_cli(["runs", "--store", tmp_path / "missing"], capsys)
    assert rc == 2 and "does not exist" in err and not (tmp_path / "missing").exists()
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "tiny.npz", x=rng.normal(size=(6, 4)), y=np.array([0, 1, 0, 1, 0, 1])
    )  # refused only when a run loads it
    rc, _, err = run_cli(
        [
            "run",
            "experiments/exact.py",
            "--profile",
            "smoke",
            "--dataset",
            tmp_path / "tiny.npz",
            "--store",
            tmp_path / "s",
        ],
        capsys,
    )
    assert (
        rc == 2 and "holds out no validation examples" in err and not (tmp_path / "s").exists()
    )  # no store, no .claims/


@pytest.mark.parametrize(
    "target, message",
    [
        ("experiments", "experiments is a folder, not an experiment file: name one file, e.g. experiments/baseline.py"),
        (
            "README.md",
            "README.md is not an experiment file: an experiment file is Python (.py) that defines NAME and "
            "configs(profile)",
        ),
    ],
)
def test_an_experiment_path_that_is_no_experiment_file_is_named(tmp_path, capsys, monkeypatch, target, message):
    monkeypatch.chdir(ROOT)
    rc, _, err = run_cli(["run", target, "--profile", "smoke", "--store", tmp_path / "s"], capsys)
    assert rc == 2 and message in err and "AssertionError" not in err and "does not exist" not in err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "overflow",
            "x holds values up to 3.9e+300 in magnitude, whose mean or standard deviation overflows: standardization "
            "would turn "
            "every example into 0; rescale x",
        ),
        ("one-class", "every example of y has label 0: a classifier needs at least two classes to tell apart"),
    ],
)
def test_data_a_classifier_cannot_learn_from_is_refused_by_name(tmp_path, capsys, case, message):
    """Before: finite values near 1e300 overflowed in standardization and every example became 0 (a
    run "ok" at chance error), and one class trained one-output nets to error 0 without a word."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)) * (1e300 if case == "overflow" else 1.0)
    y = rng.integers(0, 3, 200) if case == "overflow" else np.zeros(200, dtype=np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    for argv in (
        ["train", "--dataset", tmp_path / "d.npz", "--widths", "8", "--epochs", "1"],
        ["run", "experiments/exact.py", "--profile", "smoke", "--dataset", tmp_path / "d.npz"],
    ):
        rc, _, err = run_cli([*argv, "--store", tmp_path / "s"], capsys)
        assert rc == 2 and message in err
        assert not (tmp_path / "s").exists()


def test_a_split_that_overflows_float32_when_standardized_is_refused(tmp_path):
    """The training split is ordinary; the test split lies 1e40 away: standardized, it would be inf."""
    from harness.config import DataConfig
    from harness.data.datasets import load_dataset
    from harness.errors import DataError

    folder = tmp_path
    rng = np.random.default_rng(0)
    np.savez(
        folder / "far.npz",
        x=rng.normal(size=(100, 4)),
        y=rng.integers(0, 2, 100),
        x_test=np.full((10, 4), 1e40),
        y_test=np.array([0, 1] * 5),
    )
    with pytest.raises(
        DataError,
        match=(
            r"the test examples of .*far.npz, standardized with the training split's mean .* overflow float32 \(40 "
            r"values\)"
        ),
    ):
        load_dataset(DataConfig(name=str(folder / "far.npz")))
