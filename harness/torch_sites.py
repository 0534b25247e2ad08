"""Dropout sites of any torch module: which of torch's modules drop units, and how each is sampled.

`harness.subnetworks.predict` and `ensemble` sample any classifier through this module (a
`DropoutNet` of the harness has an engine of its own). A site is one module that drops units:

| module | what one pass drops | kept units |
|---|---|---|
| nn.Dropout | single units | scaled by 1/keep |
| nn.Dropout1d, nn.Dropout2d, nn.Dropout3d | whole channels (one draw per channel, shared over positions) | scaled by 1/keep |
| nn.AlphaDropout | single units, set to SELU's saturation value | torch's affine correction a x + b |
| nn.FeatureAlphaDropout | whole channels, set to SELU's saturation value | torch's affine correction a x + b |
| nn.MultiheadAttention (alone or inside nn.Transformer*) | attention weights (head x query x key) | scaled by 1/keep |

Modes (`passes`):

- `mc_per_example`: the sites in train mode, every other module in eval mode (batch norm keeps its
  running statistics); torch draws a fresh mask per example per pass, as in the usual idiom.
- `mc_shared`: every module in eval mode; each site's output is multiplied by one mask shared by
  every example of the batch (a subnetwork), drawn from (seed, t) in the order the sites are called.
  Attention dropout happens inside torch's attention function, out of reach of a hook: during a pass
  the module's forward is `_shared_attention`, torch's attention written out with the mask applied.

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
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

from .errors import ConfigError

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
# a channel-dropout module whose input has this many dimensions sees one example without a batch
# dimension, as torch reads it (Dropout2d takes 3-D input as a batch of 1-D maps)
UNBATCHED_DIM = {nn.Dropout1d: 2, nn.Dropout3d: 4}
Draw = Callable[[tuple[int, ...]], torch.Tensor]


@dataclass(frozen=True)
class Site:
    """One module that drops units. `batch_dim` is the dimension of its input that holds the
    examples (1 inside a transformer layer with batch_first=False)."""

    name: str
    module: nn.Module
    kind: str
    p: float
    batch_dim: int = 0

    @property
    def label(self) -> str:
        return f"{self.name or '(model)'} ({type(self.module).__name__}, p={self.p:g})"


def find_sites(model: nn.Module) -> list[Site]:
    """Every dropout site of `model`, in module order. A dropout module of a kind torch does not
    ship (a subclass of torch's private `_DropoutNd` that is none of the above) is refused by name."""
    owners = {name: m for name, m in model.named_modules() if isinstance(m, TRANSFORMER_LAYERS)}
    sites = []
    for name, m in model.named_modules():
        kind = next((k for cls, k in KINDS if isinstance(m, cls)), None)
        if kind is None:
            if isinstance(m, _DropoutNd):
                raise ConfigError(
                    f"{name} ({type(m).__name__}) is a dropout module of a kind the harness does not know; it samples "
                    "nn.Dropout, nn.Dropout1d/2d/3d, nn.AlphaDropout, nn.FeatureAlphaDropout and attention dropout"
                )
            continue
        p = float(m.dropout if kind == "attention" else m.p)
        within = [prefix for prefix in owners if prefix == "" or name.startswith(prefix + ".")]
        owner = owners[max(within, key=len)] if within else None  # the nearest layer
        # attention reads its own layout (batch_first) and masks weights (N, heads, L, S)
        batch_dim = 1 if owner is not None and kind != "attention" and not _batch_first(owner) else 0
        sites.append(Site(name, m, kind, p, batch_dim))
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
        if not allow_unsampled:
            raise ConfigError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
    if not sites:
        raise ConfigError(f"{type(model).__name__} contains no dropout module: there are no subnetworks to sample")
    if all(s.p == 0 for s in sites):
        raise ConfigError(
            f"every dropout site of {type(model).__name__} has p = 0 ({', '.join(s.label for s in sites)}): "
            "there are no subnetworks to sample, every pass would be the weight-scaled net; use mode='weight_scaled'"
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
    buffers = [(b, b.clone()) for b in model.buffers()]
    inputs: dict[str, list] = {}
    outputs: list[dict[str, list[list[torch.Tensor]]]] = [{}, {}]
    # modules whose own code, between the calls of the modules inside them, is random: a module
    # inside them got other inputs in the second pass than in the first
    fed_otherwise: set[str] = set()
    with modes(model, lambda m: id(m) not in site_modules and not isinstance(m, _NormBase)), no_fast_path():
        for i, seed in enumerate((1, 2)):
            replayed: dict[str, int] = {}

            def replay(module, args, kwargs, name, i=i):
                if i == 0:
                    inputs.setdefault(name, []).append(_clone((args, kwargs)))
                    return None
                k = replayed[name] = replayed.get(name, -1) + 1
                if k >= len(inputs.get(name, [])):
                    fed_otherwise.add(name.rpartition(".")[0] if name else name)
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
            finally:
                for h in handles:
                    h.remove()
                for b, saved in buffers:
                    b.copy_(saved)
    changed = {name for name, _ in named if not _same_calls(outputs[0].get(name, []), outputs[1].get(name, []))}
    random = changed | {p for p in fed_otherwise if not any(_inside(c, p) for c in changed)}
    inner = [n for n, _ in named if n in random and not any(_inside(o, n) for o in random)]
    return [f"{n} ({type(model.get_submodule(n)).__name__})" if n else f"(the model) ({type(model).__name__})" for n in inner]


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
    return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))


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
        and (torch.equal(u, v) if not u.is_floating_point() else torch.allclose(u, v, rtol=1e-4, atol=1e-6, equal_nan=True))
        for u, v in zip(a, b)
    )


