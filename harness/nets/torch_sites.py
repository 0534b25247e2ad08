"""Dropout sites of any torch module: which of torch's modules drop units, and how each is sampled.

`harness.nets.subnetworks.predict` and `ensemble` sample any classifier through this module (a
`DropoutNet` of the harness has an engine of its own). A site is one module that drops units:

| module | what one pass drops | kept units |
|---|---|---|
| nn.Dropout | single units | scaled by 1/keep |
| nn.Dropout1d, nn.Dropout2d, nn.Dropout3d | whole channels (one draw per channel, shared by positions) | 1/keep |
| nn.AlphaDropout | single units, set to SELU's saturation value | torch's affine correction a x + b |
| nn.FeatureAlphaDropout | whole channels, set to SELU's saturation value | torch's affine correction a x + b |
| nn.MultiheadAttention (alone or inside nn.Transformer*) | attention weights (head x query x key) | scaled by 1/keep |

Modes (`passes`):

- `mc_per_example`: the sites in train mode, every other module in eval mode (batch norm keeps its
  running statistics); torch draws a fresh mask per example per pass, as in the usual idiom.
- `mc_shared`: every module in eval mode; each site's output is multiplied by one mask shared by
  every example of the batch (a subnetwork), drawn from (seed, t) in the order the sites are called.
  Attention dropout happens inside torch's attention function, out of reach of a hook: during a pass
  the module's forward is `harness.nets.attention.shared_attention`, torch's attention written out
  with the mask applied.

torch's fused inference paths (`TransformerEncoderLayer` and `MultiheadAttention` in eval mode)
never call their dropout: they are switched off while sampling (`torch.backends.mha`).

Before sampling, `unsampled_randomness` runs the model twice on a few examples with every module in
train mode except the sites and the normalisation layers. Whatever still differs between the two
passes is randomness the harness does not control (functional dropout such as `F.dropout`, a module
it does not know). It is named: an error by default, a warning with `allow_unsampled=True` (the
rest then runs in eval mode, as in weight-scaled inference).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

from harness.errors import ConfigError
from harness.nets.attention import attention_forward

# SELU's saturation value is -ALPHA_SELU; torch's alpha dropout sets dropped units to it
ALPHA_SELU = 1.7580993408473766
PROBE_EXAMPLES = 4
# kinds of site, most specific class first (FeatureAlphaDropout is no AlphaDropout, Dropout2d no Dropout)
KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.FeatureAlphaDropout, "feature_alpha"),
    (nn.AlphaDropout, "alpha"),
    (nn.Dropout1d, "channel"),
    (nn.Dropout2d, "channel"),
    (nn.Dropout3d, "channel"),
    (nn.Dropout, "dropout"),
    (nn.MultiheadAttention, "attention"),
)
TRANSFORMER_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


@dataclass(frozen=True)
class Site:
    """One module that drops units. `batch_dim` is the dimension of its input that holds the
    examples (1 inside a transformer layer with batch_first=False)."""

    name: str
    module: nn.Module
    kind: str
    p: float
    batch_dim: int = 0
    custom: bool = False  # a subclass with a forward of its own: mc_per_example only

    @property
    def label(self) -> str:
        return f"{self.name or '(model)'} ({type(self.module).__name__}, p={self.p:g})"


def find_sites(model: nn.Module) -> list[Site]:
    """Every dropout site of `model`, in module order. A dropout module of a kind torch does not
    ship (a subclass of torch's private `_DropoutNd` that is none of the above) is refused by name."""
    owners = {name: m for name, m in model.named_modules() if isinstance(m, TRANSFORMER_LAYERS)}
    sites = []
    for name, m in model.named_modules():
        cls, kind = next(((c, k) for c, k in KINDS if isinstance(m, c)), (None, None))
        if kind is None:
            if isinstance(m, _DropoutNd):
                raise ConfigError(
                    f"{name} ({type(m).__name__}) is a dropout module of a kind the harness does not know; it "
                    "samples nn.Dropout, nn.Dropout1d/2d/3d, nn.AlphaDropout, nn.FeatureAlphaDropout and attention "
                    "dropout"
                )
            continue
        p = float(m.dropout if kind == "attention" else m.p)
        within = [prefix for prefix in owners if prefix == "" or name.startswith(prefix + ".")]
        owner = owners[max(within, key=len)] if within else None  # the nearest layer
        # attention reads its own layout (batch_first) and masks weights (N, heads, L, S)
        batch_dim = 1 if owner is not None and kind != "attention" and not _batch_first(owner) else 0
        sites.append(Site(name, m, kind, p, batch_dim, custom=type(m).forward is not cls.forward))
    return sites


def _batch_first(layer: nn.Module) -> bool:
    return bool(layer.self_attn.batch_first)


def check_sites(model: nn.Module, x: torch.Tensor, sites: list[Site], allow_unsampled: bool = False) -> None:
    """Refuse to sample what cannot be sampled: randomness outside the sites (an error, or a warning
    with `allow_unsampled`), no dropout module at all, or sites that all drop nothing."""
    left = unsampled_randomness(model, x, sites)
    if left:
        message = (
            f"{type(model).__name__} is random in train mode where the harness samples nothing: {', '.join(left)}. "
            "Functional dropout (F.dropout and the like) and modules the harness does not know cannot be switched "
            "or masked from outside; use torch's dropout modules (nn.Dropout, nn.Dropout1d/2d/3d, nn.AlphaDropout, "
            "nn.FeatureAlphaDropout, nn.MultiheadAttention), or pass allow_unsampled=True to sample only the "
            "dropout modules (the rest then runs in eval mode)"
        )
        if any(isinstance(m, nn.RNNBase) and m.dropout > 0 for m in model.modules()):
            message += (
                "; for nn.LSTM, nn.GRU and nn.RNN with dropout: set dropout=0 and put nn.Dropout between "
                "single-layer ones"
            )
        if not allow_unsampled:
            raise ConfigError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
    if not sites:
        raise ConfigError(f"{type(model).__name__} contains no dropout module: there are no subnetworks to sample")
    if all(s.p == 0 for s in sites):
        raise ConfigError(
            f"every dropout site of {type(model).__name__} has p = 0 ({', '.join(s.label for s in sites)}): there "
            "are no subnetworks to sample, every pass would be the weight-scaled net; use mode='weight_scaled'"
        )


@contextmanager
def no_fast_path() -> Iterator[None]:
    """torch's fused inference path of transformer layers and attention skips their dropout."""
    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


@contextmanager
def modes(model: nn.Module, train: Callable[[nn.Module], bool]) -> Iterator[None]:
    """Every module's training flag set by `train` (not recursively), and restored afterwards."""
    was = {m: m.training for m in model.modules()}
    try:
        for m in model.modules():
            m.training = train(m)
        yield
    finally:
        for m, flag in was.items():
            m.training = flag


@torch.no_grad()
def unsampled_randomness(model: nn.Module, x: torch.Tensor, sites: list[Site]) -> list[str]:
    """Names of the modules whose randomness the harness does not sample. Every module is put in
    train mode except the sites and the normalisation layers (their running statistics are left
    alone), and the model runs twice on a few examples with different random states; in the second
    pass every module gets again the inputs it got in the first, so a module whose output changes
    is random itself or through a module inside it. The innermost such modules are named ("(the
    model)" when the randomness is in the model's own forward). Buffers are restored afterwards."""
    site_modules = {id(s.module) for s in sites}
    named = list(model.named_modules())
    # every module's buffers by reference and by value: a forward may change one in place or rebind it
    buffers = [
        (m, dict(m._buffers), {k: None if b is None else b.clone() for k, b in m._buffers.items()})
        for m in model.modules()
    ]
    inputs: dict[str, list] = {}
    outputs: list[dict[str, list[list[torch.Tensor]]]] = [{}, {}]
    # modules whose own code, between the calls of the modules inside them, is random: a module
    # inside them got other inputs in the second pass than in the first
    fed_otherwise: set[str] = set()
    with modes(model, lambda m: id(m) not in site_modules and not isinstance(m, _NormBase)), no_fast_path():
        for i, seed in enumerate((1, 2)):
            replayed: dict[str, int] = {}

            def replay(module, args, kwargs, name, i=i, replayed=replayed):
                if i == 0:
                    inputs.setdefault(name, []).append(_clone((args, kwargs)))
                    return None
                k = replayed[name] = replayed.get(name, -1) + 1
                if k >= len(inputs.get(name, [])):
                    fed_otherwise.add(name.rpartition(".")[0])
                    return None
                if not _same(_tensors((args, kwargs)), _tensors(inputs[name][k])):
                    fed_otherwise.add(name.rpartition(".")[0])
                return inputs[name][k]

            def record(module, args, kwargs, out, name, i=i):
                outputs[i].setdefault(name, []).append([t.clone() for t in _tensors(out)])

            handles = []
            for name, m in named:
                handles.append(m.register_forward_pre_hook(partial(replay, name=name), with_kwargs=True))
                handles.append(m.register_forward_hook(partial(record, name=name), with_kwargs=True))
            try:
                with torch.random.fork_rng(devices=_cuda(x)):
                    torch.manual_seed(seed)
                    model(x[:PROBE_EXAMPLES])
            except Exception as e:
                raise ConfigError(
                    f"the check for randomness outside the dropout sites runs {type(model).__name__} in train mode "
                    f"(all but the sites and torch's normalisation layers) on {min(len(x), PROBE_EXAMPLES)} "
                    f"example(s), and it failed: {type(e).__name__}: {e}; give at least {PROBE_EXAMPLES} examples, "
                    "or make the model run in train mode"
                ) from e
            finally:
                for h in handles:
                    h.remove()
                for m, refs, values in buffers:
                    for k, b in values.items():
                        if b is not None:
                            refs[k].copy_(b)
                    m._buffers.clear()
                    m._buffers.update(refs)
    changed = {name for name, _ in named if not _same_calls(outputs[0].get(name, []), outputs[1].get(name, []))}
    random = changed | {p for p in fed_otherwise if not any(_inside(c, p) for c in changed)}
    inner = [n for n, _ in named if n in random and not any(_inside(o, n) for o in random)]
    return [
        f"{n} ({type(model.get_submodule(n)).__name__})" if n else f"(the model) ({type(model).__name__})"
        for n in inner
    ]


def _inside(name: str, outer: str) -> bool:
    """Module `name` lies inside module `outer` (every module lies inside the model, named "")."""
    return name != outer and (outer == "" or name.startswith(outer + "."))


def _clone(obj):
    """Tensors copied (a later in-place operation must not change what was recorded), the rest kept."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def _same_calls(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=False))


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    # a tolerance: some kernels are not bit-reproducible, and dropout changes values far beyond it
    return len(a) == len(b) and all(
        u.shape == v.shape
        and (
            torch.equal(u, v)
            if not u.is_floating_point()
            else torch.allclose(u, v, rtol=1e-4, atol=1e-6, equal_nan=True)
        )
        for u, v in zip(a, b, strict=False)
    )


def _cuda(x: torch.Tensor) -> list[torch.device]:
    return [x.device] if x.device.type == "cuda" else []


def per_example_passes(
    model: nn.Module, x: torch.Tensor, sites: list[Site], seeds: list[int]
) -> Iterator[torch.Tensor]:
    """One pass of `mc_per_example` per seed: the sites in train mode, the rest in eval mode, torch's
    random state seeded by the pass's seed. Modes and random state are set for each pass and
    restored before it is handed out, so two samplers may be interleaved."""
    site_modules = {id(s.module) for s in sites}
    for t, pass_seed in enumerate(seeds):
        with (
            modes(model, lambda m: id(m) in site_modules),
            no_fast_path(),
            torch.random.fork_rng(devices=_cuda(x)),
            _firing(sites) as fired,
        ):
            torch.manual_seed(pass_seed)
            z = logits(model, model(x), len(x))
        if t == 0:
            check_fired(model, sites, fired)
        yield z


def shared_passes(model: nn.Module, x: torch.Tensor, sites: list[Site], seeds: list[int]) -> Iterator[torch.Tensor]:
    """One pass of `mc_shared` per seed: a pass draws every site's mask from one generator seeded
    by its seed, in the order the sites are called (on the CPU: the same masks on every device).
    Before the first, the subnetwork of the first seed is checked to treat examples alone."""
    custom = [s.label for s in sites if s.custom and s.p > 0]
    if custom:
        raise ConfigError(
            f"mc_shared cannot sample {', '.join(custom)}: the class overrides torch's forward, so the harness does "
            "not know what it drops; use mode='mc_per_example' (the module's own forward in train mode)"
        )
    if len(x) >= 2:
        pair, alone = _shared_pass(model, x[:2], sites, seeds[0])[0], _shared_pass(model, x[1:2], sites, seeds[0])[0]
        if not _same([pair[1:]], [alone]):
            raise ConfigError(
                f"mc_shared: one subnetwork of {type(model).__name__} gives example 1 other logits in a batch of two "
                "than alone, so a mask is not shared by the examples: a site sees them one at a time (a loop over "
                "examples, unbatched attention or channel dropout), mixes them (a sequence-first layer fed "
                "batch-first), or the model draws random numbers of its own in eval mode; use mode='mc_per_example'"
            )
    for t, pass_seed in enumerate(seeds):
        z, fired = _shared_pass(model, x, sites, pass_seed)
        if t == 0:
            check_fired(model, sites, fired)
        yield z


def _shared_pass(
    model: nn.Module, x: torch.Tensor, sites: list[Site], pass_seed: int
) -> tuple[torch.Tensor, dict[int, int]]:
    g = torch.Generator().manual_seed(pass_seed)

    def draw(shape: tuple[int, ...], keep: float) -> torch.Tensor:
        return torch.rand(shape, generator=g) < keep

    with modes(model, lambda m: False), no_fast_path(), _firing(sites) as fired, ExitStack() as stack:
        for site in sites:
            if site.p == 0:
                continue
            if site.kind == "attention":
                stack.enter_context(attention_forward(site.module, site.p, draw))
            else:
                stack.callback(
                    site.module.register_forward_hook(_shared_hook(site, draw, len(x)), with_kwargs=True).remove
                )
        return logits(model, model(x), len(x)), fired


@contextmanager
def _firing(sites: list[Site]) -> Iterator[dict[int, int]]:
    """Counts the calls of every site that drops something, by index in `sites`."""
    fired: dict[int, int] = {}
    handles = []
    for i, site in enumerate(sites):
        if site.p > 0:

            def count(module, args, out, i=i):
                fired[i] = fired.get(i, 0) + 1

            handles.append(site.module.register_forward_hook(count))
    try:
        yield fired
    finally:
        for h in handles:
            h.remove()


def check_fired(model: nn.Module, sites: list[Site], fired: dict[int, int]) -> None:
    """No site ran in a pass: nothing was sampled (an error); some did not: named in a warning."""
    active = [i for i, s in enumerate(sites) if s.p > 0]
    idle = [sites[i].label for i in active if not fired.get(i)]
    if len(idle) == len(active):
        raise ConfigError(
            f"no dropout site of {type(model).__name__} ran while sampling ({', '.join(idle)}): its forward calls "
            "them only in training mode or not at all, so every pass would be the weight-scaled net; call the "
            "dropout modules in every mode (they drop nothing in eval mode)"
        )
    if idle:
        warnings.warn(
            f"dropout sites of {type(model).__name__} that did not run in a pass, so add nothing to the sampled "
            f"predictions: {', '.join(idle)}",
            RuntimeWarning,
            stacklevel=4,
        )


def logits(model: nn.Module, z, n: int) -> torch.Tensor:
    """The model's output, which must be logits (N, C) for the N examples."""
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[0] != n:
        got = f"a {type(z).__name__}" if not isinstance(z, torch.Tensor) else f"a tensor of shape {tuple(z.shape)}"
        raise ConfigError(
            f"{type(model).__name__} returned {got}; sampling needs logits (N, C) for the {n} examples: wrap the "
            "model so that its forward returns them (e.g. lambda output: output.logits)"
        )
    return z


def _shared_hook(site: Site, draw, n: int):
    keep = 1.0 - site.p

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> torch.Tensor:
        x = args[0] if args else next(iter(kwargs.values()))
        if site.p == 1:
            return x * 0  # torch's own rule: nothing kept
        mask = _shared_mask(site, module, x, draw, keep, n).to(x.device, x.dtype)
        if site.kind in ("alpha", "feature_alpha"):
            # torch: noise in {0, 1}, a = ((alpha^2 p + 1) keep)^-1/2, out = a x noise + alpha a (noise - 1 + p)
            a = 1.0 / math.sqrt((ALPHA_SELU**2 * site.p + 1) * keep)
            return x * mask * a + (mask - 1 + site.p) * (ALPHA_SELU * a)
        return x * mask / keep

    return hook


def _shared_mask(site: Site, module: nn.Module, x: torch.Tensor, draw, keep: float, n: int) -> torch.Tensor:
    """One mask for every example: the input's shape with the batch dimension of size 1 (single
    units), or with every dimension but the channels of size 1 (channel dropout)."""
    b = site.batch_dim
    if site.kind == "channel" and not _batched_channels(module, x):
        raise ConfigError(
            f"mc_shared: site {site.label} gets input of shape {tuple(x.shape)}, which torch reads as one example "
            "without a batch dimension; a mask shared by the examples needs them batched; use mode='mc_per_example'"
        )
    if x.dim() <= b or x.shape[b] != n:
        raise ConfigError(
            f"mc_shared shares one mask among the examples, but site {site.label} gets input of shape "
            f"{tuple(x.shape)} whose dimension {b} is not the batch of {n} examples; use mode='mc_per_example'"
        )
    if site.kind in ("channel", "feature_alpha"):
        if b != 0 or x.dim() < 2:
            raise ConfigError(f"site {site.label}: channel dropout needs input (N, C, ...), got {tuple(x.shape)}")
        shape = [1] * x.dim()
        shape[1] = x.shape[1]
        return draw((x.shape[1],), keep).view(shape)
    return draw(x.shape[:b] + x.shape[b + 1 :], keep).unsqueeze(b)


def _batched_channels(module: nn.Module, x: torch.Tensor) -> bool:
    """torch's reading: Dropout1d is batched on 3-D input, Dropout3d on 5-D input, Dropout2d on any
    input of 2 or more dimensions (3-D as (N, C, L))."""
    if isinstance(module, nn.Dropout1d):
        return x.dim() == 3
    if isinstance(module, nn.Dropout3d):
        return x.dim() == 5
    return x.dim() >= 2
