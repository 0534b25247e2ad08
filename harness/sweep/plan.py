"""What a profile costs, before anything is trained: runs, FLOPs and an estimated time per study.

    python -m harness.sweep.plan --profile paper --device cuda [--dataset D] [--calibrate-s 5] [--studies a,b] [--json]

For every study (the Makefile's STUDIES) the plan counts

- runs: the replicates the experiment file lists and the tuning runs that choose each arm's learning
  rate (`Experiment.tuning_configs`). A run that an earlier study already lists is *shared*: the run
  store trains it once, so its cost is counted once, in the first study that lists it (`shift`
  evaluates the runs of `ensemble_vs_dropout` with the same settings: all shared, nothing new);
- training FLOPs: the budget. Every run is counted as if it trained to `train.epochs` or
  `train.steps`; early stopping ends most runs sooner, so this is an upper bound;
- evaluation FLOPs: what the study's `Evaluations` compute on each replicate (tuning runs are not
  evaluated), read from `harness.inference.evaluation`, `harness.inference.coadaptation` and
  `harness.inference.robustness`;
- an estimated time on the named device, from a calibration of a few seconds on that device.

Nothing reads a data file: experiments are loaded with `need_data=False` and datasets described by
`harness.data.datasets.describe` (built-in metadata where the files are missing, which are listed first).

FLOPs count the multiply-adds (MACs) of the Linear and Conv layers, 2 FLOPs each (`macs` gives
the exact count per example); activations, pooling, dropout masks, losses, metrics, optimizer
updates and max-norm are left out of the FLOPs, but their time is in the calibration's rates,
which time whole training steps and forward passes. Where the matrix products are tiny (exact
enumeration of 2^20 subnetworks of a 20-unit layer) the elementwise work dominates and the
estimate is low.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.config import ModelConfig, RunConfig
from harness.errors import ConfigError, HarnessError

ROOT = Path(__file__).resolve().parents[2]
STUDIES = (
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
)
EVAL_CHUNK = 4096  # examples per forward pass when a split is scored (`harness.nets.training.EVAL_CHUNK`)
EXACT_CHUNK = (
    256  # subnetworks per batched pass of exact enumeration (`harness.nets.subnetworks.enumerate_subnetworks`)
)
ABLATION_BATCH = 16  # removals per broadcast in `harness.inference.coadaptation.ablation`
KERNEL = 5  # conv kernel of `harness.nets.models.build_model` (padding 2: the size is kept, then pooled by 2)

ASSUMPTIONS = (
    "Training FLOPs are the budget: every run is counted to its train.epochs or train.steps; early stopping "
    "(train.patience) ends most runs sooner, so training FLOPs and times are upper bounds.",
    "FLOPs = 2 per multiply-add of the Linear and Conv layers (harness.sweep.plan.macs); training = 6 x MACs per "
    "example seen "
    "(forward 2, backward 4; the first layer's input gradient, which torch skips, is counted too) plus forward passes "
    "over "
    "the training and validation splits at every validation check and once more for the runs table.",
    "Training sizes: data.train_size, else round((1 - val_fraction) x the non-test pool); the stratified split rounds "
    "per class, a few examples away.",
    "Times are estimates: the FLOPs of each piece of work divided by the FLOP/s measured on this device for its kind "
    "(training steps, forward passes, compacted subnetworks, float64 co-adaptation work) on the representative nets "
    "above, and no optimizer step or forward pass shorter than a tiny net's (launch and framework overhead). One run "
    "at "
    "a time with the whole device; data loading, shifted-set generation and writing tables are not counted.",
)


# ---------------------------------------------------------------------------------------------------
# Multiply-adds of a network, without building it


@dataclass(frozen=True)
class Layer:
    """One stage of a `harness.nets.models.DropoutNet` (dropout site, then the op that consumes its
    units): site name, its drop probability, its units (all elements for a conv site) and channels
    (= units for a fully connected site), the op's multiply-adds per example and outputs, and
    whether the op is a Linear layer (the subnetwork engine compacts those)."""

    site: str
    p_drop: float
    units: int
    channels: int
    macs: int
    outputs: int
    linear: bool

    @property
    def keep(self) -> float:
        return 1.0 - self.p_drop


def layers(model: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> list[Layer]:
    """The stages `harness.nets.models.build_model` makes for this config and one example of
    `input_shape`: (D,) or (C, H, W) for an MLP (flattened), (C, H, W) or (C, L) for a CNN."""
    if model.kind == "mlp":
        dims = [math.prod(input_shape), *model.widths, n_classes]
        probs = [model.p_drop_input, *model.p_drop_hidden]
        return [
            Layer(
                "input" if k == 0 else f"hidden{k}",
                probs[k],
                dims[k],
                dims[k],
                dims[k] * dims[k + 1],
                dims[k + 1],
                True,
            )
            for k in range(len(dims) - 1)
        ]
    c, *space = input_shape
    if len(space) not in (1, 2):
        raise ConfigError(
            f"model.kind=cnn needs images (C, H, W) or signals (C, L), got an input of shape {tuple(input_shape)}"
        )
    area = KERNEL ** len(space)  # weights per input channel and output channel of a kernel
    c1, c2 = model.conv_channels
    s1 = [d // 2 for d in space]
    s2 = [d // 2 for d in s1]
    flat = c2 * math.prod(s2)
    dims = [flat, *model.widths, n_classes]
    out = [
        Layer(
            "input",
            model.p_drop_input,
            c * math.prod(space),
            c,
            c * c1 * area * math.prod(space),
            c1 * math.prod(s1),
            False,
        ),
        Layer("block1", model.p_drop_conv[0], c1 * math.prod(s1), c1, c1 * c2 * area * math.prod(s1), flat, False),
    ]
    probs = [model.p_drop_conv[1], *model.p_drop_hidden]
    names = ["block2", *(f"hidden{k + 1}" for k in range(len(model.widths)))]
    for k in range(len(dims) - 1):
        out.append(
            Layer(names[k], probs[k], dims[k], c2 if k == 0 else dims[k], dims[k] * dims[k + 1], dims[k + 1], True)
        )
    return out


def macs(model_cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int) -> int:
    """Multiply-adds of one example's forward pass through the Linear and Conv layers (weights
    times the positions they are applied at; biases, activations, pooling and dropout left out).

    MLP D-w1-...-wL-C: D w1 + w1 w2 + ... + wL C. CNN on (C, H, W) with channels c1, c2 (5 x 5
    kernels, padding 2, 2 x 2 max-pooling): C c1 25 H W + c1 c2 25 (H/2)(W/2), then the fully
    connected layers from c2 (H/4)(W/4) inputs (divisions rounded down, as pooling does).
    """
    return sum(layer.macs for layer in layers(model_cfg, input_shape, n_classes))


# ---------------------------------------------------------------------------------------------------
# Work: FLOPs and the number of steps or passes they take, by the rate they run at


@dataclass
class Work:
    """FLOPs by rate class (`train:KIND`, `infer:KIND`, `subnet`, `fp64`) and the optimizer steps
    or forward passes they take (each lasts at least the calibration's floor)."""

    flops: dict[str, float] = field(default_factory=dict)
    passes: dict[str, float] = field(default_factory=dict)

    def add(self, rate: str, flops: float, passes: float = 1) -> Work:
        self.flops[rate] = self.flops.get(rate, 0.0) + flops
        self.passes[rate] = self.passes.get(rate, 0.0) + passes
        return self

    def __iadd__(self, other: Work) -> Work:
        for rate in other.flops:
            self.add(rate, other.flops[rate], other.passes[rate])
        return self

    @property
    def total(self) -> float:
        return sum(self.flops.values())

    def seconds(self, cal: Calibration) -> float:
        """Estimated time: per rate class, FLOPs / FLOP/s, but no step or pass shorter than the floor."""
        out = 0.0
        for rate, flops in self.flops.items():
            floor = cal.step_s if rate.startswith("train:") else cal.pass_s
            out += max(flops / cal.rate(rate), self.passes[rate] * floor)
        return out


@dataclass(frozen=True)
class Sizes:
    """Examples of one run's splits: training (after `data.train_size`), validation, test."""

    train: int
    val: int
    test: int


def split_sizes(cfg: RunConfig, info) -> Sizes:
    """Split sizes from a `harness.data.datasets.DataInfo`: the validation share of the non-test pool is
    round(val_fraction x pool) overall (`harness.data.datasets.stratified_split` rounds per class, so the
    true count can differ by a few examples); the training split is `data.train_size` when set."""
    pool = int(info.n_examples)
    rest = round((1 - cfg.data.val_fraction) * pool)
    train = min(cfg.data.train_size, rest) if cfg.data.train_size is not None else rest
    return Sizes(train, pool - rest, int(info.n_test))


def _chunks(n: int) -> int:
    return math.ceil(n / EVAL_CHUNK) if n else 0


def training_work(cfg: RunConfig, stages: list[Layer], sizes: Sizes) -> Work:
    """One run trained to its budget (`harness.nets.training.train`): 6 x MACs per example seen, where
    the examples seen are every step's batch (the last batch of an epoch is the remainder), and
    2 x MACs per example of the forward passes that score the training split (at most
    `harness.nets.training.CHECK_TRAIN_EXAMPLES` of it) and the validation split at every validation
    check (every epoch, or every `check_every_steps` steps rounded up to whole epochs, and at the
    last epoch) and the training, validation and test splits for the runs table."""
    from harness.nets.training import CHECK_TRAIN_EXAMPLES

    t = cfg.train
    m = sum(s.macs for s in stages)
    n = sizes.train
    per_epoch = math.ceil(n / t.batch_size)
    epochs = math.ceil(t.steps / per_epoch) if t.steps else t.epochs
    steps = t.steps or epochs * per_epoch
    full, rest = divmod(steps, per_epoch)
    seen = full * n + min(rest * t.batch_size, n)
    every = max(1, math.ceil(t.check_every_steps / per_epoch)) if t.check_every_steps else 1
    checks = epochs // every + (1 if epochs % every else 0)
    checked = min(n, CHECK_TRAIN_EXAMPLES)
    scored = checks * (checked + sizes.val) + n + sizes.val + sizes.test
    passes = checks * (_chunks(checked) + _chunks(sizes.val)) + _chunks(n) + _chunks(sizes.val) + _chunks(sizes.test)
    return (
        Work()
        .add(f"train:{cfg.model.kind}", 6 * m * seen, steps)
        .add(f"infer:{cfg.model.kind}", 2 * m * scored, passes)
    )


def run_flops(cfg: RunConfig) -> float:
    """Training FLOPs of one run to its budget (`training_work`), from the dataset's metadata: the
    order in which a sweep hands out its runs, longest first."""
    from harness.data.datasets import describe

    info = describe(cfg.data.name, files=cfg.data.name.endswith(".npz"))
    return training_work(cfg, layers(cfg.model, info.input_shape, info.n_classes), split_sizes(cfg, info)).total


@dataclass(frozen=True)
class Engine:
    """What `harness.nets.subnetworks.SubnetworkEngine` computes for a net, in MACs per example: `first`
    the first site that drops anything; `prefix` the work before it (done once); `tail` one full
    pass from it on (a masked subnetwork, a per-example pass); `shared` the full product of the
    first compacted layer (done once, when that site keeps more than half its units); `subnet` the
    expected MACs of one compacted subnetwork (None when the net is not compacted)."""

    first: int
    prefix: int
    tail: int
    shared: int
    subnet: float | None
    droppable: int

    @property
    def dropout(self) -> bool:
        return self.droppable > 0


def engine(stages: list[Layer]) -> Engine:
    """The engine's work for these stages. A compacted subnetwork multiplies only the kept inputs
    of each Linear layer into the units the next site keeps; sites draw independently, so its
    expected MACs are in x out x keep_in x keep_out per layer (with the shared full product, the
    first layer subtracts its dropped inputs' part: in x (1 - keep_in) x out x keep_out)."""
    active = [k for k, s in enumerate(stages) if s.p_drop > 0]
    first = active[0] if active else len(stages)
    prefix = sum(s.macs for s in stages[:first])
    tail = sum(s.macs for s in stages[first:])
    compacted = bool(active) and all(s.linear for s in stages[first:])
    shared = stages[first].macs if compacted and stages[first].keep > 0.5 else 0
    subnet = None
    if compacted:
        subnet = 0.0
        for k in range(first, len(stages)):
            keep_out = stages[k + 1].keep if k + 1 < len(stages) else 1.0
            inner = (1 - stages[k].keep) if (k == first and shared) else stages[k].keep
            subnet += stages[k].macs * inner * keep_out
    return Engine(first, prefix, tail, shared, subnet, sum(s.units for s in stages if s.p_drop > 0))


def _engine_setup(kind: str, e: Engine, full: int, n: int) -> Work:
    """Building an engine on n examples and its weight-scaled logits: the work before the first
    active site, the shared product, one full forward pass."""
    return Work().add(f"infer:{kind}", 2 * n * (e.prefix + e.shared), 1).add(f"infer:{kind}", 2 * n * full, 1)


def _subnetworks(kind: str, e: Engine, n: int, count: int) -> Work:
    """`count` shared-mask subnetworks on n examples: compacted, or masked at full cost."""
    if not e.dropout or count == 0:
        return Work()  # a net without dropout returns its cached weight-scaled logits
    if e.subnet is not None:
        return Work().add("subnet", 2 * n * e.subnet * count, count)
    return Work().add(f"infer:{kind}", 2 * n * e.tail * count, count)


def _per_example(kind: str, e: Engine, n: int, count: int) -> Work:
    """`count` passes with a fresh mask per example: masked, at full cost from the first active site."""
    if not e.dropout or count == 0:
        return Work()
    return Work().add(f"infer:{kind}", 2 * n * e.tail * count, count)


def mc_work(settings, stages: list[Layer], kind: str, sizes: Sizes) -> Work:
    """`harness.inference.evaluation.evaluate_model` with MCSettings on its split: the engine and the
    weight-scaled net; exact enumeration of all 2^n subnetworks when asked for (or, with `auto`,
    when the net has at most `exact_max_units` droppable units), masked, in batches of 256;
    T x streams shared-mask subnetworks; T x per_example_streams per-example passes when `per_example`."""
    n = getattr(sizes, settings.split)
    e = engine(stages)
    full = sum(s.macs for s in stages)
    w = _engine_setup(kind, e, full, n)
    if settings.exact == "yes" or (settings.exact == "auto" and 0 < e.droppable <= settings.exact_max_units):
        count = 2**e.droppable
        w.add(f"infer:{kind}", 2 * n * e.tail * count, math.ceil(count / EXACT_CHUNK))
    draws = settings.T * settings.streams
    w += _subnetworks(kind, e, n, draws)
    if settings.per_example:
        w += _per_example(kind, e, n, settings.T * settings.per_example_streams)
    return w


def coadapt_work(settings, stages: list[Layer], kind: str, sizes: Sizes) -> Work:
    """`harness.inference.coadaptation.analyze_model` on its split of n examples: one forward pass for the
    activations; per hidden layer or conv block of U units (a conv block's units are its channels)
    the correlation and covariance matrices (U^2 n each, float64) and an eigendecomposition
    (counted as 4/3 U^3); per fully connected layer the ablation, in float64: a forward pass,
    the consuming layer's pre-activations (n U out), then for the base, each of the U units and
    each of the min(n_pairs, U(U-1)/2) pairs, the removed units' rank-one terms and the rest of
    the net (tail) on the n examples. Dead units would shorten the pairs: counted all alive."""
    n = getattr(sizes, settings.split)
    full = sum(s.macs for s in stages)
    w = Work().add(f"infer:{kind}", 2 * n * full, 1)
    for k in range(1, len(stages)):
        s = stages[k]
        u = s.channels
        w.add("fp64", 2 * (2 * u * u * n + 4 / 3 * u**3), 1)
        if not s.site.startswith("hidden"):
            continue  # a conv block's units are feature maps: no ablation
        tail = sum(t.macs for t in stages[k + 1 :])
        pairs = min(settings.n_pairs, u * (u - 1) // 2)
        ablation = full + s.macs + tail + u * (s.outputs + tail) + pairs * (2 * s.outputs + tail)
        w.add("fp64", 2 * n * ablation, 3 + math.ceil(u / ABLATION_BATCH) + math.ceil(pairs / ABLATION_BATCH))
    return w


def eval_sets(settings) -> list[str]:
    """The kind of each evaluation set of `harness.data.shifts.evaluation_sets` (none, rotation,
    corruption, unseen), each the size of the test split."""
    return (
        ["none"]
        + ["rotation"] * sum(1 for a in settings.angles if a % 360)
        + ["corruption"] * len(settings.corruptions) * len(settings.severities)
        + ["unseen"] * len(settings.unseen)
    )


def robustness_work(settings, stages: list[Layer], kind: str, sizes: Sizes) -> Work:
    """`harness.inference.robustness.evaluate_robustness`: a forward pass over the validation split (the
    temperature), then on every evaluation set (test size) the engine and weight-scaled net and,
    for a dropout net, T shared-mask subnetworks and, on the kinds of set in `per_example`, T
    per-example passes."""
    e = engine(stages)
    full = sum(s.macs for s in stages)
    n = sizes.test
    w = Work().add(f"infer:{kind}", 2 * sizes.val * full, 1)
    for shift in eval_sets(settings):
        w += _engine_setup(kind, e, full, n)
        w += _subnetworks(kind, e, n, settings.T)
        if shift in settings.per_example:
            w += _per_example(kind, e, n, settings.T)
    return w


def evaluation_work(evaluations, stages: list[Layer], kind: str, sizes: Sizes) -> dict[str, Work]:
    """{evaluation kind: its work} for one trained run."""
    out = {}
    if evaluations.mc is not None:
        out["mc"] = mc_work(evaluations.mc, stages, kind, sizes)
    if evaluations.coadapt is not None:
        out["coadapt"] = coadapt_work(evaluations.coadapt, stages, kind, sizes)
    if evaluations.robustness is not None:
        out["robustness"] = robustness_work(evaluations.robustness, stages, kind, sizes)
    return out


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
    import torch

    from harness.bench import machine_line
    from harness.config import TrainConfig
    from harness.nets.models import build_model
    from harness.nets.subnetworks import SubnetworkEngine, sample_masks
    from harness.nets.training import make_optimizer, run_epoch
    from harness.sweep.run import check_device

    if "mlp" not in nets:
        raise ValueError("calibration needs an mlp")
    check_device(device)
    busy = _busy(device)  # before our own threads add to the load
    start = time.perf_counter()
    phases = 2 * len(nets) + 4
    share = budget_s / phases
    rates, names = {}, {}
    gen = torch.Generator().manual_seed(0)

    def synthetic(shape, n_classes, n):
        x = torch.randn(n, *shape, generator=gen).to(device)
        y = torch.randint(0, n_classes, (n,), generator=gen).to(device)
        return x, y

    def train_step_s(cfg: ModelConfig, shape, n_classes) -> tuple[float, object]:
        torch.manual_seed(0)
        model = build_model(cfg, shape, n_classes).to(device).train()
        opt = make_optimizer(model, TrainConfig(batch_size=batch_size, momentum=0.9))
        steps = 16
        x, y = synthetic(shape, n_classes, batch_size * steps)
        perm = torch.arange(batch_size * steps, device=device)

        def fn(reps: int) -> None:
            for i in range(0, reps, steps):
                run_epoch(
                    model, opt, x, y, perm, batch_size, min(steps, reps - i), cfg.max_norm
                )  # reads the loss: one sync

        return _per_call(fn, device, share), model

    def forward_s(model, x, probe: bool = False) -> float:
        def fn(reps: int) -> None:
            with torch.no_grad():
                for _ in range(reps):
                    model(x)

        return _per_call(fn, device, 0.0 if probe else share)  # a probe: one warm-up and one timed pass

    for kind, (cfg, shape, n_classes) in nets.items():
        m = macs(cfg, shape, n_classes)
        names[f"train:{kind}"] = names[f"infer:{kind}"] = _describe_net(cfg, shape, n_classes)
        step, model = train_step_s(cfg, shape, n_classes)
        rates[f"train:{kind}"] = 6 * m * batch_size / step
        model.eval()
        n = batch_size
        x, _ = synthetic(shape, n_classes, n)
        # evaluations score whole splits: the largest batch up to max_eval whose pass fits an eighth of the share (one
        # probe each)
        while 2 * n <= max_eval and 8 * forward_s(model, x, probe=True) < share:
            n *= 2
            x, _ = synthetic(shape, n_classes, n)
        rates[f"infer:{kind}"] = 2 * m * n / forward_s(model, x)
        if kind == "mlp":
            eng = SubnetworkEngine(model, x)
            if eng.uses_compaction:
                masks = [sample_masks(eng.sites, 0, i) for i in range(16)]
                flops = sum(eng.flops(mk) for mk in masks) / len(masks)

                def sub(reps: int, eng=eng, masks=masks) -> None:
                    for i in range(reps):
                        eng.logits(masks[i % len(masks)])

                rates["subnet"] = flops / _per_call(sub, device, share)
            else:
                rates["subnet"] = rates["infer:mlp"]
            names["subnet"] = f"{names['infer:mlp']}, compacted subnetworks"
            model64 = copy.deepcopy(model).double()
            rates["fp64"] = 2 * m * n / forward_s(model64, x.double())
            names["fp64"] = f"{names['infer:mlp']}, float64"
    # the floor: a tiny net of the base kind, where launch and framework overhead is all there is
    cfg, shape, n_classes = nets["mlp"]
    tiny = ModelConfig(
        widths=(8,) * max(1, len(cfg.widths)), p_drop_input=0.2, p_drop_hidden=(0.5,), max_norm=cfg.max_norm
    )
    step_s, model = train_step_s(tiny, shape, n_classes)
    x, _ = synthetic(shape, n_classes, batch_size)
    eng = SubnetworkEngine(model.eval(), x)
    masks = [sample_masks(eng.sites, 0, i) for i in range(16)]

    def tiny_sub(reps: int) -> None:
        for i in range(reps):
            eng.logits(masks[i % len(masks)])

    pass_s = _per_call(tiny_sub, device, share)
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


# ---------------------------------------------------------------------------------------------------
# The plan


@dataclass
class StudyPlan:
    """One study's row of the plan (FLOPs and seconds of the runs and evaluations it adds)."""

    study: str
    replicates: int = 0
    tuning: int = 0
    shared: int = 0
    train_flops: float = 0.0
    eval_flops: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    note: str = ""

    @property
    def runs(self) -> int:
        return self.replicates + self.tuning

    @property
    def new(self) -> int:
        return self.runs - self.shared


def default_studies() -> list[str]:
    """The Makefile's STUDIES, in its order (this module's copy where the Makefile is not found)."""
    try:
        text = (ROOT / "Makefile").read_text()
    except OSError:
        return list(STUDIES)
    found = re.search(r"^STUDIES\s*:?=\s*(.+)$", text, re.M)
    return found.group(1).split() if found else list(STUDIES)


def _describe(name: str):
    from harness.data.datasets import describe
    from harness.errors import DataError

    try:
        return describe(name)
    except DataError:  # files present but unreadable: the plan needs only their metadata
        return describe(name, files=False)


def load_studies(profile: str, studies: list[str], dataset: str | None = None) -> list:
    """The studies' `Experiment`s, loaded without reading any data file."""
    from harness.sweep.experiment import load_experiment

    return [
        load_experiment(ROOT / "experiments" / f"{study}.py", profile, dataset, need_data=False) for study in studies
    ]


def build_plan(experiments: list, cal: Calibration | None = None) -> tuple[list[StudyPlan], dict]:
    """Rows of the plan, one per experiment (`load_studies`), in order: shared runs and
    evaluations are counted in the first study that lists them; and the data the runs need that
    are not in place: {dataset: missing files}."""
    from harness.data.datasets import missing_files
    from harness.store.identity import design_key

    infos: dict[str, object] = {}
    seen_runs: set = set()
    seen_evals: set = set()
    rows = []
    for exp in experiments:
        study = exp.path.stem
        row = StudyPlan(study, note=exp.skipped or "")
        tuning = exp.tuning_configs()
        row.replicates, row.tuning = len(exp.configs), len(tuning)
        for cfg, is_tuning in [(c, False) for c in exp.configs] + [(c, True) for c in tuning]:
            name = cfg.data.name
            if name not in infos:
                infos[name] = _describe(name)
            info = infos[name]
            stages = layers(cfg.model, tuple(info.input_shape), int(info.n_classes))
            sizes = split_sizes(cfg, info)
            # a replicate's rate is chosen by its arm's grid; equal designs under equal grids are one run
            key = design_key(cfg) if is_tuning else (design_key(cfg), exp.lr_grid)
            if key in seen_runs:
                row.shared += 1
            else:
                seen_runs.add(key)
                w = training_work(cfg, stages, sizes)
                row.train_flops += w.total
                row.train_s += w.seconds(cal) if cal else 0.0
            if is_tuning:
                continue  # tuning runs are trained, not evaluated
            for kind, w in evaluation_work(exp.evaluations, stages, cfg.model.kind, sizes).items():
                ekey = (key, kind, exp.evaluations.settings_json(kind))
                if ekey in seen_evals:
                    continue
                seen_evals.add(ekey)
                row.eval_flops += w.total
                row.eval_s += w.seconds(cal) if cal else 0.0
        if row.runs and row.shared == row.runs and not row.eval_flops:
            row.note = row.note or "every run and evaluation is an earlier study's: nothing new"
        elif row.shared and not row.note:
            row.note = f"{row.shared} runs listed by an earlier study"
        rows.append(row)
    missing = {name: [str(p) for p in missing_files(name)] for name in infos}
    if any(exp.evaluations.robustness is not None for exp in experiments) and "fashion-mnist" not in infos:
        # where its files are, Fashion-MNIST joins the unseen sets of the robustness evaluation (one more set per run)
        missing["fashion-mnist (optional)"] = [str(p) for p in missing_files("fashion-mnist")]
    return rows, {k: v for k, v in missing.items() if v}


def representative_nets(
    profile: str, experiments: list, dataset: str | None = None
) -> dict[str, tuple[ModelConfig, tuple[int, ...], int]]:
    """The nets the calibration measures: the profile's base MLP (on the setting's data, else its
    base data), and the first CNN the experiments list, if any (on its data)."""
    from harness.sweep.profiles import base

    b = base(profile)
    info = _describe(dataset or b.data.name)
    nets = {"mlp": (b.model, tuple(info.input_shape), int(info.n_classes))}
    for exp in experiments:
        cnn = next((c for c in exp.configs if c.model.kind == "cnn"), None)
        if cnn is not None:
            info = _describe(cnn.data.name)
            nets["cnn"] = (cnn.model, tuple(info.input_shape), int(info.n_classes))
            break
    return nets


def si(x: float, unit: str = "FLOP") -> str:
    """1.23e15 -> '1.23 PFLOP'."""
    if x == 0:
        return f"0 {unit}"
    prefixes = ["", "k", "M", "G", "T", "P", "E", "Z"]
    i = min(len(prefixes) - 1, max(0, int(math.floor(math.log10(abs(x)) / 3))))
    return f"{x / 10 ** (3 * i):.3g} {prefixes[i]}{unit}"


def duration(s: float) -> str:
    """Seconds as '45 s', '12 min', '3.4 h' or '2.1 d'."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def plan_json(profile: str, dataset: str | None, rows: list[StudyPlan], missing: dict, cal: Calibration | None) -> dict:
    studies = [
        {
            "study": r.study,
            "runs": r.runs,
            "replicates": r.replicates,
            "tuning_runs": r.tuning,
            "shared_runs": r.shared,
            "new_runs": r.new,
            "train_flops": r.train_flops,
            "eval_flops": r.eval_flops,
            "train_s": r.train_s if cal else None,
            "eval_s": r.eval_s if cal else None,
            "estimated_s": (r.train_s + r.eval_s) if cal else None,
            "note": r.note,
        }
        for r in rows
    ]
    totals = {
        "runs_listed": sum(r.runs for r in rows),
        "runs_to_train": sum(r.new for r in rows),
        "train_flops": sum(r.train_flops for r in rows),
        "eval_flops": sum(r.eval_flops for r in rows),
        "estimated_s": sum(r.train_s + r.eval_s for r in rows) if cal else None,
    }
    return {
        "profile": profile,
        "dataset": dataset,
        "missing_files": missing,
        "make_data": "make data" if missing else None,
        "calibration": asdict(cal) if cal else None,
        "studies": studies,
        "totals": totals,
        "assumptions": list(ASSUMPTIONS),
    }


def format_plan(
    profile: str, dataset: str | None, rows: list[StudyPlan], missing: dict, cal: Calibration | None
) -> str:
    import pandas as pd

    lines = [f"Plan of profile {profile}{' on ' + dataset if dataset else ''}: nothing trained yet."]
    if missing:
        lines.append("Missing data files (the plan does not need them; the runs do: `make data` fetches them):")
        for name, paths in missing.items():
            lines += [f"  {name}:"] + [f"    {p}" for p in paths]
        if any(name.endswith("(optional)") for name in missing):
            lines.append(
                "  (optional: where its files are, Fashion-MNIST is one more unseen set of the robustness evaluation; "
                "the plan counts without it)"
            )
    else:
        lines.append("Data: every dataset's files are in place.")
    if cal:
        lines.append(f"Calibration on {cal.device} ({cal.machine}), {cal.seconds:.1f} s:")
        if cal.busy:
            lines.append(f"  {cal.busy}")
        for rate, value in cal.rates.items():
            lines.append(f"  {rate:<10} {si(value, 'FLOP/s'):>14}  {cal.nets.get(rate, '')}")
        lines.append(
            f"  floor: {cal.step_s * 1e3:.2g} ms per optimizer step, {cal.pass_s * 1e3:.2g} ms per forward pass (tiny "
            "net)"
        )
    table = pd.DataFrame(
        [
            {
                "study": r.study,
                "replicates": r.replicates,
                "tuning": r.tuning,
                "shared": r.shared,
                "train FLOPs": si(r.train_flops),
                "eval FLOPs": si(r.eval_flops),
            }
            | (
                {
                    "train time": duration(r.train_s),
                    "eval time": duration(r.eval_s),
                    "est. time": duration(r.train_s + r.eval_s),
                }
                if cal
                else {}
            )
            for r in rows
        ]
    )
    total = {
        "study": "total",
        "replicates": sum(r.replicates for r in rows),
        "tuning": sum(r.tuning for r in rows),
        "shared": sum(r.shared for r in rows),
        "train FLOPs": si(sum(r.train_flops for r in rows)),
        "eval FLOPs": si(sum(r.eval_flops for r in rows)),
    }
    if cal:
        train_s, eval_s = sum(r.train_s for r in rows), sum(r.eval_s for r in rows)
        total |= {
            "train time": duration(train_s),
            "eval time": duration(eval_s),
            "est. time": duration(train_s + eval_s),
        }
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    lines += ["", table.to_string(index=False), ""]
    lines.append(
        "replicates: the runs a study lists; tuning: the runs that choose each arm's learning rate; shared: of both, "
        "those an "
        f"earlier study lists (trained and evaluated once, counted there). {sum(r.new for r in rows)} runs to train."
    )
    from harness.sweep.profiles import looks

    design = looks(profile)
    if len(design) > 1:
        lines.append(
            f"Studies run in looks of {', '.join(map(str, design))} replicates (`analysis.looks`): this plan counts "
            "every look, "
            "the most the suite can run; a study stops earlier once none of its claims asks for more seeds (when "
            "every "
            f"study stops at its first look, the replicates shrink to about {design[0] / design[-1]:.0%}; the tuning "
            "runs "
            f"do not shrink)."
        )
    for r in rows:
        if r.note:
            lines.append(f"  {r.study}: {r.note}")
    lines += ["", "Assumptions:"] + [f"- {a}" for a in ASSUMPTIONS]
    if not cal:
        lines.append("- No calibration (--calibrate-s 0): FLOPs only, no times.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m harness.sweep.plan",
        description="Runs, FLOPs and estimated time of every study of a profile, before training.",
    )
    p.add_argument("--profile", default="quick", help="quick (default), paper or smoke")
    p.add_argument("--dataset", help="plan the studies on this dataset instead of their own (a name or a .npz path)")
    p.add_argument(
        "--device", default="cpu", help="where the estimate is calibrated: cpu (default), cuda, cuda:N or mps"
    )
    p.add_argument(
        "--calibrate-s", type=float, default=5.0, help="seconds of calibration on the device (default 5; 0: FLOPs only)"
    )
    p.add_argument("--studies", help="comma-separated studies (default: the Makefile's STUDIES)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = p.parse_args(argv)
    try:
        if not (args.device == "cpu" or re.fullmatch(r"cuda(:\d+)?", args.device) or args.device == "mps"):
            raise ConfigError(f"--device {args.device}: use cpu, cuda, cuda:N or mps")
        if not (args.calibrate_s >= 0 and math.isfinite(args.calibrate_s)):
            raise ConfigError(f"--calibrate-s {args.calibrate_s}: give a number of seconds >= 0")
        studies = [s.strip() for s in args.studies.split(",") if s.strip()] if args.studies else default_studies()
        known = sorted(q.stem for q in (ROOT / "experiments").glob("*.py") if not q.name.startswith("_"))
        unknown = [s for s in studies if s not in known]
        if unknown or not studies:
            raise ConfigError(
                f"--studies: {unknown[0] if unknown else 'none given'!r} is not a study; studies: {', '.join(known)}"
            )
        experiments = load_studies(args.profile, studies, args.dataset)
        cal = None
        if args.calibrate_s > 0:
            from harness.sweep.profiles import base

            nets = representative_nets(args.profile, experiments, args.dataset)
            cal = calibrate(args.device, nets, base(args.profile).train.batch_size, args.calibrate_s)
        rows, missing = build_plan(experiments, cal)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(plan_json(args.profile, args.dataset, rows, missing, cal), indent=2))
    else:
        print(format_plan(args.profile, args.dataset, rows, missing, cal))
    return 0


if __name__ == "__main__":
    sys.exit(main())
