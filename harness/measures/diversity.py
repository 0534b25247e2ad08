"""How much an ensemble gains from its members' diversity: exact decompositions of its loss.

Every function reads an `EnsembleAccumulator` (members added one at a time; memory independent of
their number), so it works the same for sampled subnetworks of one dropout net and for
independently trained nets. Per example, then averaged over examples:

- Cross-entropy, for the normalized geometric mean q (averaging log-probabilities):
  NLL(q) = mean_m NLL(p_m) - mean_m KL(q || p_m). The diversity term is label-free, non-negative
  and equals -log Z, Z being the geometric mean's normalizer (Heskes 1998).
- Cross-entropy, for the arithmetic mean of probabilities (what `mc_shared` and deep ensembles
  report): NLL(mean) = mean_m NLL(p_m) - gap, gap = log mean_y - mean_m log p_m,y >= 0 by Jensen;
  this gap depends on the label.
- Brier score, for the arithmetic mean (Krogh and Vedelsby 1995, exact):
  Brier(mean) = mean_m Brier(p_m) - mean_m ||p_m - mean||^2 (the ambiguity, label-free).
- Pairwise: the probability that two distinct members disagree on the argmax, and the mean KL
  between two distinct members (over ordered pairs), from running sums alone.
"""

from __future__ import annotations

import math

import torch

from harness.measures.metrics import EnsembleAccumulator


def _at_label(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return t.gather(1, y[:, None]).squeeze(1)


def decomposition(acc: EnsembleAccumulator, y: torch.Tensor | None = None) -> dict[str, float]:
    """The loss decompositions of the accumulated ensemble, averaged over examples (nats for the
    cross-entropy terms, Brier units 0..2). Without labels `y` (N,), only the label-free terms:
    ce_diversity, brier_diversity, disagreement, pairwise_kl, mutual_information."""
    k = acc.k
    if k < 1:
        raise ValueError("the ensemble has no members yet")
    mean = acc.mean()
    out = {
        # mean_m KL(q || p_m) = -log sum_c exp(mean_m log p_m,c)
        "ce_diversity": (-torch.logsumexp(acc.sum_logp / k, 1)).mean().item(),
        "brier_diversity": (acc.sum_sq / k - (mean * mean).sum(1)).mean().item(),
        "disagreement": acc.disagreement(),
        "pairwise_kl": pairwise_kl(acc),
        "mutual_information": acc.mutual_information(),
    }
    if y is None:
        return out
    member_logp_y = _at_label(acc.sum_logp, y) / k
    return {
        "member_error": (1 - _at_label(acc.votes, y) / k).mean().item(),
        "member_nll": (-member_logp_y).mean().item(),
        "nll_gap": (_at_label(acc.log_mean(), y) - member_logp_y).mean().item(),
        "geometric_nll": (-_at_label(acc.log_geometric(), y)).mean().item(),
        "member_brier": (acc.sum_sq / k - 2 * _at_label(mean, y) + 1).mean().item(),
    } | out


def pairwise_kl(acc: EnsembleAccumulator) -> float:
    """Mean over examples and ordered pairs of distinct members of KL(p_m || p_m'), nats (NaN for
    k < 2): sum_{m != m'} KL = k sum_m sum_c p log p - sum_c (sum_m p_m,c)(sum_m log p_m,c)."""
    k = acc.k
    if k < 2:
        return math.nan
    total = -k * acc.sum_entropy - (acc.sum_p * acc.sum_logp).sum(1)
    return (total / (k * (k - 1))).mean().item()
