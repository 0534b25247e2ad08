"""Ensemble decompositions, OOD detection and temperature scaling: identities and hand-computed cases."""

import itertools
import math

import numpy as np
import pytest
import torch

from harness.measures.calibration import fit_temperature, temperature_nll
from harness.measures.diversity import decomposition, pairwise_kl
from harness.measures.metrics import EnsembleAccumulator, brier, error, nll
from harness.measures.ood import detection, scores


def _ensemble(logits):
    acc = EnsembleAccumulator(logits.shape[1], logits.shape[2])
    for z in logits:
        acc.add(z)
    return acc


def test_decompositions_sum_to_the_ensemble_loss():
    torch.manual_seed(0)
    m, n, c = 7, 40, 5
    logits = torch.randn(m, n, c, dtype=torch.float64) * 3
    y = torch.randint(0, c, (n,))
    acc = _ensemble(logits)
    d = decomposition(acc, y)
    logp = torch.log_softmax(logits, 2)
    probs = logp.exp()
    mean = probs.mean(0)
    # members' losses, computed member by member
    assert math.isclose(
        d["member_nll"], np.mean([nll(p, y, lp) for p, lp in zip(probs, logp, strict=False)]), rel_tol=1e-12
    )
    assert math.isclose(d["member_brier"], np.mean([brier(p, y) for p in probs]), rel_tol=1e-12)
    assert math.isclose(d["member_error"], np.mean([error(p, y) for p in probs]), rel_tol=1e-12)
    # arithmetic mean: NLL = member NLL - Jensen gap; Brier = member Brier - ambiguity (Krogh-Vedelsby)
    assert math.isclose(d["member_nll"] - d["nll_gap"], nll(mean, y), rel_tol=1e-12)
    assert math.isclose(d["member_brier"] - d["brier_diversity"], brier(mean, y), rel_tol=1e-12)
    ambiguity = ((probs - mean) ** 2).sum(2).mean(0).mean().item()
    assert math.isclose(d["brier_diversity"], ambiguity, rel_tol=1e-12)
    # geometric mean: NLL = member NLL - mean_m KL(q || p_m), the diversity computed independently
    logq = torch.log_softmax(logp.mean(0), 1)
    assert math.isclose(d["member_nll"] - d["ce_diversity"], nll(logq.exp(), y, logq), rel_tol=1e-12)
    kl_q = (logq.exp() * (logq - logp)).sum(2).mean(0).mean().item()
    assert math.isclose(d["ce_diversity"], kl_q, rel_tol=1e-10)
    assert math.isclose(d["geometric_nll"], nll(logq.exp(), y, logq), rel_tol=1e-12)
    # pairwise KL over ordered pairs of distinct members, brute force
    pairs = list(itertools.permutations(range(m), 2))
    brute = sum((probs[a] * (logp[a] - logp[b])).sum(1).mean().item() for a, b in pairs) / len(pairs)
    assert math.isclose(d["pairwise_kl"], brute, rel_tol=1e-10)
    assert min(d["nll_gap"], d["ce_diversity"], d["brier_diversity"], d["pairwise_kl"]) > 0


def test_identical_members_have_zero_diversity():
    torch.manual_seed(1)
    z = torch.randn(25, 4, dtype=torch.float64) * 4
    y = torch.randint(0, 4, (25,))
    d = decomposition(_ensemble(z.expand(5, -1, -1)), y)
    for name in ("nll_gap", "ce_diversity", "brier_diversity", "disagreement", "pairwise_kl", "mutual_information"):
        assert abs(d[name]) < 1e-12, name
    single = torch.log_softmax(z, 1)
    assert math.isclose(d["member_nll"], nll(single.exp(), y, single), rel_tol=1e-12)


def test_decomposition_by_hand():
    """Two members on one example: p1 = (1/2, 1/2), p2 = (1, 0) up to 1e-300, label 0."""
    logp = torch.log(torch.tensor([[[0.5, 0.5]], [[1.0, 1e-300]]], dtype=torch.float64))
    acc = _ensemble(logp)
    d = decomposition(acc, torch.tensor([0]))
    assert math.isclose(d["member_nll"], math.log(2) / 2, rel_tol=1e-12)
    assert math.isclose(d["nll_gap"], math.log(0.75) + math.log(2) / 2, rel_tol=1e-12)
    # Brier: members 0.5 and 0, ensemble (1/4)^2 * 2 = 0.125, ambiguity ((1/4)^2 * 2 + (1/4)^2 * 2) / 2 = 0.125
    assert math.isclose(d["member_brier"], 0.25, rel_tol=1e-12) and math.isclose(
        d["brier_diversity"], 0.125, rel_tol=1e-12
    )
    assert d["disagreement"] == 0.0 and d["member_error"] == 0.0  # both vote for class 0 (ties go to the first)
    assert pairwise_kl(_ensemble(logp[:1])) != pairwise_kl(_ensemble(logp[:1]))  # NaN for a single member
    assert set(decomposition(acc)) == {
        "ce_diversity",
        "brier_diversity",
        "disagreement",
        "pairwise_kl",
        "mutual_information",
    }


