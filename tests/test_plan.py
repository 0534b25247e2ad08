"""The plan of a profile: exact multiply-add counts, training FLOPs by hand, a plan without data."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn

from harness.config import ModelConfig, RunConfig
from harness.data.datasets import Dataset
from harness.data.registry import DataInfo
from harness.nets.models import build_model
from harness.sweep import studies
from harness.sweep.cost import Sizes, engine, layers, macs, split_sizes, training_work
from harness.sweep.plan import main
from harness.sweep.rates import calibrate


def hooked_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one example counted by running it: a Linear uses every weight once; a conv uses
    each weight once per output position (its output's elements over its output channels)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.weight.numel()
        else:
            total += module.weight.numel() * output[0, 0].numel()

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    return total


def test_macs_of_a_tiny_mlp_by_hand_and_by_its_weights():
    cfg = ModelConfig(widths=(5, 3))
    assert macs(cfg, (1, 4, 4), 7) == 16 * 5 + 5 * 3 + 3 * 7
    model = build_model(cfg, (1, 4, 4), 7)
    assert macs(cfg, (1, 4, 4), 7) == sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def test_macs_of_a_tiny_cnn_by_hand_and_by_running_it():
    cfg = ModelConfig(kind="cnn", conv_channels=(2, 3), widths=(6,), p_drop_hidden=(0.5,))
    # conv 1->2 on 8x8 (5x5, padding 2), pool to 4x4; conv 2->3 on 4x4, pool to 2x2; 12 -> 6 -> 4
    by_hand = 1 * 2 * 25 * 8 * 8 + 2 * 3 * 25 * 4 * 4 + 12 * 6 + 6 * 4
    assert macs(cfg, (1, 8, 8), 4) == by_hand == 5696
    assert hooked_macs(build_model(cfg, (1, 8, 8), 4), (1, 8, 8)) == by_hand
    # odd sizes round down through the poolings; 1-D signals use Conv1d
    assert macs(cfg, (3, 9, 11), 5) == hooked_macs(build_model(cfg, (3, 9, 11), 5), (3, 9, 11))
    assert macs(cfg, (2, 13), 5) == 2 * 2 * 5 * 13 + 2 * 3 * 5 * 6 + 3 * 3 * 6 + 6 * 5
    assert macs(cfg, (2, 13), 5) == hooked_macs(build_model(cfg, (2, 13), 5), (2, 13))


def test_sites_match_the_built_model():
    cfg = ModelConfig(
        kind="cnn", conv_channels=(2, 3), widths=(6, 5), p_drop_conv=(0.25, 0.1), p_drop_hidden=(0.5, 0.3)
    )
    model = build_model(cfg, (1, 8, 8), 4)
    assert [(s.site, s.p_drop, s.units) for s in layers(cfg, (1, 8, 8), 4)] == [
        (s.name, s.p_drop, s.n_units) for s in model.dropout_sites()
    ]


def test_expected_subnetwork_macs_match_the_engine():
    """The engine's own count (`SubnetworkEngine.flops`) averaged over sampled subnetworks
    approaches the expectation, with the shared product (input keep 0.8) and without it (0.4)."""
    from harness.nets.subnetworks import SubnetworkEngine, sample_masks

    for p_in in (0.2, 0.6):
        cfg = ModelConfig(widths=(40, 30), p_drop_input=p_in, p_drop_hidden=(0.5,))
        torch.manual_seed(0)
        model = build_model(cfg, (1, 6, 6), 5)
        n = 7
        eng = SubnetworkEngine(model, torch.randn(n, 1, 6, 6))
        mean = sum(eng.flops(sample_masks(eng.sites, 0, t)) for t in range(2000)) / 2000 / (2 * n)
        assert engine(layers(cfg, (1, 6, 6), 5)).subnet == pytest.approx(mean, rel=0.02)


def test_training_flops_by_hand():
    info = DataInfo("t", (1, 4, 4), "image", 100, 20, 3)
    cfg = RunConfig().replace(
        **{"data.val_fraction": 0.2, "model.widths": [5], "train.batch_size": 30, "train.epochs": 2}
    )
    stages = layers(cfg.model, info.input_shape, info.n_classes)
    m = 16 * 5 + 5 * 3
    sizes = split_sizes(cfg, info)
    assert sizes == Sizes(80, 20, 20)
    # 2 epochs of 80 examples (batches 30, 30, 20); a check every epoch scores train and val; the runs table all three
    # splits
    assert training_work(cfg, stages, sizes).total == 6 * m * 160 + 2 * m * (2 * (80 + 20) + 80 + 20 + 20)
    # 4 steps: one epoch and one batch of 30; checks every 5 steps = every 2 epochs: one check, at the last epoch
    cfg = cfg.replace(**{"train.steps": 4, "train.check_every_steps": 5})
    assert training_work(cfg, stages, sizes).total == 6 * m * (80 + 30) + 2 * m * (1 * (80 + 20) + 80 + 20 + 20)
    assert split_sizes(cfg.replace(**{"data.train_size": 50}), info) == Sizes(50, 20, 20)


def test_examples_seen_match_the_training_loop():
    """The examples `harness.nets.training.train` pushes through the net, counted by a hook, are the
    plan's: training batches, and the training and validation splits at every check."""
    from harness.nets.training import train

    cfg = RunConfig().replace(
        **{
            "model.widths": [5],
            "train.batch_size": 30,
            "train.steps": 7,
            "train.check_every_steps": 5,
            "train.epochs": 3,
        }
    )
    g = torch.Generator().manual_seed(0)
    data = Dataset(
        "t",
        torch.randn(80, 1, 4, 4, generator=g),
        torch.randint(0, 3, (80,), generator=g),
        torch.randn(20, 1, 4, 4, generator=g),
        torch.randint(0, 3, (20,), generator=g),
        torch.zeros(0, 1, 4, 4),
        torch.zeros(0, dtype=torch.long),
        (1, 4, 4),
        3,
        0.0,
        1.0,
    )
    model = build_model(cfg.model, (1, 4, 4), 3)
    seen = {True: 0, False: 0}
    model.ops[0].register_forward_hook(
        lambda mod, inp, out: seen.__setitem__(model.training, seen[model.training] + len(out))
    )
    train(model, data, cfg.train, seed=0)
    stages = layers(cfg.model, (1, 4, 4), 3)
    w = training_work(cfg, stages, Sizes(80, 20, 0))
    m = macs(cfg.model, (1, 4, 4), 3)
    assert 6 * m * seen[True] == w.flops["train:mlp"]
    assert (
        2 * m * (seen[False] + 80 + 20) == w.flops["infer:mlp"]
    )  # + the runs table's scoring of train and val (test empty)


