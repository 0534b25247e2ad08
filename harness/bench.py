"""Benchmarks that print ratios measured in one run (never timed tests: machines are shared).

`matmul_peak` measures what this machine's matrix multiply reaches, so every benchmark can say what
fraction of it the harness uses on the FLOPs its work actually requires.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.config import DataConfig, ModelConfig, TrainConfig
from harness.data.datasets import load_dataset
from harness.nets.models import apply_max_norm, build_model
from harness.nets.training import make_optimizer, run_epoch
from harness.store.provenance import machine_line


def sync(device: torch.device | str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def best_time(fn: Callable[[], object], device: torch.device | str = "cpu", repeats: int = 3) -> float:
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


def bench_train(
    device: str = "cpu", epochs: int = 2, batch_size: int = 100, widths: tuple[int, ...] = (1024, 1024)
) -> dict:
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
            run_epoch(
                model, opt, x, y, torch.randperm(n, generator=gen, device=device), batch_size, steps, mcfg.max_norm
            )

    model2, opt2 = fresh()
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


def _mlp_with_nn_dropout(model, p_in: float, p_hidden: float) -> nn.Sequential:
    """The same weights as a plain nn.Sequential with nn.Dropout modules: what other code runs."""
    layers: list[nn.Module] = [nn.Flatten()]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for i, lin in enumerate(linears):
        layers.append(nn.Dropout(p_in if i == 0 else p_hidden))
        layers.append(lin)
        if i < len(linears) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@torch.no_grad()
def bench_mc(
    device: str = "cpu", T: int = 100, n: int = 10_000, widths: tuple[int, ...] = (1024, 1024), repeat_chunk: int = 10
) -> dict:
    """mc_shared by compaction against (a) the usual idiom, nn.Dropout in train mode looped T times,
    and (b) the batch-repeat idiom (copies of the batch in one pass, `repeat_chunk` copies at a
    time to bound memory), on the same model and examples; each accumulates the mean softmax."""
    from harness.nets.subnetworks import SubnetworkEngine, sample_masks

    data = load_dataset(DataConfig(), device)
    pool = torch.cat([data.x_train, data.x_val, data.x_test])
    x = pool.repeat(math.ceil(n / len(pool)), 1, 1, 1)[:n].contiguous()
    mcfg = ModelConfig(widths=widths, p_drop_input=0.2, p_drop_hidden=(0.5,))
    torch.manual_seed(0)
    model = build_model(mcfg, data.input_shape, data.n_classes).to(device).eval()
    idiom = _mlp_with_nn_dropout(model, 0.2, 0.5)
    flops = {"value": 0}

    def shared() -> None:
        engine = SubnetworkEngine(model, x)
        total = torch.zeros(n, data.n_classes, device=device)
        work = 2 * n * engine.sites[0].n_units * engine.stages[0].weight.shape[0]  # the shared full product
        for t in range(T):
            masks = sample_masks(engine.sites, 0, t)
            total += torch.softmax(engine.logits(masks), 1)
            work += engine.flops(masks)
        flops["value"] = work

    def usual() -> None:
        idiom.train()
        total = torch.zeros(n, data.n_classes, device=device)
        for _ in range(T):
            total += torch.softmax(idiom(x), 1)

    def batch_repeat() -> None:
        idiom.train()
        total = torch.zeros(n, data.n_classes, device=device)
        for start in range(0, T, repeat_chunk):
            c = min(repeat_chunk, T - start)
            p = torch.softmax(idiom(x.repeat(c, 1, 1, 1)), 1)
            total += p.view(c, n, -1).sum(0)

    reps = 1 if device == "cpu" else 3
    t_shared = best_time(shared, device, repeats=reps)
    t_usual = best_time(usual, device, repeats=reps)
    t_repeat = best_time(batch_repeat, device, repeats=reps)
    peak = matmul_peak(device)
    dense = 2 * n * T * linear_macs(model)
    return {
        "benchmark": "mc",
        "machine": machine_line(device),
        "model": "mlp " + "-".join(map(str, [784, *widths, data.n_classes])) + ", drop 0.2 input / 0.5 hidden",
        "examples": n,
        "T": T,
        "mc_shared_s": t_shared,
        "usual_idiom_s": t_usual,
        "batch_repeat_s": t_repeat,
        "speedup_vs_usual_idiom": t_usual / t_shared,
        "speedup_vs_batch_repeat": t_repeat / t_shared,
        "flop_ratio_dense_vs_compacted": dense / flops["value"],
        "matmul_peak_gflops": peak / 1e9,
        "mc_shared_gflops": flops["value"] / t_shared / 1e9,
        "fraction_of_peak": flops["value"] / t_shared / peak,
        "usual_idiom_fraction_of_peak": dense / t_usual / peak,
    }


_MEMORY_SCRIPT = """
import sys, torch
from harness.config import DataConfig, ModelConfig
from harness.data.datasets import load_dataset
from harness.inference.evaluation import MCSettings, evaluate_model
from harness.nets.models import build_model
torch.manual_seed(0)
d = load_dataset(DataConfig())
m = build_model(ModelConfig(), d.input_shape, d.n_classes).eval()
s = MCSettings(T=int(sys.argv[1]), streams=1, per_example=False, exact="no")
evaluate_model(m, d.x_test, d.y_test, MCSettings(T=2, streams=1, per_example=False, exact="no"))  # warm up allocator
def status(key):  # KiB; VmHWM, unlike ru_maxrss, is not inherited from the forking parent
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))
before = status("VmRSS:")
evaluate_model(m, d.x_test, d.y_test, s)
print(before, status("VmHWM:"))
"""


def bench_mc_memory(small: int = 100, large: int = 10_000) -> dict:
    """Peak resident memory of mc_shared evaluation of the default network on the embedded test set
    at T=small and T=large, each in a fresh process, and how far it rose above the resident memory
    just before the evaluation started (MiB)."""
    import subprocess
    import sys

    peaks = {}
    for T in (small, large):
        out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(T)], capture_output=True, text=True, check=True)
        before, after = map(int, out.stdout.split())
        peaks[T] = (before, after)
    return {
        f"peak_rss_mib_T{small}": peaks[small][1] / 1024,
        f"peak_rss_mib_T{large}": peaks[large][1] / 1024,
        "peak_ratio_large_vs_small": peaks[large][1] / peaks[small][1],
        f"growth_during_eval_mib_T{small}": (peaks[small][1] - peaks[small][0]) / 1024,
        f"growth_during_eval_mib_T{large}": (peaks[large][1] - peaks[large][0]) / 1024,
    }


def bench_sweep(n_runs: int = 16, workers: int = 2) -> dict:
    """Wall time of one sweep of `n_runs` small runs (mnist5k, MLP 128-128, 3 epochs, one thread
    per run) on each executor, each into a fresh store: Ray once starting its local cluster (cold)
    and once on a cluster already up (warm), and the worker-seconds each executor adds per run."""
    import tempfile

    import ray

    from harness.config import RunConfig
    from harness.store.runs import RunStore
    from harness.sweep.executors import run_sweep

    base = RunConfig(experiment="bench_sweep", profile="smoke").replace(
        **{"model.widths": [128, 128], "train.epochs": 3}
    )
    cfgs = [base.replace(seed=s) for s in range(n_runs)]
    times = {}
    for name, executor in (("local", "local"), ("processes", "processes"), ("ray_cold", "ray"), ("ray_warm", "ray")):
        if name == "ray_warm":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                summary = run_sweep(
                    cfgs, RunStore(tmp), executor=executor, workers=1 if executor == "local" else workers, threads=1
                )
                times[name] = time.perf_counter() - t0
                assert summary.done == n_runs, summary.line()
        finally:
            if name == "ray_warm":
                ray.shutdown()
    out = {"benchmark": "sweep", "machine": machine_line("cpu"), "runs": n_runs, "workers": workers}
    out |= {f"{k}_s": v for k, v in times.items()}
    out |= {f"speedup_{k}_vs_local": times["local"] / v for k, v in times.items() if k != "local"}
    # worker-seconds an executor spends per run beyond what the same run costs in-process
    out |= {
        f"overhead_per_run_{k}_s": (v * workers - times["local"]) / n_runs for k, v in times.items() if k != "local"
    }
    return out


def bench_checks(epochs: int = 8, widths: tuple[int, ...] = (256, 256)) -> dict:
    """The share of a quick run's time spent in validation checks, scoring the whole training split
    at every check (before) and a fixed stratified subsample of CHECK_TRAIN_EXAMPLES (after): the
    quick profile's MLP on mnist5k, one thread, a check every epoch, in one process, after a
    warm-up run, the fastest of three alternated runs each."""
    from harness.config import DataConfig, ModelConfig, TrainConfig
    from harness.data.datasets import load_dataset
    from harness.nets import training
    from harness.nets.models import build_model

    data = load_dataset(DataConfig(name="mnist5k"))
    real = training.evaluate
    spent = [0.0]

    def timed(model, x, y):
        t0 = time.perf_counter()
        try:
            return real(model, x, y)
        finally:
            spent[0] += time.perf_counter() - t0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {
        "benchmark": "checks",
        "machine": machine_line("cpu"),
        "epochs": epochs,
        "train_examples": len(data.y_train),
        "check_train_examples": training.CHECK_TRAIN_EXAMPLES,
    }
    subsample = training.CHECK_TRAIN_EXAMPLES

    def once(limit: int, n_epochs: int) -> tuple[float, float]:
        training.CHECK_TRAIN_EXAMPLES = limit
        torch.manual_seed(0)
        model = build_model(ModelConfig(widths=widths), data.input_shape, data.n_classes)
        spent[0] = 0.0
        t0 = time.perf_counter()
        training.train(model, data, TrainConfig(epochs=n_epochs, lr=0.05, select_on_val=True), seed=0)
        return time.perf_counter() - t0, spent[0]

    try:
        training.evaluate = timed
        once(subsample, 1)  # warm-up: the first run pays for allocations and thread start-up
        best: dict[str, tuple[float, float]] = {}
        for _ in range(3):  # alternated, the fastest of three each: both see the same machine
            for name, limit in (("before", 10**9), ("after", subsample)):
                total, checks = once(limit, epochs)
                if name not in best or total < best[name][0]:
                    best[name] = (total, checks)
        for name, (total, checks) in best.items():
            out |= {f"{name}_total_s": total, f"{name}_checks_s": checks, f"{name}_checks_share": checks / total}
    finally:
        training.evaluate, training.CHECK_TRAIN_EXAMPLES = real, subsample
        torch.set_num_threads(threads)
    out["speedup"] = out["before_total_s"] / out["after_total_s"]
    return out


def bench_per_example(T: int = 100, streams: int = 2, widths: tuple[int, ...] = (256, 256)) -> dict:
    """The share of an MC evaluation (mc_vs_ws's quick settings: T subnetworks on `streams`
    streams, mnist5k's test split, the quick MLP, one thread) spent in the per-example idiom, with
    it on every stream (before) and on the first only (after, MCSettings.per_example_streams = 1);
    after a warm-up, the fastest of three alternated runs each."""
    from harness.config import DataConfig, ModelConfig
    from harness.data.datasets import load_dataset
    from harness.inference.evaluation import MCSettings, evaluate_model
    from harness.nets.models import build_model

    data = load_dataset(DataConfig(name="mnist5k"))
    torch.manual_seed(0)
    model = build_model(ModelConfig(widths=widths), data.input_shape, data.n_classes).eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    settings = {
        "before": MCSettings(T=T, streams=streams, per_example_streams=streams, exact="no"),
        "after": MCSettings(T=T, streams=streams, per_example_streams=1, exact="no"),
        "none": MCSettings(T=T, streams=streams, per_example=False, exact="no"),
    }
    best: dict[str, float] = {}
    try:
        evaluate_model(model, data.x_test, data.y_test, MCSettings(T=2, streams=1, exact="no"))  # warm-up
        for _ in range(3):
            for name, s in settings.items():
                t0 = time.perf_counter()
                evaluate_model(model, data.x_test, data.y_test, s)
                best[name] = min(best.get(name, math.inf), time.perf_counter() - t0)
        machine = machine_line("cpu")
    finally:
        torch.set_num_threads(threads)
    out = {"benchmark": "per_example", "machine": machine, "T": T, "streams": streams}
    for name in ("before", "after"):
        out |= {f"{name}_total_s": best[name], f"{name}_per_example_share": (best[name] - best["none"]) / best[name]}
    out["speedup"] = best["before"] / best["after"]
    return out


def bench_cnn(epochs: int = 2) -> dict:
    """Seconds per training epoch of placement's quick CNN (dropout at every site, mnist5k, one
    thread) as it ran before (contiguous NCHW activations, masks from `bernoulli_`) and as it runs
    now (`build_model`'s channels_last convolutions, masks as uniform < keep); after a warm-up
    epoch, the fastest of three alternated runs each. The two draw other masks from one seed, so
    only their speed is compared."""
    from harness.nets.models import DropoutSite
    from harness.sweep.profiles import base

    # placement's quick "everywhere" arm: dropout after both conv blocks and the fc layer
    cfg = base("quick").replace(
        **{
            "model.kind": "cnn",
            "model.conv_channels": [8, 16],
            "model.widths": [64],
            "model.p_drop_conv": [0.25, 0.25],
            "model.p_drop_hidden": [0.5],
            "train.lr": 0.03,
        }
    )
    data = load_dataset(cfg.data)
    now = DropoutSite.draw_mask

    def bernoulli_mask(self, x):  # the mask of before: the same Bernoulli(keep), drawn by bernoulli_
        return torch.empty_like(x).bernoulli_(self.keep)

    def epoch_time(before: bool) -> float:
        torch.manual_seed(0)
        model = build_model(cfg.model, data.input_shape, data.n_classes)
        if before:
            model = model.to(memory_format=torch.contiguous_format)
        DropoutSite.draw_mask = bernoulli_mask if before else now
        opt = make_optimizer(model, cfg.train)
        model.train()
        gen = torch.Generator().manual_seed(0)
        perm = torch.randperm(len(data.y_train), generator=gen)
        steps = math.ceil(len(data.y_train) / cfg.train.batch_size)
        t0 = time.perf_counter()
        for _ in range(epochs):
            run_epoch(
                model,
                opt,
                data.x_train,
                data.y_train,
                perm,
                cfg.train.batch_size,
                steps,
                cfg.model.max_norm,
                lambda s: None,
            )
        return (time.perf_counter() - t0) / epochs

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    best: dict[str, float] = {}
    try:
        epoch_time(False)  # warm-up
        for _ in range(3):
            for name in ("before", "after"):
                best[name] = min(best.get(name, math.inf), epoch_time(name == "before"))
        machine = machine_line("cpu")
    finally:
        DropoutSite.draw_mask = now
        torch.set_num_threads(threads)
    return {
        "benchmark": "cnn",
        "machine": machine,
        "model": "placement quick CNN, dropout everywhere",
        "epochs": epochs,
        "before_epoch_s": best["before"],
        "after_epoch_s": best["after"],
        "speedup": best["before"] / best["after"],
    }
