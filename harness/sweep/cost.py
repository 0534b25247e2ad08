"""The cost model of a plan: multiply-adds of a network without building it, and the work (FLOPs, steps,
passes) of training a run and of each evaluation kind, by the rate class it runs at.

Read by the plan (`harness.sweep.plan`), the evaluation kinds' registry (`harness.sweep.evaluations`, each
kind's `work`) and the sweep, which starts the costliest runs first (`run_flops`). FLOPs count 2 per
multiply-add of the Linear and Conv layers; see the plan's docstring for what is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.config import ModelConfig, RunConfig
from harness.errors import ConfigError

if TYPE_CHECKING:
    from harness.sweep.rates import Calibration

EVAL_CHUNK = 4096  # examples per forward pass when a split is scored (`harness.nets.training.EVAL_CHUNK`)
EXACT_CHUNK = (
    256  # subnetworks per batched pass of exact enumeration (`harness.nets.subnetworks.enumerate_subnetworks`)
)
ABLATION_BATCH = 16  # removals per broadcast in `harness.inference.coadaptation.ablation`
KERNEL = 5  # conv kernel of `harness.nets.models.build_model` (padding 2: the size is kept, then pooled by 2)

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
    """Split sizes from a `harness.data.registry.DataInfo`: the validation share of the non-test pool is
    round(val_fraction x pool) overall (`harness.data.splits.stratified_split` rounds per class, so the
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
