import json
import os
import subprocess
import sys

from harness.cli import main


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for cmd in ("train", "run", "runs", "data", "bench"):
        assert cmd in out.stdout


def test_train_prints_where_results_are(tmp_path, capsys):
    argv = ["train", "--dataset", "digits", "--widths", "16", "--epochs", "1", "--store", str(tmp_path / "s")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    run_id = out.split()[1]
    assert str(tmp_path / "s" / run_id) in out and "trained" in out
    assert main(argv) == 0 and "loaded from the store" in capsys.readouterr().out


def test_config_file_and_set_overrides(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('experiment = "fromfile"\n[data]\nname = "digits"\n[model]\nwidths = [8]\n[train]\nepochs = 1\n')
    assert main(["train", "--config", str(cfg), "--set", "seed=4", "--store", str(tmp_path / "s")]) == 0
    run_id = capsys.readouterr().out.split()[1]
    saved = json.loads((tmp_path / "s" / run_id / "config.json").read_text())["config"]
    assert saved["experiment"] == "fromfile" and saved["seed"] == 4 and saved["model"]["widths"] == [8]


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    s = tmp_path / "s"
    cases = [
        (["--p-drop-input", "1.5"], "model.p_drop_input=1.5"),
        (["--set", "model.depth=3"], "unknown key model.depth"),
        (["--dataset", "digits", "--train-size", "99999"], "data.train_size=99999 is larger"),
        (["--widths", "64,-1"], "model.widths[1]=-1"),
        (["--dataset", "cifar100"], "allowed values"),
        (["--widths", "a,b"], "--widths a,b: expected comma-separated int"),
        (["--config", str(tmp_path / "missing.json")], "does not exist"),
        (["--device", "cuda:0"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"], "device"),
    ]
    for extra, needle in cases:
        assert main(["train", "--store", str(s), *extra]) == 2, extra
        assert needle in capsys.readouterr().err
    assert not s.exists() or [p for p in os.listdir(s)] == []


def test_mc_evaluates_a_stored_run_without_retraining(tmp_path, capsys):
    s = str(tmp_path / "s")
    assert main(["train", "--dataset", "digits", "--widths", "16", "--epochs", "1", "--store", s]) == 0
    run_id = capsys.readouterr().out.split()[1]
    assert main(["mc", run_id[:6], "--T", "10", "--streams", "2", "--store", s]) == 0
    out = capsys.readouterr().out
    assert "evaluated" in out and "mc_shared" in out and "single subnetworks" in out
    assert (tmp_path / "s" / run_id / "evaluations.parquet").is_file()
    assert (tmp_path / "s" / run_id / "subnetworks.parquet").is_file()
    assert main(["mc", run_id, "--T", "10", "--streams", "2", "--store", s]) == 0
    assert "loaded from the store" in capsys.readouterr().out
    assert main(["mc", "zzzz", "--store", s]) == 2
    assert "no run 'zzzz'" in capsys.readouterr().err


def test_coadapt_and_compare_an_experiment(tmp_path, capsys):
    s = str(tmp_path / "s")
    for p in ("0.0", "0.5"):
        for seed in ("0", "1"):
            argv = [
                "train",
                "--dataset",
                "digits",
                "--widths",
                "16",
                "--epochs",
                "1",
                "--p-drop-input",
                "0",
                "--p-drop-hidden",
                p,
                "--seed",
                seed,
                "--experiment",
                "co",
                "--store",
                s,
            ]
            assert main(argv) == 0
    capsys.readouterr()
    assert main(["compare", "--experiment", "co", "--store", s]) == 2
    assert "run `python -m harness coadapt --experiment co` first" in capsys.readouterr().err
    assert main(["coadapt", "--experiment", "co", "--pairs", "5", "--features", str(tmp_path / "f"), "--store", s]) == 0
    out = capsys.readouterr().out
    assert out.count("measured") == 4 and "mean_abs_r" in out
    assert len(list((tmp_path / "f").glob("features_*.png"))) == 4
    csv = tmp_path / "cmp.csv"
    assert main(["compare", "--experiment", "co", "--by", "p_drop_hidden", "--out", str(csv), "--store", s]) == 0
    import pandas as pd

    table = pd.read_csv(csv)
    assert set(table["n"]) == {2} and {"diff", "ci_low", "ci_high", "p_value", "test_error"} <= set(table.columns)
    assert main(["compare", "--experiment", "co", "--by", "nope", "--store", s]) == 2


def test_shift_evaluates_a_stored_run_under_shift(tmp_path, capsys):
    s = str(tmp_path / "s")
    assert main(["train", "--dataset", "digits", "--widths", "16", "--epochs", "1", "--store", s]) == 0
    run_id = [p.name for p in (tmp_path / "s").iterdir() if p.is_dir() and len(p.name) == 12][0]
    capsys.readouterr()
    args = [
        "shift",
        run_id[:6],
        "--T",
        "4",
        "--members",
        "2",
        "--angles",
        "0,90",
        "--corruptions",
        "centre_band",
        "--severities",
        "2",
        "--store",
        s,
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "evaluated" in out and "rotations" in out and "corruptions" in out and "patches" in out and "mc_shared" in out
    )
    assert main(args) == 0 and "loaded from the store" in capsys.readouterr().out
    assert main(["shift", run_id, "--corruptions", "fog", "--store", s]) == 2
    assert "not a known corruption" in capsys.readouterr().err