def test_calibration_gives_positive_rates_on_cpu():
    nets = {
        "mlp": (ModelConfig(widths=(16, 16)), (1, 8, 8), 10),
        "cnn": (ModelConfig(kind="cnn", conv_channels=(2, 2), widths=(8,)), (1, 8, 8), 10),
    }
    cal = calibrate("cpu", nets, batch_size=20, budget_s=0.2, max_eval=256)
    assert set(cal.rates) == {"train:mlp", "infer:mlp", "subnet", "fp64", "train:cnn", "infer:cnn"}
    assert all(r > 0 for r in cal.rates.values()) and cal.step_s > 0 and cal.pass_s > 0


@pytest.mark.slow
def test_paper_plan_without_data_names_the_missing_files_and_every_study(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    assert main(["--profile", "paper", "--calibrate-s", "0"]) == 0
    out = capsys.readouterr().out
    assert "make data" in out
    for name in (
        "mnist/train-images-idx3-ubyte.gz",
        "mnist/t10k-labels-idx1-ubyte.gz",
        "cifar10/cifar-10-batches-py/data_batch_1",
        "cifar10/cifar-10-batches-py/test_batch",
    ):
        assert str(tmp_path / name) in out
    for study in studies.names():
        assert re.search(rf"^ *{study} +\d", out, re.M), study
    assert "upper bound" in out

    assert main(["--profile", "paper", "--calibrate-s", "0", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [s["study"] for s in plan["studies"]] == studies.names()
    assert plan["missing_files"]["mnist"] and plan["missing_files"]["cifar10"]
    shift = next(s for s in plan["studies"] if s["study"] == "shift")
    assert shift["runs"] == shift["shared_runs"] > 0 and shift["train_flops"] == shift["eval_flops"] == 0
    rows = {s["study"]: s for s in plan["studies"]}
    assert (
        rows["mc_vs_ws"]["tuning_runs"] > 0
        and rows["mc_vs_ws"]["train_flops"] > 0
        and rows["mc_vs_ws"]["eval_flops"] > 0
    )
    assert plan["totals"]["runs_to_train"] == sum(s["new_runs"] for s in plan["studies"])


def test_json_with_a_calibration_gives_times(capsys):
    assert main(["--profile", "smoke", "--studies", "exact,shift", "--calibrate-s", "0.3", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["calibration"]["device"] == "cpu" and plan["totals"]["estimated_s"] > 0
    assert [s["study"] for s in plan["studies"]] == ["exact", "shift"]


def test_bad_flags_are_refused_by_name(capsys):
    assert main(["--profile", "smoke", "--studies", "nope", "--calibrate-s", "0"]) == 2
    assert "'nope' is not a study" in capsys.readouterr().err
    assert main(["--profile", "smoke", "--device", "tpu", "--calibrate-s", "0"]) == 2
    assert "--device tpu" in capsys.readouterr().err


def test_evaluation_flops_of_a_tiny_net_by_hand():
    """MLP 16-4-3, dropout 0.5 on its 4 hidden units only: 64 MACs before the first active site
    (done once per engine), 12 after it (a full pass from there), 6 expected per compacted
    subnetwork; 2 FLOPs per MAC on 20 test and 5 validation examples."""
    from harness.inference.evaluation import MCSettings
    from harness.inference.robustness import RobustnessSettings
    from harness.sweep.cost import mc_work, robustness_work

    cfg = ModelConfig(widths=(4,), p_drop_input=0.0, p_drop_hidden=(0.5,))
    stages = layers(cfg, (16,), 3)
    assert engine(stages).subnet == 6
    sizes = Sizes(50, 5, 20)
    setup = 2 * 20 * 64 + 2 * 20 * 76  # the shared work and the weight-scaled pass
    # 4 droppable units: all 16 subnetworks (auto); 10 x 2 shared-mask subnetworks and as many per-example passes
    # per-example passes on the first stream only (the default), or on both
    assert (
        mc_work(MCSettings(T=10, streams=2), stages, "mlp", sizes).total
        == setup + 16 * 2 * 20 * 12 + 20 * 2 * 20 * 6 + 10 * 2 * 20 * 12
    )
    assert mc_work(MCSettings(T=10, streams=2, per_example_streams=2), stages, "mlp", sizes).total == (
        setup + 16 * 2 * 20 * 12 + 20 * 2 * 20 * 6 + 20 * 2 * 20 * 12
    )
    r = RobustnessSettings(
        T=4,
        members=2,
        angles=(0, 90),
        corruptions=("shot_noise",),
        severities=(1,),
        unseen=("permuted",),
        per_example=("none",),
    )
    # the temperature on validation; 4 sets (test, rotation 90, shot noise 1, permuted), per-example passes on the test
    # split only
    assert robustness_work(r, stages, "mlp", sizes).total == 2 * 5 * 76 + 4 * (setup + 4 * 2 * 20 * 6) + 4 * 2 * 20 * 12
