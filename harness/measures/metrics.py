"""Metrics of predictive distributions, and their streaming versions for growing ensembles.

Pure functions take class probabilities ``probs`` (N, C) and labels ``y`` (N,) and return floats.
Log-probability metrics (NLL, entropy, KL) take the log-probabilities too when the caller has them
(from log-softmax, or the accumulator's running log-sum-exp): then a confident mistake costs its
true NLL instead of a value capped by a floor on the probability. `EnsembleAccumulator` keeps sums
whose size is N x C whatever the number of members, so the metrics of the k-member average can be
read at any k in one pass over the members.
"""

from __future__ import annotations

import math

import torch

ECE_BINS = 15
_TINY = 1e-30  # floor for log of probabilities, used only when no log-probabilities are given


def error(probs: torch.Tensor, y: torch.Tensor) -> float:
    return (probs.argmax(1) != y).double().mean().item()


def _log(probs: torch.Tensor, log_probs: torch.Tensor | None) -> torch.Tensor:
    return log_probs.double() if log_probs is not None else probs.double().clamp_min(_TINY).log()


def nll(probs: torch.Tensor, y: torch.Tensor, log_probs: torch.Tensor | None = None) -> float:
    return -_log(probs, log_probs).gather(1, y[:, None]).mean().item()


def brier(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over examples of the squared L2 distance to the one-hot label (range 0 to 2)."""
    onehot = torch.nn.functional.one_hot(y, probs.shape[1]).to(probs.dtype)
    return ((probs - onehot) ** 2).sum(1).double().mean().item()


def ece(probs: torch.Tensor, y: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Expected calibration error with `bins` equal-width confidence bins on (0, 1]."""
    conf, pred = probs.max(1)
    correct = (pred == y).double()
    # bin b holds confidences in (b/bins, (b+1)/bins]
    idx = (conf.double() * bins).ceil().clamp(1, bins).long() - 1
    n = torch.zeros(bins, dtype=torch.float64, device=probs.device).index_add_(0, idx, torch.ones_like(correct))
    acc = torch.zeros_like(n).index_add_(0, idx, correct)
    cs = torch.zeros_like(n).index_add_(0, idx, conf.double())
    return ((acc - cs).abs().sum() / len(y)).item()


def overconfidence(probs: torch.Tensor, y: torch.Tensor) -> float:
    """Signed calibration: mean confidence (the largest probability of each row of probs (N, C))
    minus accuracy; positive when overconfident, negative when underconfident. It is ECE's signed
    one-bin version: |overconfidence| = ECE with one bin <= ECE with any binning (triangle inequality)."""
    conf, pred = probs.double().max(1)
    return (conf - (pred == y).double()).mean().item()


def entropies(probs: torch.Tensor, log_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example predictive entropy in nats, (N,); 0 log 0 counts as 0."""
    p = probs.double()
    return -torch.where(p > 0, p * _log(probs, log_probs), 0.0).sum(1)


def entropy(probs: torch.Tensor, log_probs: torch.Tensor | None = None) -> float:
    return entropies(probs, log_probs).mean().item()


def kl(p: torch.Tensor, q: torch.Tensor, log_p: torch.Tensor | None = None, log_q: torch.Tensor | None = None) -> float:
    """Mean over examples of KL(p || q) in nats; terms where p is 0 count as 0."""
    pd_ = p.double()
    return torch.where(pd_ > 0, pd_ * (_log(p, log_p) - _log(q, log_q)), 0.0).sum(1).mean().item()


def l2_gap(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean over examples of the L2 distance between two predictive distributions (Ma et al. 2017's
    inference gap when p is the MC average and q the weight-scaled softmax)."""
    return (p.double() - q.double()).norm(dim=1).mean().item()


def agreement(p: torch.Tensor, q: torch.Tensor) -> float:
    return (p.argmax(1) == q.argmax(1)).double().mean().item()


def point_metrics(
    probs: torch.Tensor,
    y: torch.Tensor,
    reference: torch.Tensor | None = None,
    log_probs: torch.Tensor | None = None,
    reference_log: torch.Tensor | None = None,
) -> dict[str, float]:
    """Metrics of one predictive distribution; with a reference (the weight-scaled softmax), also
    its argmax agreement with it, KL(probs || reference) and the L2 inference gap. Pass the
    log-probabilities when known: NLL, entropy and KL are then computed from them."""
    out = {
        "error": error(probs, y),
        "nll": nll(probs, y, log_probs),
        "brier": brier(probs, y),
        "ece": ece(probs, y),
        "overconfidence": overconfidence(probs, y),
        "entropy": entropy(probs, log_probs),
    }
    if reference is not None:
        out.update(
            agreement_ws=agreement(probs, reference),
            kl_ws=kl(probs, reference, log_probs, reference_log),
            inference_gap=l2_gap(probs, reference),
        )
    return out


class EnsembleAccumulator:
    """Streaming ensemble of predictive distributions over fixed examples.

    Holds float64 sums of the members' probabilities, log-probabilities, entropies and argmax votes,
    and the running log-sum-exp of the log-probabilities (so the mean's log-probabilities are exact
    where the mean's probabilities underflow): memory O(N * C), independent of the number of members k.
    """

    def __init__(self, n: int, n_classes: int, device: torch.device | str = "cpu"):
        z = lambda *s: torch.zeros(*s, dtype=torch.float64, device=device)  # noqa: E731
        self.k = 0
        self.sum_p = z(n, n_classes)
        self.sum_logp = z(n, n_classes)
        self.sum_entropy = z(n)
        self.sum_sq = z(n)  # sum over members of ||p_m||^2: the Brier decomposition
        self.votes = z(n, n_classes)
        self.lse = torch.full((n, n_classes), -math.inf, dtype=torch.float64, device=device)

    def add(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add one member given its logits (N, C); returns its (probabilities, log-probabilities),
        (N, C) float64 each."""
        logp = torch.log_softmax(logits.double(), dim=1)
        p = logp.exp()
        self.k += 1
        self.lse = torch.logaddexp(self.lse, logp)
        self.sum_p += p
        self.sum_logp += logp
        self.sum_entropy -= (p * logp).sum(1)
        self.sum_sq += (p * p).sum(1)
        self.votes.scatter_add_(1, p.argmax(1, keepdim=True), torch.ones_like(self.sum_entropy)[:, None])
        return p, logp

    def mean(self) -> torch.Tensor:
        """Arithmetic mean of the members' probabilities, (N, C)."""
        return self.sum_p / self.k

    def log_mean(self) -> torch.Tensor:
        """Log of the arithmetic mean, from the running log-sum-exp, (N, C)."""
        return self.lse - math.log(self.k)

    def geometric(self) -> torch.Tensor:
        """Normalized geometric mean of the members' probabilities, (N, C)."""
        return torch.softmax(self.sum_logp / self.k, dim=1)

    def log_geometric(self) -> torch.Tensor:
        return torch.log_softmax(self.sum_logp / self.k, dim=1)

    def disagreements(self) -> torch.Tensor:
        """Per example, (N,): probability that two distinct members disagree on the argmax (NaN for k < 2)."""
        if self.k < 2:
            return torch.full_like(self.sum_sq, math.nan)
        return 1 - (self.votes * (self.votes - 1)).sum(1) / (self.k * (self.k - 1))

    def disagreement(self) -> float:
        """Probability that two distinct members disagree on an example's argmax (NaN for k < 2)."""
        return self.disagreements().mean().item()

    def mutual_informations(self) -> torch.Tensor:
        """Per example, (N,): entropy of the mean minus the members' mean entropy, in nats; equal to
        the members' mean KL(p_m || mean)."""
        return entropies(self.mean(), self.log_mean()) - self.sum_entropy / self.k

    def mutual_information(self) -> float:
        """Entropy of the mean minus the mean entropy of the members (nats)."""
        return self.mutual_informations().mean().item()

    def summary(
        self, y: torch.Tensor, reference: torch.Tensor | None, reference_log: torch.Tensor | None = None
    ) -> dict[str, float]:
        out = point_metrics(self.mean(), y, reference, self.log_mean(), reference_log)
        out["mutual_information"] = self.mutual_information()
        if self.k >= 2:
            out["disagreement"] = self.disagreement()
        return out

    def geometric_summary(
        self, y: torch.Tensor, reference: torch.Tensor | None, reference_log: torch.Tensor | None = None
    ) -> dict[str, float]:
        return point_metrics(self.geometric(), y, reference, self.log_geometric(), reference_log)