def _cuda(x: torch.Tensor) -> list[torch.device]:
    return [x.device] if x.device.type == "cuda" else []


def per_example_passes(model: nn.Module, x: torch.Tensor, sites: list[Site], T: int, seed: int) -> Iterator[torch.Tensor]:
    """T passes of `mc_per_example`: the sites in train mode, the rest in eval mode."""
    site_modules = {id(s.module) for s in sites}
    with modes(model, lambda m: id(m) in site_modules), no_fast_path(), torch.random.fork_rng(devices=_cuda(x)):
        torch.manual_seed(seed)
        for _ in range(T):
            yield model(x)


def shared_passes(model: nn.Module, x: torch.Tensor, sites: list[Site], seeds: list[int]) -> Iterator[torch.Tensor]:
    """One pass of `mc_shared` per seed: a pass draws every site's mask from one generator seeded
    by its seed, in the order the sites are called (on the CPU: the same masks on every device)."""
    n = len(x)
    with modes(model, lambda m: False), no_fast_path():
        for pass_seed in seeds:
            g = torch.Generator().manual_seed(pass_seed)

            def draw(shape: tuple[int, ...], keep: float, g=g) -> torch.Tensor:
                return torch.rand(shape, generator=g) < keep

            with ExitStack() as stack:
                for s in sites:
                    if s.p == 0:
                        continue
                    if s.kind == "attention":
                        stack.enter_context(_attention_forward(s, draw))
                    else:
                        stack.callback(s.module.register_forward_hook(_shared_hook(s, draw, n)).remove)
                z = model(x)
            yield z


def _shared_hook(site: Site, draw, n: int):
    keep = 1.0 - site.p

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
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
    if site.kind == "channel" and x.dim() == UNBATCHED_DIM.get(type(module)):
        shape = [1] * x.dim()
        shape[0] = x.shape[0]  # one example, channels first: nothing to share
        return draw((x.shape[0],), keep).view(shape)
    b = site.batch_dim
    if x.dim() <= b or x.shape[b] != n:
        raise ConfigError(
            f"mc_shared shares one mask among the examples, but site {site.label} gets input of shape {tuple(x.shape)} "
            f"whose dimension {b} is not the batch of {n} examples; use mode='mc_per_example'"
        )
    if site.kind in ("channel", "feature_alpha"):
        if b != 0 or x.dim() < 2:
            raise ConfigError(f"site {site.label}: channel dropout needs input (N, C, ...), got {tuple(x.shape)}")
        shape = [1] * x.dim()
        shape[1] = x.shape[1]
        return draw((x.shape[1],), keep).view(shape)
    return draw(x.shape[:b] + x.shape[b + 1 :], keep).unsqueeze(b)


