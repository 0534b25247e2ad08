import itertools
import math

import torch

from harness.measures.metrics import EnsembleAccumulator, brier, ece, entropy, error, kl, l2_gap, nll, point_metrics


def test_point_metrics_by_hand():
    p = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    assert error(p, y) == 2 / 3
    assert math.isclose(nll(p, y), -(math.log(0.9) + math.log(0.4) + math.log(0.3)) / 3)
    assert math.isclose(brier(p, y), (0.01 + 0.01 + 0.36 + 0.36 + 0.49 + 0.49) / 3)
    # bins of width 1/15: 0.9 -> bin 13 (correct), 0.6 -> bin 8 (wrong), 0.7 -> bin 10 (wrong)
    assert math.isclose(ece(p, y), (abs(1 - 0.9) + abs(0 - 0.6) + abs(0 - 0.7)) / 3)
    assert math.isclose(entropy(torch.tensor([[0.5, 0.5]])), math.log(2), rel_tol=1e-6)
    assert kl(p, p) == 0.0 and l2_gap(p, p) == 0.0
    q = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert math.isclose(l2_gap(q, torch.tensor([[0.0, 1.0]], dtype=torch.float64)), math.sqrt(2))


def test_ece_of_a_perfectly_calibrated_bin_is_zero():
    p = torch.tensor([[0.75, 0.25]] * 4, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1])
    assert math.isclose(ece(p, y), 0.0, abs_tol=1e-12)


def test_streaming_equals_metrics_from_all_stored_members():
    torch.manual_seed(0)
    n, c, k = 30, 4, 7
    logits = torch.randn(k, n, c, dtype=torch.float64) * 2
    y = torch.randint(0, c, (n,))
    ref = torch.softmax(torch.randn(n, c, dtype=torch.float64), 1)
    acc = EnsembleAccumulator(n, c)
    for z in logits:
        acc.add(z)
    probs = torch.softmax(logits, 2)
    mean = probs.mean(0)
    assert torch.allclose(acc.mean(), mean)
    assert torch.allclose(acc.geometric(), torch.softmax(torch.log(probs).mean(0), 1))
    s = acc.summary(y, ref, ref.log())
    assert torch.allclose(acc.log_mean(), mean.log())
    for name, value in point_metrics(mean, y, ref).items():
        assert math.isclose(s[name], value, rel_tol=1e-9, abs_tol=1e-12), name
    member_entropy = -(probs * probs.log()).sum(2).mean(0)
    mi = (-(mean * mean.log()).sum(1) - member_entropy).mean().item()
    assert math.isclose(s["mutual_information"], mi, rel_tol=1e-9)
    votes = probs.argmax(2)
    pairs = list(itertools.combinations(range(k), 2))
    disagree = sum((votes[a] != votes[b]).double().mean().item() for a, b in pairs) / len(pairs)
    assert math.isclose(s["disagreement"], disagree, rel_tol=1e-9)


def test_a_confident_mistake_costs_its_true_nll():
    """Probabilities below 1e-30 used to be floored, capping a mistake's NLL at 69 nats."""
    logits = torch.tensor([[0.0, 200.0], [3.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 0])
    logp = torch.log_softmax(logits, 1)
    expected = (200.0 + math.log1p(math.exp(-200.0)) + math.log1p(math.exp(-3.0))) / 2
    assert math.isclose(nll(logp.exp(), y, logp), expected, rel_tol=1e-12)
    assert nll(logp.exp(), y) < 40  # without log-probabilities: the floor's cap
    acc = EnsembleAccumulator(2, 2)
    for _ in range(3):
        acc.add(logits)
    assert math.isclose(
        acc.summary(y, None)["nll"], expected, rel_tol=1e-12
    )  # the mean's log from the running log-sum-exp
    q = torch.log_softmax(torch.tensor([[0.0, -300.0], [0.0, 0.0]], dtype=torch.float64), 1)
    value = kl(logp.exp(), q.exp(), logp, q)  # KL(p || q) with q below 1e-30 where p is 1
    by_hand = sum((logp[i].exp() * (logp[i] - q[i])).sum().item() for i in range(2)) / 2
    assert math.isclose(value, by_hand, rel_tol=1e-12) and value > 140  # the floor capped the first row at 69 nats


def test_the_exact_ensemble_log_mean_is_exact():
    from harness.config import ModelConfig
    from harness.nets.models import build_model
    from harness.nets.subnetworks import SubnetworkEngine, enumerate_subnetworks

    torch.manual_seed(0)
    m = build_model(ModelConfig(widths=(6,), p_drop_input=0.0, p_drop_hidden=(0.5,)), (1, 4, 4), 3).eval()
    ex = enumerate_subnetworks(SubnetworkEngine(m, torch.randn(20, 1, 4, 4) * 5))
    assert torch.allclose(ex["log_mean"], ex["mean"].log(), atol=1e-12)
    assert torch.allclose(ex["log_geometric"].exp(), ex["geometric"], atol=1e-12)
