"""Dropout networks with named dropout sites.

Every model is a chain of stages: ``x -> site_0 -> op_0 -> site_1 -> op_1 -> ... -> site_L -> op_L``.
Site k drops units of its input; op k begins with the layer that consumes them (a Linear, Conv1d or
Conv2d, whose weights the classic convention scales) and, except for the last, ends with the activation
(and pooling). This one shape serves training, the subnetwork engine (which needs to know which
weight matrix each site's units feed) and the co-adaptation analysis (the input of site k >= 1 is
the post-activation output of hidden layer k).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from harness.config import ModelConfig
from harness.errors import ConfigError

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)  # the layers that consume a site's units
_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
_INPLACE_ACT: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    nn.ReLU: torch.relu_,
    nn.Sigmoid: torch.sigmoid_,
    nn.Tanh: torch.tanh_,
}


@dataclass(frozen=True)
class SiteInfo:
    """A dropout site as the rest of the harness addresses it.

    index: position in the chain; n_units: number of droppable units (features or conv elements);
    unit_shape: shape of one example's units at the site.
    """

    index: int
    name: str
    p_drop: float
    n_units: int
    unit_shape: tuple[int, ...]

    @property
    def keep(self) -> float:
        return 1.0 - self.p_drop


class DropoutSite(nn.Module):
    """Drops each unit with probability p_drop in training.

    inverted: training output x * mask / keep, evaluation output x.
    classic: training output x * mask, evaluation output x * keep (the same as scaling the consuming
    layer's weights by keep, as in Srivastava et al. 2014).
    Both conventions draw the mask the same way, so equal seeds give equal masks.
    """

    def __init__(self, name: str, p_drop: float, convention: str, unit_shape: tuple[int, ...]):
        super().__init__()
        self.name = name
        self.p_drop = float(p_drop)
        self.convention = convention
        self.unit_shape = tuple(unit_shape)

    @property
    def keep(self) -> float:
        return 1.0 - self.p_drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p_drop == 0.0:
            return x
        if self.training:
            mask = self.draw_mask(x)
            return x * (mask / self.keep) if self.convention == "inverted" else x * mask
        return x if self.convention == "inverted" else x * self.keep

    def draw_mask(self, x: torch.Tensor) -> torch.Tensor:
        """A training mask for `x`: each entry kept with probability `keep` (boolean), from torch's
        global generator; uniform < keep is twice as fast as `bernoulli_` on CPU."""
        return torch.rand_like(x) < self.keep

    def extra_repr(self) -> str:
        return f"name={self.name!r}, p_drop={self.p_drop}, convention={self.convention}"


class DropoutNet(nn.Module):
    """A chain of (dropout site, op) stages; see the module docstring.

    forward: x (N, *input_shape) -> logits (N, n_classes).
    """

    def __init__(
        self,
        kind: str,
        sites: list[DropoutSite],
        ops: list[nn.Module],
        input_shape: tuple[int, ...],
        flatten_input: bool,
    ):
        super().__init__()
        if len(sites) != len(ops):
            raise ValueError("one op per dropout site")
        self.kind = kind
        self.sites = nn.ModuleList(sites)
        self.ops = nn.ModuleList(ops)
        self.input_shape = tuple(input_shape)
        self.flatten_input = flatten_input

    @property
    def convention(self) -> str:
        return self.sites[0].convention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(0, x.flatten(1) if self.flatten_input else x)

    def dropout_sites(self) -> list[SiteInfo]:
        return [
            SiteInfo(i, s.name, s.p_drop, int(torch.Size(s.unit_shape).numel()), s.unit_shape)
            for i, s in enumerate(self.sites)
        ]

    def consumer(self, k: int) -> nn.Linear | nn.Conv1d | nn.Conv2d:
        """The layer that receives site k's units (its weights are what `classic` scales)."""
        return next(m for m in self.ops[k].modules() if isinstance(m, WEIGHTED))

    def forward_from(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """Run the chain from site k on: h is site k's input (B, *unit_shape); returns logits."""
        for site, op in zip(self.sites[k:], self.ops[k:], strict=False):
            h = op(site(h))
        return h

    @torch.no_grad()
    def hidden_activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Post-activation outputs of every hidden layer or conv block, in evaluation mode.

        Returns {site name: (N, *unit_shape)} for every site after the input, keyed by the site
        those units feed (``hidden1`` holds the first hidden layer's activations, ``block1`` the
        first conv block's pooled feature maps).
        """
        was = self.training
        self.eval()
        if self.flatten_input:
            x = x.flatten(1)
        out = {}
        for k, (site, op) in enumerate(zip(self.sites, self.ops, strict=False)):
            if k > 0:
                out[site.name] = x
            x = op(site(x))
        self.train(was)
        return out


@dataclass
class LinearStage:
    """An op seen as ``act(W x + b)`` (after an optional flatten): weight (out, in), bias (out,),
    act an in-place activation or None."""

    weight: torch.Tensor
    bias: torch.Tensor
    act: Callable[[torch.Tensor], torch.Tensor] | None


def linear_stage(op: nn.Module) -> LinearStage | None:
    """The LinearStage view of an op, or None if the op is not [Flatten] Linear [activation]."""
    mods = list(op) if isinstance(op, nn.Sequential) else [op]
    while mods and isinstance(mods[0], nn.Flatten):
        mods = mods[1:]
    if not mods or not isinstance(mods[0], nn.Linear) or len(mods) > 2:
        return None
    lin = mods[0]
    act = None
    if len(mods) == 2:
        act = _INPLACE_ACT.get(type(mods[1]))
        if act is None:
            return None
    bias = lin.bias if lin.bias is not None else torch.zeros(lin.out_features, device=lin.weight.device)
    return LinearStage(lin.weight.detach(), bias.detach(), act)


def build_model(
    cfg: ModelConfig, input_shape: tuple[int, ...], n_classes: int, dataset: str | None = None
) -> DropoutNet:
    """Build the network a ModelConfig describes for data of `input_shape` (one example): an MLP
    on any data (flattened), a CNN on images (C, H, W) with Conv2d or on 1-D signals (C, L) with
    Conv1d. `dataset` names the data in errors."""
    act = _ACTIVATIONS[cfg.activation]
    convention = cfg.convention
    if cfg.kind == "mlp":
        n_in = int(torch.Size(input_shape).numel())
        dims = [n_in, *cfg.widths, n_classes]
        probs = [cfg.p_drop_input, *cfg.p_drop_hidden]
        sites = [
            DropoutSite("input" if k == 0 else f"hidden{k}", probs[k], convention, (dims[k],))
            for k in range(len(dims) - 1)
        ]
        ops: list[nn.Module] = [nn.Sequential(nn.Linear(dims[k], dims[k + 1]), act()) for k in range(len(dims) - 2)]
        ops.append(nn.Linear(dims[-2], dims[-1]))
        return DropoutNet("mlp", sites, ops, input_shape, flatten_input=True)

    if len(input_shape) not in (2, 3):
        where = dataset or "the data"
        what = "flat features" if len(input_shape) == 1 else "examples"
        raise ConfigError(
            f"model.kind=cnn needs images (C, H, W) or 1-D signals (C, L); {where} holds {what} of shape "
            f"{tuple(input_shape)}, with no neighbouring inputs to convolve over; use model.kind=mlp"
        )
    # images: the LeNet-style pair of 5x5 conv blocks with 2x2 max-pooling; 1-D signals (C, L): its
    # 1-D counterpart, kernels of 5 and pooling by 2 along the signal, the same sites and widths
    conv, pool = (nn.Conv2d, nn.MaxPool2d) if len(input_shape) == 3 else (nn.Conv1d, nn.MaxPool1d)
    c, *size = input_shape
    c1, c2 = cfg.conv_channels
    size1 = [d // 2 for d in size]
    size2 = [d // 2 for d in size1]
    if min(size2) < 1:
        what = "images of " + "x".join(map(str, size)) if len(size) == 2 else f"signals of length {size[0]}"
        raise ConfigError(
            f"{what} are too small for two poolings by 2 (a cnn needs at least 4 along each axis); use model.kind=mlp"
        )
    flat = c2 * math.prod(size2)
    dims = [flat, *cfg.widths, n_classes]
    sites = [
        DropoutSite("input", cfg.p_drop_input, convention, (c, *size)),
        DropoutSite("block1", cfg.p_drop_conv[0], convention, (c1, *size1)),
        DropoutSite("block2", cfg.p_drop_conv[1], convention, (c2, *size2)),
    ]
    ops = [
        nn.Sequential(conv(c, c1, 5, padding=2), act(), pool(2)),
        nn.Sequential(conv(c1, c2, 5, padding=2), act(), pool(2)),
    ]
    for k in range(len(cfg.widths)):
        linear = nn.Sequential(nn.Linear(dims[k], dims[k + 1]), act())
        ops.append(nn.Sequential(nn.Flatten(), *linear) if k == 0 else linear)
        sites.append(DropoutSite(f"hidden{k + 1}", cfg.p_drop_hidden[k], convention, (dims[k + 1],)))
    ops.append(nn.Linear(dims[-2], dims[-1]))
    net = DropoutNet("cnn", sites, ops, input_shape, flatten_input=False)
    # channels_last 2-D convolutions: the same function (other float rounding), max-pooling twice and training about
    # 20% faster on CPU
    return net.to(memory_format=torch.channels_last) if conv is nn.Conv2d else net


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> None:
    """Rescale each unit's incoming weight vector (row of a Linear, filter of a Conv1d or Conv2d)
    to norm at most `max_norm`, as in Srivastava et al. 2014."""
    for m in model.modules():
        if isinstance(m, WEIGHTED):
            m.weight.copy_(torch.renorm(m.weight, 2, 0, max_norm))


@torch.no_grad()
def convert_convention(model: DropoutNet, convention: str) -> DropoutNet:
    """The same function in the other convention: a copy whose consuming layers are rescaled.

    A classic net with weights W computes W (x * m) in training; an inverted net with weights
    W * keep computes (W * keep)(x * m / keep), the same thing. So classic -> inverted multiplies
    each consumer's weights by its site's keep, and inverted -> classic divides.
    """
    if convention not in ("inverted", "classic"):
        raise ConfigError(f"convention={convention!r}; allowed values: inverted, classic")
    out = copy.deepcopy(model)
    if convention == model.convention:
        return out
    for k, site in enumerate(out.sites):
        factor = site.keep if convention == "inverted" else 1.0 / site.keep
        out.consumer(k).weight.mul_(factor)
        site.convention = convention
    return out
