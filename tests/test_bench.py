"""The benchmarks' arithmetic (`harness.bench`) on tiny inputs, with the clock and the matmul peak
replaced by fixed numbers so that every printed ratio has an exact expected value. What they measure
on a real machine is never asserted: machines are shared."""

import json
import platform
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from harness import bench
from harness.cli import main
from harness.config import ModelConfig
from harness.nets.models import build_model

MACS_784_8_10 = 784 * 8 + 8 * 10  # an MLP 784-8-10: its two Linear layers' weights


def test_linear_macs_counts_the_linear_layers_weights():
    assert bench.linear_macs(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))) == 3 * 5 + 5 * 2
    assert bench.linear_macs(build_model(ModelConfig(widths=(8, 4)), (1, 28, 28), 10)) == 784 * 8 + 8 * 4 + 4 * 10
    assert bench.linear_macs(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten())) == 0  # convolutions are not counted


def test_best_time_warms_up_once_then_keeps_the_fastest_of_its_repeats(monkeypatch):
    clock = [0.0]
    durations = iter([9.0, 3.0, 1.0, 2.0])  # the warm-up, then the timed calls
    calls = []

    def fn():
        calls.append(1)
        clock[0] += next(durations)

    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    assert bench.best_time(fn, "cpu", repeats=3) == 1.0  # the warm-up's 9 s is not counted
    assert len(calls) == 4


def test_matmul_peak_is_the_products_flops_over_the_best_time(monkeypatch):
    calls = []

    def one_call(fn, device, repeats):
        calls.append(repeats)
        fn()
        return 0.5

    monkeypatch.setattr(bench, "best_time", one_call)
    # 4 products of 4 x 4 matrices per timed call on a CPU, 2 n^3 FLOPs each
    assert bench.matmul_peak("cpu", n=4) == 2 * 4**3 * 4 / 0.5
    assert calls == [5]


def test_format_result_aligns_names_and_rounds_floats():
    assert bench.format_result({"benchmark": "mc", "speedup": 2.0, "T": 3}) == (
        "benchmark  mc\nspeedup    2.000\nT          3"
    )


def test_machine_line_names_the_processor_torch_and_its_threads():
    name = platform.processor() or platform.machine()
    assert bench.machine_line("cpu") == f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads"


@pytest.fixture
def fixed_clock(monkeypatch):
    """best_time returns clock.seconds[the benchmarked function's name], after calling it once when
    clock.run; the matmul peak is 1 GFLOP/s."""
    clock = SimpleNamespace(seconds={}, run=True)

    def timed(fn, device="cpu", repeats=3):
        if clock.run:
            fn()
        return clock.seconds[fn.__name__]

    monkeypatch.setattr(bench, "best_time", timed)
    monkeypatch.setattr(bench, "matmul_peak", lambda device="cpu": 1e9)
    return clock


def test_train_benchmark_ratios(fixed_clock):
    # the two training loops are not run: an epoch of each takes seconds on a busy 2-core machine
    fixed_clock.run = False
    fixed_clock.seconds |= {"harness_loop": 2.0, "dataloader_loop": 3.0}
    res = bench.bench_train(epochs=1, widths=(8,))
    n = 3600  # mnist5k's training split
    flops = 6 * MACS_784_8_10 * n  # forward 2, backward 4 per multiply-accumulate, one epoch
    assert res["model"] == "mlp 784-8-10" and res["examples"] == n and res["batch_size"] == 100
    assert res["harness_examples_per_s"] == n / 2.0 and res["dataloader_examples_per_s"] == n / 3.0
    assert res["speedup_vs_dataloader"] == 1.5
    assert res["matmul_peak_gflops"] == 1.0
    assert res["harness_gflops"] == pytest.approx(flops / 2.0 / 1e9, rel=1e-12)
    assert res["fraction_of_peak"] == pytest.approx(flops / 2.0 / 1e9, rel=1e-12)


def test_mc_benchmark_prints_json_with_its_ratios(fixed_clock, capsys):
    fixed_clock.seconds |= {"shared": 0.5, "usual": 2.0, "batch_repeat": 1.0}  # each run once: 2 x 20 examples
    assert main(["bench", "mc", "--T", "2", "--examples", "20", "--widths", "8", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["benchmark"] == "mc" and res["examples"] == 20 and res["T"] == 2
    assert (res["mc_shared_s"], res["usual_idiom_s"], res["batch_repeat_s"]) == (0.5, 2.0, 1.0)
    assert res["speedup_vs_usual_idiom"] == 4.0 and res["speedup_vs_batch_repeat"] == 2.0
    dense = 2 * 20 * 2 * MACS_784_8_10  # every subnetwork's full forward pass on every example
    assert res["usual_idiom_fraction_of_peak"] == pytest.approx(dense / 2.0 / 1e9, rel=1e-12)
    compacted = res["mc_shared_gflops"] * 1e9 * 0.5  # the FLOPs mc_shared counted
    assert res["fraction_of_peak"] == pytest.approx(compacted / 0.5 / 1e9, rel=1e-12)
    assert res["flop_ratio_dense_vs_compacted"] == pytest.approx(dense / compacted, rel=1e-12)
    assert res["flop_ratio_dense_vs_compacted"] > 1  # the first layer's full product is shared by the T subnetworks
