"""Temperature scaling (Guo et al. 2017): one scalar T that divides the logits, fitted on held-out data.

The NLL of softmax(beta * z) is convex in beta = 1 / T (a log-sum-exp of functions linear in beta
minus a linear term), so a bounded 1-D search finds its one minimum; at it, the mean over examples
of E_softmax[z] - z_y is zero.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

T_BOUNDS = (0.05, 20.0)  # temperatures outside these are clipped to them


def temperature_nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    """Mean NLL of softmax(logits / t) at labels y; logits (N, C), y (N,)."""
    z = logits / t
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature that minimizes the NLL of `logits` (N, C) at labels `y` (N,)."""
    z = logits.detach().double().cpu().numpy()
    labels = y.detach().cpu().numpy()
    if len(labels) == 0:
        raise ValueError("temperature scaling needs held-out examples; the split is empty (set data.val_fraction > 0)")
    res = minimize_scalar(
        lambda beta: temperature_nll(z, labels, 1.0 / beta),
        bounds=(1 / T_BOUNDS[1], 1 / T_BOUNDS[0]),
        method="bounded",
        options={"xatol": 1e-7},
    )
    return float(1.0 / res.x)
