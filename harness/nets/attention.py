"""Attention dropout as one mask shared by every example (the `mc_shared` mode of `harness.nets.torch_sites`).

`nn.MultiheadAttention` drops attention weights inside torch's attention function, out of reach of a
hook. For one pass, `attention_forward` replaces the module's forward by `shared_attention`: torch's
own computation written out step by step (the explicit path that `F.multi_head_attention_forward`
takes when it returns the weights), with one dropout mask (heads, L, S) applied to the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F

Draw = Callable[[tuple[int, ...]], torch.Tensor]  # a keep mask of the given shape (True: kept)


@contextmanager
def attention_forward(m: nn.MultiheadAttention, p: float, draw) -> Iterator[None]:
    """The attention module's forward replaced, for one pass, by `shared_attention`; its masks come
    from `draw(shape, keep)` with keep = 1 - p."""
    own = m.__dict__.get("forward")

    def forward(*args, **kwargs):
        return shared_attention(m, lambda shape: draw(shape, 1.0 - p), *args, **kwargs)

    m.forward = forward
    try:
        yield
    finally:
        if own is None:
            del m.forward
        else:
            m.forward = own


def shared_attention(
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
    query, key, value, key_padding_mask = _sequence_first(m, query, key, value, key_padding_mask, batched)
    L, N, _ = query.shape
    H = m.num_heads
    key_padding_mask, attn_mask = _canonical_masks(query, key_padding_mask, attn_mask, is_causal)
    q, k, v = _in_projection(m, query, key, value)
    q, k, v, attn_mask = _heads(m, q, k, v, attn_mask, key_padding_mask, H)
    w, out = _dropped_attention(m, draw, q, k, v, attn_mask, H)
    out = F.linear(out, m.out_proj.weight, m.out_proj.bias).view(L, N, -1)
    weights = None
    if need_weights:
        weights = w.view(N, H, L, k.shape[1])
        weights = weights.mean(dim=1) if average_attn_weights else weights
        weights = weights if batched else weights.squeeze(0)
    if not batched:
        return out.squeeze(1), weights
    return (out.transpose(0, 1) if m.batch_first else out), weights


def _sequence_first(
    m: nn.MultiheadAttention,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    batched: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """query, key and value as (L, N, E), (S, N, E), (S, N, E) from any layout; an unbatched
    key_padding_mask (S,) as (1, S)."""
    if batched and m.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    if not batched:
        query, key, value = (t.unsqueeze(1) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    return query, key, value, key_padding_mask


def _canonical_masks(
    query: torch.Tensor, key_padding_mask: torch.Tensor | None, attn_mask: torch.Tensor | None, is_causal: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Both masks as additive float masks of the query's dtype (torch's `_canonical_mask`)."""
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
        mask=attn_mask,
        mask_name="attn_mask",
        other_type=None,
        other_name="",
        target_type=query.dtype,
        check_other=False,
    )
    return key_padding_mask, attn_mask


def _in_projection(
    m: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v: the inputs through the module's input projections (packed or separate)."""
    if m._qkv_same_embed_dim:
        return F._in_projection_packed(query, key, value, m.in_proj_weight, m.in_proj_bias)
    b_q, b_k, b_v = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None else (None, None, None)
    return F._in_projection(query, key, value, m.q_proj_weight, m.k_proj_weight, m.v_proj_weight, b_q, b_k, b_v)


def _heads(
    m: nn.MultiheadAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    H: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """q (N * H, L, D), k and v (N * H, S, D), with the module's extra key (bias_k, bias_v) and zero
    attention (add_zero_attn) appended, and one additive mask (N * H or 1, L, S) or None."""
    L, N, E = q.shape
    D = E // H
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
    return q, k, v, attn_mask


def _dropped_attention(
    m: nn.MultiheadAttention,
    draw: Draw,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    H: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attention weights after dropout w (N * H, L, S), one mask (H, L, S) for every example, and
    the heads' outputs concatenated (L * N, E), before the output projection."""
    NH, L, D = q.shape
    N, S = NH // H, k.shape[1]
    q = q * math.sqrt(1.0 / D)
    scores = (
        torch.bmm(q, k.transpose(-2, -1)) if attn_mask is None else torch.baddbmm(attn_mask, q, k.transpose(-2, -1))
    )
    keep = 1.0 - m.dropout
    mask = draw((H, L, S)).to(scores.device, scores.dtype)
    w = torch.softmax(scores, dim=-1).view(N, H, L, S) * mask
    w = (w / keep if keep > 0 else w * 0).view(N * H, L, S)  # p = 1 keeps nothing, as in torch
    out = torch.bmm(w, v).transpose(0, 1).reshape(L * N, H * D)
    return w, out
