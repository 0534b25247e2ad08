"""Subnetworks of a dropout network: sampling, fast evaluation by compaction, exact enumeration.

A subnetwork is one mask per dropout site, shared by every example. Subnetwork t of stream r is a
pure function of (seed, r, t): `sample_masks` rebuilds it at any time.

`SubnetworkEngine` evaluates subnetworks of a `DropoutNet` on fixed examples:

- Work before the first site that drops anything is done once and shared by all subnetworks
  (a CNN with dropout only after its fully connected layers pays for its convolutions once).
- When every layer from there on is linear (an MLP, or the fully connected head of a CNN), a
  subnetwork is computed by compaction: only the kept units' columns, and only the rows of units the
  next site keeps, enter each matrix product. Activations are held transposed (units x examples), so
  compaction selects rows of the weights and never gathers activations.
- If the first active site keeps more than half its inputs, its product is the full product
  (computed once) minus the dropped inputs' part.
- Otherwise (dropout between conv blocks) subnetworks are computed by masking.

Convention: a site's kept units are scaled by 1/keep for `inverted` and by 1 for `classic`, exactly
as in training, so a subnetwork is the network that training used.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from harness.errors import ConfigError
from harness.measures.metrics import EnsembleAccumulator
from harness.nets import torch_sites
from harness.nets.models import DropoutNet, SiteInfo, linear_stage

EXACT_MAX_UNITS = 20


def subnetwork_seed(seed: int, stream: int, t: int, purpose: int = 0) -> int:
    """A 63-bit seed for subnetwork t of stream `stream`; distinct inputs give independent seeds.
    `purpose` separates generators that must not share draws (1: per-example masks)."""
    state = np.random.SeedSequence([seed, stream, t, purpose]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def sample_masks(sites: list[SiteInfo], seed: int, t: int, stream: int = 0) -> list[torch.Tensor | None]:
    """Masks of subnetwork t of a stream: per site a bool tensor (n_units,) of kept units, or None
    for a site that drops nothing. Drawn on the CPU so they are the same on every device."""
    g = torch.Generator().manual_seed(subnetwork_seed(seed, stream, t))
    return [None if s.p_drop == 0 else torch.rand(s.n_units, generator=g) < s.keep for s in sites]


class SubnetworkEngine:
    """Evaluates subnetworks of `model` on the examples `x` (N, *input_shape).

    `logits(masks)` returns (N, C) for one subnetwork; `logits_masked(masks)` the same by masking
    (the reference path); `weight_scaled()` the deterministic network's logits (N, C).
    """

    def __init__(self, model: DropoutNet, x: torch.Tensor, compaction: bool = True):
        self.model = model.eval()
        self.sites = model.dropout_sites()
        self.scale = [1.0 / s.keep if model.convention == "inverted" else 1.0 for s in self.sites]
        active = [s.index for s in self.sites if s.p_drop > 0]
        self.first = active[0] if active else len(self.sites)
        self.n = len(x)
        with torch.no_grad():
            self.x = x
            h = x.flatten(1) if model.flatten_input else x
            for k in range(self.first):
                h = model.ops[k](h)  # sites before the first active one drop nothing
            self.h = h  # (N, *unit_shape of site `first`): shared by every subnetwork
            stages = [linear_stage(op) for op in model.ops[self.first :]]
            self.stages = stages if compaction and active and all(s is not None for s in stages) else None
            self.P = None
            if self.stages is not None:
                self.ht = h.flatten(1).t().contiguous()  # (units, N): compaction selects rows
                if self.sites[self.first].keep > 0.5:
                    # the full product, shared; stored scaled and biased so that a subnetwork only
                    # subtracts its dropped inputs' part: z = P - scale * W_dropped @ x_dropped
                    st, scale = self.stages[0], self.scale[self.first]
                    self.P = torch.addmm(st.bias[:, None], st.weight, self.ht, alpha=scale)
        self._ws: torch.Tensor | None = None

    @property
    def uses_compaction(self) -> bool:
        return self.stages is not None

    @torch.no_grad()
    def weight_scaled(self) -> torch.Tensor:
        if self._ws is None:
            self._ws = self.model.eval()(self.x)
        return self._ws

    @torch.no_grad()
    def logits(self, masks: list[torch.Tensor | None]) -> torch.Tensor:
        """Logits (N, C) of the subnetwork with these masks (from `sample_masks`)."""
        if self.first == len(self.sites):
            return self.weight_scaled()
        if self.stages is None:
            return self.logits_masked(masks)
        dev = self.ht.device
        kept = [None if m is None else m.nonzero().squeeze(1).to(dev) for m in masks[self.first :]]
        h = None
        for j, st in enumerate(self.stages):
            rows = kept[j + 1] if j + 1 < len(kept) else None
            w = st.weight if rows is None else st.weight.index_select(0, rows)
            b = st.bias if rows is None else st.bias.index_select(0, rows)
            scale = self.scale[self.first + j]
            cols = kept[j]
            if j == 0 and self.P is not None:
                dropped = (~masks[self.first]).nonzero().squeeze(1).to(dev)
                z = self.P.index_select(0, rows) if rows is not None else self.P.clone()
                z.addmm_(w.index_select(1, dropped), self.ht.index_select(0, dropped), alpha=-scale)
            else:
                src = self.ht if j == 0 else h
                if j == 0 and cols is not None:
                    src = src.index_select(0, cols)
                wc = w if cols is None else w.index_select(1, cols)
                z = torch.addmm(b[:, None], wc, src, alpha=scale)
            h = st.act(z) if st.act is not None else z
        return h.t()

    @torch.no_grad()
    def logits_masked(self, masks: list[torch.Tensor | None]) -> torch.Tensor:
        """Logits (N, C) by multiplying activations with the masks: the reference computation."""
        batch = [None if m is None else m[None] for m in masks]
        return self.logits_masked_batch(batch)[0]

    @torch.no_grad()
    def logits_masked_batch(self, masks: list[torch.Tensor | None]) -> torch.Tensor:
        """Logits (B, N, C) of B subnetworks at once; masks[k] is (B, n_units) bool or None."""
        b = next((m.shape[0] for m in masks if m is not None), 1)
        h = self.h.unsqueeze(0).expand(b, *self.h.shape)
        for k in range(self.first, len(self.sites)):
            m = masks[k]
            if m is not None:
                shape = (b, 1, *self.sites[k].unit_shape)
                h = h * (m.to(h.device, h.dtype).view(shape) * self.scale[k])
            out = self.model.ops[k](h.reshape(b * self.n, *h.shape[2:]))
            h = out.view(b, self.n, *out.shape[1:])
        return h

    @torch.no_grad()
    def logits_per_example(self, generator: torch.Generator) -> torch.Tensor:
        """Logits (N, C) with a fresh mask per example at every site (the `mc_per_example` idiom)."""
        if self.first == len(self.sites):
            return self.weight_scaled()
        h = self.h
        for k in range(self.first, len(self.sites)):
            s = self.sites[k]
            if s.p_drop > 0:
                keep = torch.rand(h.shape, generator=generator, device=h.device) < s.keep
                h = h * (keep.to(h.dtype) * self.scale[k])
            h = self.model.ops[k](h)
        return h

    def flops(self, masks: list[torch.Tensor | None]) -> int:
        """Floating-point operations (2 per multiply-add) of the matrix products that compaction
        performs for this subnetwork; the work it shares across subnetworks is not counted."""
        if self.stages is None:
            raise ValueError("flops are counted for compaction only")
        counts = [
            s.n_units if m is None else int(m.sum())
            for s, m in zip(self.sites[self.first :], masks[self.first :], strict=False)
        ]
        total = 0
        for j, st in enumerate(self.stages):
            out = counts[j + 1] if j + 1 < len(counts) else st.weight.shape[0]
            inner = self.sites[self.first].n_units - counts[0] if (j == 0 and self.P is not None) else counts[j]
            total += 2 * out * inner * self.n
        return total


def droppable_units(sites: list[SiteInfo]) -> int:
    return sum(s.n_units for s in sites if s.p_drop > 0)


@torch.no_grad()
def enumerate_subnetworks(
    engine: SubnetworkEngine, max_units: int = EXACT_MAX_UNITS, chunk: int = 256
) -> dict[str, torch.Tensor]:
    """Every subnetwork with its probability: the exact ensemble.

    Returns float64 tensors: ``mean`` (N, C), the probability-weighted arithmetic mean of the
    subnetworks' class probabilities, and ``log_mean`` its logarithm (accumulated as a
    log-sum-exp, exact where the mean underflows); ``geometric`` (N, C), their normalized weighted
    geometric mean, and ``log_geometric``; ``mean_logits`` (N, C), the weighted mean of their
    logits; ``count``, 2^n.
    """
    sites = engine.sites
    n = droppable_units(sites)
    if n > max_units:
        detail = ", ".join(f"{s.name}: {s.n_units}" for s in sites if s.p_drop > 0)
        raise ConfigError(
            f"exact enumeration needs at most {max_units} droppable units; this network has {n} ({detail}); use "
            "mc_shared"
        )
    active = [s for s in sites if s.p_drop > 0]
    keep = torch.cat([torch.full((s.n_units,), s.keep, dtype=torch.float64) for s in active])
    dev = engine.h.device
    total = 1 << n
    c = engine.weight_scaled().shape[1]
    mean = torch.zeros(engine.n, c, dtype=torch.float64, device=dev)
    mean_logp = torch.zeros_like(mean)
    mean_logits = torch.zeros_like(mean)
    log_mean = torch.full_like(mean, -math.inf)
    bit = torch.arange(n)
    for start in range(0, total, chunk):
        ids = torch.arange(start, min(start + chunk, total))
        bits = ((ids[:, None] >> bit) & 1).bool()  # (B, n): unit kept?
        w = torch.where(bits, keep, 1 - keep).prod(1).to(dev)  # probability of each subnetwork
        masks: list[torch.Tensor | None] = [None] * len(sites)
        offset = 0
        for s in active:
            masks[s.index] = bits[:, offset : offset + s.n_units]
            offset += s.n_units
        z = engine.logits_masked_batch(masks).double()  # (B, N, C)
        logp = torch.log_softmax(z, dim=2)
        mean += torch.einsum("b,bnc->nc", w, logp.exp())
        log_mean = torch.logaddexp(log_mean, torch.logsumexp(w.log()[:, None, None] + logp, dim=0))
        mean_logp += torch.einsum("b,bnc->nc", w, logp)
        mean_logits += torch.einsum("b,bnc->nc", w, z)
    return {
        "mean": mean,
        "log_mean": log_mean,
        "geometric": torch.softmax(mean_logp, dim=1),
        "log_geometric": torch.log_softmax(mean_logp, dim=1),
        "mean_logits": mean_logits,
        "count": torch.tensor(total),
    }


# ---------------------------------------------------------------------------------------------------
# Any torch classifier with dropout modules (the sites and their sampling: harness.nets.torch_sites)

MC_MODES = ("mc_per_example", "mc_shared")


@torch.no_grad()
def predict(
    model: nn.Module,
    x: torch.Tensor,
    mode: str = "weight_scaled",
    T: int = 100,
    seed: int = 0,
    allow_unsampled: bool = False,
) -> torch.Tensor:
    """Predictive probabilities (N, C) of any classifier with dropout modules, x (N, ...).

    weight_scaled: the module in eval mode. mc_per_example: the dropout sites in train mode (a
    fresh mask per example per pass; batch norm and all else stay in eval mode), T passes
    averaged. mc_shared: every module in eval mode, each site's output multiplied by one mask
    shared by the batch (drawn from (seed, t)), T subnetworks averaged. The sites are torch's
    dropout modules and the attention dropout of its attention and transformer layers
    (`harness.nets.torch_sites`). Randomness outside them is an error naming its modules, or a warning
    with `allow_unsampled=True`. A `DropoutNet` of this harness is evaluated by its own engine.
    """
    if mode == "weight_scaled":
        (z,) = passes(model, x, mode, 1, seed)  # run to its end: the module's modes are restored
        return torch.softmax(z, 1)
    total = None
    for z in passes(model, x, mode, T, seed, allow_unsampled):
        p = torch.softmax(z, 1).double()
        total = p if total is None else total + p
    return (total / T).to(z.dtype)  # the logits' type: an input of token ids is no float


@torch.no_grad()
def ensemble(
    model: nn.Module,
    x: torch.Tensor,
    mode: str = "mc_shared",
    T: int = 100,
    seed: int = 0,
    allow_unsampled: bool = False,
) -> EnsembleAccumulator:
    """The T passes of `predict` as an `EnsembleAccumulator`: its mean is `predict`'s output, and
    `harness.measures.diversity`, `harness.measures.ood` and `harness.measures.metrics` read everything else from it."""
    acc = None
    for z in passes(model, x, mode, T, seed, allow_unsampled):
        acc = acc or EnsembleAccumulator(z.shape[0], z.shape[1], z.device)
        acc.add(z)
    return acc


def passes(
    model: nn.Module, x: torch.Tensor, mode: str, T: int, seed: int = 0, allow_unsampled: bool = False
) -> Iterator[torch.Tensor]:
    """The logits (N, C) of each pass of `predict` in turn (one pass for weight_scaled). Pass t of
    either MC mode is a pure function of (seed, t); the model's modes and torch's random state are
    set for each pass and restored before it is handed out. Call it under torch.no_grad()."""
    if mode not in ("weight_scaled", *MC_MODES):
        raise ConfigError(f"mode={mode!r}; allowed values: weight_scaled, mc_per_example, mc_shared")
    if T < 1:
        raise ConfigError(f"T={T}: the number of passes must be positive")
    if not isinstance(allow_unsampled, bool):
        raise ConfigError(f"allow_unsampled={allow_unsampled!r}: expected True or False")
    if isinstance(model, DropoutNet):
        yield from _dropoutnet_logits(model, x, mode, T, seed)
        return
    if mode == "weight_scaled":
        with torch_sites.modes(model, lambda m: False):
            z = torch_sites.logits(model, model(x), len(x))
        yield z
        return
    sites = torch_sites.find_sites(model)
    torch_sites.check_sites(model, x, sites, allow_unsampled)
    if mode == "mc_per_example":
        yield from torch_sites.per_example_passes(
            model, x, sites, [subnetwork_seed(seed, 0, t, purpose=1) for t in range(T)]
        )
    else:
        yield from torch_sites.shared_passes(model, x, sites, [subnetwork_seed(seed, 0, t) for t in range(T)])


def _dropoutnet_logits(model: DropoutNet, x: torch.Tensor, mode: str, T: int, seed: int) -> Iterator[torch.Tensor]:
    engine = SubnetworkEngine(model, x)
    if mode == "weight_scaled":
        yield engine.weight_scaled()
        return
    g = torch.Generator(device=x.device).manual_seed(subnetwork_seed(seed, 0, 0, purpose=1))
    for t in range(T):
        yield (
            engine.logits(sample_masks(engine.sites, seed, t)) if mode == "mc_shared" else engine.logits_per_example(g)
        )
