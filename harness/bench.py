"""Benchmarks that print ratios measured in one run (never timed tests: machines are shared).

`matmul_peak` measures what this machine's matrix multiply reaches, so every benchmark can say what
fraction of it the harness uses on the FLOPs its work actually requires.
"""

from __future__ import annotations

import math
import platform
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import DataConfig, ModelConfig, TrainConfig
from .data import load_dataset
from .models import build_model
from .training import make_optimizer, run_epoch


def sync(device: torch.device | str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def best_time(fn: Callable[[], object], device: torch.device | str = "cpu", repeats: int = 3, min_time: float = 0.0) -> float:
    """Best wall time of `repeats` calls (after one warm-up call), in seconds."""
    fn()
    sync(device)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(device: str = "cpu", n: int = 2048, dtype: torch.dtype = torch.float32) -> float:
    """Measured FLOP/s of an n x n by n x n matrix product, best of several."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 4 if device == "cpu" else 50

    def mm() -> None:
        for _ in range(reps):
            torch.mm(a, b)

    t = best_time(mm, device, repeats=5)
    return 2 * n**3 * reps / t


def linear_macs(model: nn.Module) -> int:
    """Multiply-accumulates of the Linear layers for one example's forward pass."""
    return sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear))


def machine_line(device: str) -> str:
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else (platform.processor() or platform.machine())
    return f"{name}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def bench_train(device: str = "cpu", epochs: int = 2, batch_size: int = 100, widths: tuple[int, ...] = (1024, 1024)) -> dict:
    """Examples per second of the harness's epoch loop against a DataLoader loop on the same model,
    data and batch size, and the fraction of the measured matmul peak the harness loop reaches."""
    from torch.utils.data import DataLoader, TensorDataset

    data = load_dataset(DataConfig(), device)
    x, y = data.x_train, data.y_train
    n = len(y)
    cfg = TrainConfig(batch_size=batch_size)
    mcfg = ModelConfig(widths=widths)

    def fresh():
        torch.manual_seed(0)
        model = build_model(mcfg, data.input_shape, data.n_classes).to(device)
        return model, make_optimizer(model, cfg)

    model, opt = fresh()
    gen = torch.Generator(device=device).manual_seed(0)
    steps = math.ceil(n / batch_size)

    def harness_loop() -> None:
        for _ in range(epochs):
            run_epoch(model, opt, x, y, torch.randperm(n, generator=gen, device=device), batch_size, steps, mcfg.max_norm)

    model2, opt2 = fresh()
    from .models import apply_max_norm

    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)

    def dataloader_loop() -> None:
        for _ in range(epochs):
            for xb, yb in loader:
                loss = F.cross_entropy(model2(xb), yb)
                opt2.zero_grad()
                loss.backward()
                opt2.step()
                apply_max_norm(model2, mcfg.max_norm)

    model.train()
    model2.train()
    t_h = best_time(harness_loop, device, repeats=2)
    t_d = best_time(dataloader_loop, device, repeats=2)
    peak = matmul_peak(device)
    flops = 6 * linear_macs(model) * n * epochs  # forward 2, backward 4 FLOPs per multiply-accumulate
    return {
        "benchmark": "train",
        "machine": machine_line(device),
        "model": "mlp " + "-".join(map(str, [x[0].numel(), *widths, data.n_classes])),
        "examples": n * epochs,
        "batch_size": batch_size,
        "harness_examples_per_s": n * epochs / t_h,
        "dataloader_examples_per_s": n * epochs / t_d,
        "speedup_vs_dataloader": t_d / t_h,
        "matmul_peak_gflops": peak / 1e9,
        "harness_gflops": flops / t_h / 1e9,
        "fraction_of_peak": flops / t_h / peak,
    }


def format_result(res: dict) -> str:
    width = max(map(len, res))
    lines = []
    for k, v in res.items():
        lines.append(f"{k:<{width}}  {v:.3f}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    return "\n".join(lines)
