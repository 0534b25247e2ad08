"""The device's measured rates: a calibration of a few seconds that times training steps, forward passes,
compacted subnetworks and float64 work of the profile's representative nets, giving the FLOP/s that turn the
plan's FLOPs (`harness.sweep.cost`) into estimated times.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

from harness.config import ModelConfig
from harness.sweep.cost import EVAL_CHUNK, macs

# ---------------------------------------------------------------------------------------------------
# Calibration: achieved FLOP/s on the device


@dataclass
class Calibration:
    """Measured on one device: FLOP/s per rate class (`train:mlp`, `infer:mlp`, `subnet`, `fp64`,
    and `train:cnn`, `infer:cnn` when a CNN was measured); `step_s` and `pass_s`, one optimizer
    step and one compacted subnetwork of a tiny net (the floor of any step or pass); `nets`, what
    measured each rate; `seconds`, how long the calibration took."""

    device: str
    machine: str
    rates: dict[str, float]
    step_s: float
    pass_s: float
    nets: dict[str, str]
    seconds: float
    busy: str = ""  # a CPU shared with other work during the calibration: its rates, and the times, reflect that

    def rate(self, name: str) -> float:
        if name in self.rates:
            return self.rates[name]
        kind = name.split(":")[0]
        fallback = {"train": "train:mlp", "infer": "infer:mlp"}.get(kind, "infer:mlp")
        return self.rates[fallback]


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    elif device == "mps":
        torch.mps.synchronize()


def _per_call(fn, device: str, budget: float) -> float:
    """Seconds per call of fn(reps) (which does `reps` calls), best of groups of 1, 2, 4, ...
    calls after one warm-up call, until about `budget` seconds are spent (at least one group)."""
    fn(1)
    _sync(device)
    best, reps, spent = math.inf, 1, 0.0
    while True:
        t0 = time.perf_counter()
        fn(reps)
        _sync(device)
        took = time.perf_counter() - t0
        best, spent = min(best, took / reps), spent + took
        if spent + 2 * took > budget:
            return best
        reps *= 2


def _describe_net(cfg: ModelConfig, shape: tuple[int, ...], n_classes: int) -> str:
    if cfg.kind == "mlp":
        return "mlp " + "-".join(map(str, [math.prod(shape), *cfg.widths, n_classes]))
    fc = "-".join(map(str, [*cfg.widths, n_classes]))
    return f"cnn {'x'.join(map(str, shape))} conv {'-'.join(map(str, cfg.conv_channels))} fc {fc}"


class _Probe:
    """What every measurement of one calibration shares: the device, the seconds each may spend, the batch size
    and one generator of synthetic data (drawn in the order the measurements ask for it)."""

    def __init__(self, device: str, share: float, batch_size: int):
        import torch

        self.device, self.share, self.batch_size = device, share, batch_size
        self.gen = torch.Generator().manual_seed(0)

    def synthetic(self, shape, n_classes, n):
        import torch

        x = torch.randn(n, *shape, generator=self.gen).to(self.device)
        y = torch.randint(0, n_classes, (n,), generator=self.gen).to(self.device)
        return x, y

    def train_step_s(self, cfg: ModelConfig, shape, n_classes) -> tuple[float, object]:
        """Seconds per training step of a fresh net of `cfg` (SGD, the harness's epoch loop, max-norm), and the net."""
        import torch

        from harness.config import TrainConfig
        from harness.nets.models import build_model
        from harness.nets.training import make_optimizer, run_epoch

        torch.manual_seed(0)
        batch_size, device = self.batch_size, self.device
        model = build_model(cfg, shape, n_classes).to(device).train()
        opt = make_optimizer(model, TrainConfig(batch_size=batch_size, momentum=0.9))
        steps = 16
        x, y = self.synthetic(shape, n_classes, batch_size * steps)
        perm = torch.arange(batch_size * steps, device=device)

        def fn(reps: int) -> None:
            for i in range(0, reps, steps):  # run_epoch reads the loss: one sync
                run_epoch(model, opt, x, y, perm, batch_size, min(steps, reps - i), cfg.max_norm)

        return _per_call(fn, device, self.share), model

    def forward_s(self, model, x, probe: bool = False) -> float:
        """Seconds per forward pass of `model` on `x` (a probe: one warm-up and one timed pass)."""
        import torch

        def fn(reps: int) -> None:
            with torch.no_grad():
                for _ in range(reps):
                    model(x)

        return _per_call(fn, self.device, 0.0 if probe else self.share)

    def subnetwork_s(self, eng, masks: list) -> float:
        """Seconds per compacted subnetwork of `eng`, cycling through `masks`."""

        def fn(reps: int) -> None:
            for i in range(reps):
                eng.logits(masks[i % len(masks)])

        return _per_call(fn, self.device, self.share)


def _measure_net(probe: _Probe, kind: str, net: tuple, max_eval: int, rates: dict, names: dict):
    """Training and forward-pass rates of one representative net; returns the net (eval mode) and the batch its
    forward passes were timed on."""
    cfg, shape, n_classes = net
    m = macs(cfg, shape, n_classes)
    names[f"train:{kind}"] = names[f"infer:{kind}"] = _describe_net(cfg, shape, n_classes)
    step, model = probe.train_step_s(cfg, shape, n_classes)
    rates[f"train:{kind}"] = 6 * m * probe.batch_size / step
    model.eval()
    n = probe.batch_size
    x, _ = probe.synthetic(shape, n_classes, n)
    # evaluations score whole splits: the largest batch up to max_eval whose pass fits an eighth of the share (one
    # probe each)
    while 2 * n <= max_eval and 8 * probe.forward_s(model, x, probe=True) < probe.share:
        n *= 2
        x, _ = probe.synthetic(shape, n_classes, n)
    rates[f"infer:{kind}"] = 2 * m * n / probe.forward_s(model, x)
    return model, x


def _measure_mlp_extras(probe: _Probe, net: tuple, model, x, rates: dict, names: dict) -> None:
    """On the MLP: compacted subnetworks and float64 forward passes."""
    from harness.nets.subnetworks import SubnetworkEngine, sample_masks

    cfg, shape, n_classes = net
    eng = SubnetworkEngine(model, x)
    if eng.uses_compaction:
        masks = [sample_masks(eng.sites, 0, i) for i in range(16)]
        flops = sum(eng.flops(mk) for mk in masks) / len(masks)
        rates["subnet"] = flops / probe.subnetwork_s(eng, masks)
    else:
        rates["subnet"] = rates["infer:mlp"]
    names["subnet"] = f"{names['infer:mlp']}, compacted subnetworks"
    model64 = copy.deepcopy(model).double()
    rates["fp64"] = 2 * macs(cfg, shape, n_classes) * len(x) / probe.forward_s(model64, x.double())
    names["fp64"] = f"{names['infer:mlp']}, float64"


def _floor(probe: _Probe, mlp: tuple) -> tuple[float, float]:
    """(seconds per training step, per compacted subnetwork) of a tiny net of the base kind, where launch and
    framework overhead is all there is."""
    from harness.nets.subnetworks import SubnetworkEngine, sample_masks

    cfg, shape, n_classes = mlp
    tiny = ModelConfig(
        widths=(8,) * max(1, len(cfg.widths)), p_drop_input=0.2, p_drop_hidden=(0.5,), max_norm=cfg.max_norm
    )
    step_s, model = probe.train_step_s(tiny, shape, n_classes)
    x, _ = probe.synthetic(shape, n_classes, probe.batch_size)
    eng = SubnetworkEngine(model.eval(), x)
    masks = [sample_masks(eng.sites, 0, i) for i in range(16)]
    return step_s, probe.subnetwork_s(eng, masks)


def calibrate(
    device: str,
    nets: dict[str, tuple[ModelConfig, tuple[int, ...], int]],
    batch_size: int = 100,
    budget_s: float = 5.0,
    max_eval: int = EVAL_CHUNK,
) -> Calibration:
    """Measure the FLOP/s this device reaches on representative nets, in about `budget_s` seconds
    (a target: each measurement takes at least one warm-up and one timed call).

    nets: {kind: (ModelConfig, input shape, classes)}, an `mlp` at least. Per net: training steps
    at `batch_size` (SGD with the harness's epoch loop and max-norm; synthetic data on the device)
    and weight-scaled forward passes on the largest batch up to `max_eval` examples that fits the
    budget; on the MLP also compacted subnetworks (`SubnetworkEngine.logits`) and float64 forward
    passes; and one training step and one subnetwork of a tiny net of the same kind (widths 8).
    """
    from harness.store.provenance import machine_line
    from harness.sweep.run import check_device

    if "mlp" not in nets:
        raise ValueError("calibration needs an mlp")
    check_device(device)
    busy = _busy(device)  # before our own threads add to the load
    start = time.perf_counter()
    probe = _Probe(device, budget_s / (2 * len(nets) + 4), batch_size)
    rates, names = {}, {}
    for kind, net in nets.items():
        model, x = _measure_net(probe, kind, net, max_eval, rates, names)
        if kind == "mlp":
            _measure_mlp_extras(probe, net, model, x, rates, names)
    step_s, pass_s = _floor(probe, nets["mlp"])
    return Calibration(device, machine_line(device), rates, step_s, pass_s, names, time.perf_counter() - start, busy)


def _busy(device: str) -> str:
    """A warning when other processes keep the CPU busy as the calibration starts (load average
    above a quarter of the cores, at least 1): torch's threads wait for any one of them that is
    descheduled, so a shared CPU can run many times slower than an idle one."""
    import os

    if device != "cpu" or not hasattr(os, "getloadavg"):
        return ""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= max(1.0, cores / 4):
        return ""
    return (
        f"warning: the CPU was busy (load average {load:.1f} on {cores} cores): the rates and times below reflect "
        "that; calibrate again on an idle machine"
    )