def test_detection_by_hand():
    d = detection(np.array([0.1, 0.4]), np.array([0.35, 0.8]))
    assert d["auroc"] == 0.75  # 3 of the 4 (in, out) pairs are ordered
    assert math.isclose(d["aupr"], 0.5 * 1 + 0.5 * 2 / 3)  # ranks: out, in, out, in
    assert d["fpr95"] == 0.5  # finding both unseen examples passes the in-distribution 0.4
    perfect = detection(np.array([0.0, 0.1, 0.2]), np.array([0.5, 0.9]))
    assert perfect == {"auroc": 1.0, "aupr": 1.0, "fpr95": 0.0}
    tied = detection(np.zeros(4), np.zeros(3))
    assert tied["auroc"] == 0.5 and tied["fpr95"] == 1.0
    with pytest.raises(ValueError, match="at least one"):
        detection(np.array([]), np.array([1.0]))


def test_scores_are_oriented_towards_unseen_inputs():
    p = torch.tensor([[0.9, 0.1], [0.5, 0.5]], dtype=torch.float64)
    s = scores(p)
    assert list(s["max_prob"]) == [-0.9, -0.5] and s["entropy"][1] > s["entropy"][0]
    assert set(s) == {"max_prob", "entropy"}  # one distribution: no mutual information
    acc = _ensemble(torch.log(torch.tensor([[[0.9, 0.1], [0.9, 0.1]], [[0.9, 0.1], [0.1, 0.9]]], dtype=torch.float64)))
    s = scores(acc.mean(), acc.log_mean(), acc)
    assert list(s["disagreement"]) == [0.0, 1.0] and s["mutual_information"][0] < 1e-12 < s["mutual_information"][1]


def test_temperature_scaling_finds_the_stationary_point():
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.normal(size=(2000, 10)) * 3)
    true_t = 2.5
    y = torch.from_numpy(np.array([rng.choice(10, p=row) for row in torch.softmax(z / true_t, 1).numpy()]))
    t = fit_temperature(z, y)
    zz, yy = z.numpy(), y.numpy()
    q = torch.softmax(z / t, 1).numpy()
    gradient = np.mean((q * zz).sum(1) - zz[np.arange(len(yy)), yy])  # d NLL / d(1/T) at the fit
    assert abs(gradient) < 1e-4
    assert temperature_nll(zz, yy, t) <= min(temperature_nll(zz, yy, t * f) for f in (0.99, 1.01, 0.5, 2.0))
    assert abs(t - true_t) < 0.25  # labels drawn at T = 2.5 are recovered (2,000 examples)
    assert math.isclose(fit_temperature(3 * z, y), 3 * t, rel_tol=1e-4)  # scaling the logits scales T
    with pytest.raises(ValueError, match="val_fraction"):
        fit_temperature(z[:0], y[:0])


def _fpr95_brute_force(in_scores, out_scores):
    """The lowest FPR over every threshold t of the detector "score >= t" whose TPR is >= 95%."""
    best = 1.0
    for t in np.unique(np.r_[in_scores, out_scores]):
        if 20 * np.sum(out_scores >= t) >= 19 * len(out_scores):  # TPR >= 0.95 in integers
            best = min(best, float(np.mean(in_scores >= t)))
    return best


def test_fpr95_counts_tied_scores_as_the_detector_sees_them():
    from sklearn.metrics import roc_curve

    # ROC points (0.05, 0.90), (0.10, 0.95), (0.15, 1.00) lie on one line: roc_curve drops the middle one
    out_scores = np.r_[np.full(18, 10.0), 5.0, 4.0]
    in_scores = np.r_[10.0, 5.0, 4.0, np.zeros(17)]
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(20), np.ones(20)], np.r_[in_scores, out_scores])
    assert fpr[np.searchsorted(tpr, 0.95)] == 0.15  # what the default ROC curve reports
    assert detection(in_scores, out_scores)["fpr95"] == _fpr95_brute_force(in_scores, out_scores) == 0.10
    rng = np.random.default_rng(0)
    for n_in, n_out, levels in ((20, 20, 4), (50, 37, 6), (13, 100, 3), (200, 61, 1000), (30, 1, 5)):
        for _ in range(20):  # few score levels: many ties; 1000 levels: nearly continuous
            in_s = rng.integers(0, levels, n_in) / levels
            out_s = rng.integers(0, levels, n_out) / levels + rng.integers(0, 2) / levels
            assert detection(in_s, out_s)["fpr95"] == _fpr95_brute_force(in_s, out_s), (in_s, out_s)
    in_s, out_s = rng.normal(0, 1, 500), rng.normal(1.5, 1, 300)
    assert detection(in_s, out_s)["fpr95"] == _fpr95_brute_force(in_s, out_s)
