"""Out-of-distribution detection: uncertainty scores and how well they separate unseen inputs.

Scores are per example and oriented so that higher means "more likely out of distribution":

- max_prob: minus the largest class probability (Hendrycks and Gimpel 2017);
- entropy: the predictive entropy, nats;
- mutual_information: entropy of the mean minus the members' mean entropy (ensembles only);
- disagreement: probability that two distinct members disagree on the argmax (ensembles only).

`detection` scores a detector with scikit-learn's metrics, out-of-distribution examples positive:
AUROC, AUPR (average precision) and the false-positive rate at 95% true-positive rate.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .metrics import EnsembleAccumulator, entropies

SCORES = ("max_prob", "entropy", "mutual_information", "disagreement")


def scores(probs: torch.Tensor, log_probs: torch.Tensor | None = None, ensemble: EnsembleAccumulator | None = None) -> dict[str, np.ndarray]:
    """Per-example scores (N,) of a predictive distribution `probs` (N, C); with the `ensemble`
    whose mean it is (two or more members), also mutual information and disagreement."""
    out = {"max_prob": -probs.max(1).values.double(), "entropy": entropies(probs, log_probs)}
    if ensemble is not None and ensemble.k >= 2:
        out |= {"mutual_information": ensemble.mutual_informations(), "disagreement": ensemble.disagreements()}
    return {name: s.cpu().numpy() for name, s in out.items()}


def detection(in_scores: np.ndarray, out_scores: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR and FPR at 95% TPR of the detector "score above a threshold means out of
    distribution", in-distribution examples negative and unseen ones positive."""
    in_scores, out_scores = np.asarray(in_scores, dtype=np.float64), np.asarray(out_scores, dtype=np.float64)
    if len(in_scores) == 0 or len(out_scores) == 0:
        raise ValueError("detection needs at least one in-distribution and one out-of-distribution example")
    labels = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    s = np.r_[in_scores, out_scores]
    fpr, tpr, _ = roc_curve(labels, s)
    return {
        "auroc": float(roc_auc_score(labels, s)),
        "aupr": float(average_precision_score(labels, s)),
        # the lowest false-positive rate among thresholds that find 95% of the unseen inputs
        "fpr95": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }
