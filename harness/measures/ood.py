"""Out-of-distribution detection: uncertainty scores and how well they separate unseen inputs.

Scores are per example and oriented so that higher means "more likely out of distribution":

- max_prob: minus the largest class probability (Hendrycks and Gimpel 2017);
- entropy: the predictive entropy, nats;
- mutual_information: entropy of the mean minus the members' mean entropy (ensembles only);
- disagreement: probability that two distinct members disagree on the argmax (ensembles only).

`detection` scores a detector, out-of-distribution examples positive: AUROC and AUPR (average
precision) with scikit-learn's metrics, and the false-positive rate at 95% true-positive rate
(`fpr_at_tpr`) counted directly. `roc_curve` is not used for it: by default it drops the ROC
points that lie on a straight segment, and under tied scores the first kept point past 95% TPR
can sit higher than the best threshold that reaches it (0.15 against 0.10 in a constructed case).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.measures.metrics import EnsembleAccumulator, entropies

SCORES = ("max_prob", "entropy", "mutual_information", "disagreement")


def scores(
    probs: torch.Tensor, log_probs: torch.Tensor | None = None, ensemble: EnsembleAccumulator | None = None
) -> dict[str, np.ndarray]:
    """Per-example scores (N,) of a predictive distribution `probs` (N, C); with the `ensemble`
    whose mean it is (two or more members), also mutual information and disagreement."""
    out = {"max_prob": -probs.max(1).values.double(), "entropy": entropies(probs, log_probs)}
    if ensemble is not None and ensemble.k >= 2:
        out |= {"mutual_information": ensemble.mutual_informations(), "disagreement": ensemble.disagreements()}
    return {name: s.cpu().numpy() for name, s in out.items()}


def detection(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR and FPR at 95% TPR of the detector "score at or above a threshold means out of
    distribution", in-distribution examples negative and unseen ones positive."""
    in_scores, out_scores = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    if len(in_scores) == 0 or len(out_scores) == 0:
        raise ValueError("detection needs at least one in-distribution and one out-of-distribution example")
    labels = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    s = np.r_[in_scores, out_scores]
    return {
        "auroc": float(roc_auc_score(labels, s)),
        "aupr": float(average_precision_score(labels, s)),
        "fpr95": fpr_at_tpr(in_scores, out_scores, 95),
    }


def fpr_at_tpr(in_scores: np.ndarray, out_scores: np.ndarray, tpr_percent: int = 95) -> float:
    """The lowest false-positive rate among thresholds t at which the detector "score >= t" finds at
    least `tpr_percent`% of the unseen inputs. Ties are counted as the detector sees them: every
    example scoring exactly t is flagged. The false-positive rate falls as t rises, so the best t
    is the highest that still flags k = ceil(tpr_percent / 100 * n_out) unseen inputs: the k-th
    largest unseen score (k in integers, so 19 of 20 is exactly 95%)."""
    in_scores, out_scores = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    if len(in_scores) == 0 or len(out_scores) == 0 or not 0 < tpr_percent <= 100:
        raise ValueError(
            f"fpr_at_tpr needs examples of both kinds and 0 < tpr_percent <= 100, got {len(in_scores)}, "
            f"{len(out_scores)}, {tpr_percent}"
        )
    k = -(-tpr_percent * len(out_scores) // 100)
    t = np.sort(out_scores)[len(out_scores) - k]
    return float(np.mean(in_scores >= t))