@contextmanager
def _attention_forward(site: Site, draw) -> Iterator[None]:
    """The attention module's forward replaced, for one pass, by `_shared_attention`."""
    m = site.module
    own = m.__dict__.get("forward")

    def forward(*args, **kwargs):
        return _shared_attention(m, lambda shape: draw(shape, 1.0 - site.p), *args, **kwargs)

    m.forward = forward
    try:
        yield
    finally:
        if own is None:
            del m.forward
        else:
            m.forward = own


def _shared_attention(
    m: nn.MultiheadAttention,
    draw: Draw,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    need_weights: bool = True,
    attn_mask: torch.Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`nn.MultiheadAttention.forward` with its attention dropout as one mask (heads, L, S) shared
    by every example, drawn by `draw`; otherwise torch's own computation (the explicit path that
    `F.multi_head_attention_forward` takes when it returns the weights). query (N, L, E) with
    batch_first, (L, N, E) without, (L, E) unbatched; returns the output in the query's layout and
    the weights after dropout (N, L, S) averaged over heads, or (N, heads, L, S)."""
    batched = query.dim() == 3
    if batched and m.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    if not batched:
        query, key, value = (t.unsqueeze(1) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    L, N, E = query.shape
    H = m.num_heads
    D = E // H
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint (torch's own rule)")
    key_padding_mask = F._canonical_mask(
        mask=key_padding_mask,
        mask_name="key_padding_mask",
        other_type=F._none_or_dtype(attn_mask),
        other_name="attn_mask",
        target_type=query.dtype,
    )
    attn_mask = F._canonical_mask(
        mask=attn_mask, mask_name="attn_mask", other_type=None, other_name="", target_type=query.dtype, check_other=False
    )
    if m._qkv_same_embed_dim:
        q, k, v = F._in_projection_packed(query, key, value, m.in_proj_weight, m.in_proj_bias)
    else:
        b_q, b_k, b_v = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None, None, None)
        q, k, v = F._in_projection(query, key, value, m.q_proj_weight, m.k_proj_weight, m.v_proj_weight, b_q, b_k, b_v)
    if attn_mask is not None and attn_mask.dim() == 2:
        attn_mask = attn_mask.unsqueeze(0)
    if m.bias_k is not None:
        k, v = torch.cat([k, m.bias_k.repeat(1, N, 1)]), torch.cat([v, m.bias_v.repeat(1, N, 1)])
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
    q = q.view(L, N * H, D).transpose(0, 1)
    k = k.view(k.shape[0], N * H, D).transpose(0, 1)
    v = v.view(v.shape[0], N * H, D).transpose(0, 1)
    if m.add_zero_attn:
        zeros = torch.zeros((N * H, 1, D), dtype=k.dtype, device=k.device)
        k, v = torch.cat([k, zeros], dim=1), torch.cat([v, zeros], dim=1)
        attn_mask = None if attn_mask is None else F.pad(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else F.pad(key_padding_mask, (0, 1))
    S = k.shape[1]
    if key_padding_mask is not None:
        key_padding_mask = key_padding_mask.view(N, 1, 1, S).expand(-1, H, -1, -1).reshape(N * H, 1, S)
        attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask
    q = q * math.sqrt(1.0 / D)
    scores = torch.bmm(q, k.transpose(-2, -1)) if attn_mask is None else torch.baddbmm(attn_mask, q, k.transpose(-2, -1))
    keep = 1.0 - m.dropout
    mask = draw((H, L, S)).to(scores.device, scores.dtype)
    w = torch.softmax(scores, dim=-1).view(N, H, L, S) * mask
    w = (w / keep if keep > 0 else w * 0).view(N * H, L, S)  # p = 1 keeps nothing, as in torch
    out = torch.bmm(w, v).transpose(0, 1).reshape(L * N, E)
    out = F.linear(out, m.out_proj.weight, m.out_proj.bias).view(L, N, -1)
    weights = None
    if need_weights:
        weights = w.view(N, H, L, S)
        weights = weights.mean(dim=1) if average_attn_weights else weights
        weights = weights if batched else weights.squeeze(0)
    if not batched:
        return out.squeeze(1), weights
    return (out.transpose(0, 1) if m.batch_first else out), weights
