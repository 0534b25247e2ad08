import pytest
import torch

from harness.config import ModelConfig
from harness.models import apply_max_norm, build_model, convert_convention


def mlp(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(**kw), (1, 8, 8), 10)


def test_mlp_exposes_named_sites():
    m = mlp(widths=(16, 12), p_drop_input=0.2, p_drop_hidden=(0.5, 0.3))
    sites = m.dropout_sites()
    assert [(s.name, s.p_drop, s.n_units) for s in sites] == [("input", 0.2, 64), ("hidden1", 0.5, 16), ("hidden2", 0.3, 12)]
    assert [m.consumer(k).in_features for k in range(3)] == [64, 16, 12]


def test_cnn_sites_and_shapes():
    torch.manual_seed(0)
    cfg = ModelConfig(kind="cnn", widths=(20, 10), conv_channels=(4, 6), p_drop_conv=(0.1, 0.25), p_drop_hidden=(0.5,))
    m = build_model(cfg, (1, 28, 28), 10)
    names = [(s.name, s.unit_shape) for s in m.dropout_sites()]
    assert names == [("input", (1, 28, 28)), ("block1", (4, 14, 14)), ("block2", (6, 7, 7)), ("hidden1", (20,)), ("hidden2", (10,))]
    x = torch.randn(3, 1, 28, 28)
    assert m(x).shape == (3, 10)
    acts = m.hidden_activations(x)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {"block1": (3, 4, 14, 14), "block2": (3, 6, 7, 7), "hidden1": (3, 20), "hidden2": (3, 10)}


def test_zero_drop_makes_training_and_evaluation_equal():
    m = mlp(widths=(16,), p_drop_input=0.0, p_drop_hidden=(0.0,))
    x = torch.randn(5, 1, 8, 8)
    assert torch.equal(m.train()(x), m.eval()(x))


def test_hidden_activations_are_the_post_activation_outputs():
    m = mlp(widths=(16, 12)).eval()
    x = torch.randn(5, 1, 8, 8)
    h1 = torch.relu(m.ops[0][0](x.flatten(1)))
    h2 = torch.relu(m.ops[1][0](h1))
    acts = m.hidden_activations(x)
    assert torch.allclose(acts["hidden1"], h1) and torch.allclose(acts["hidden2"], h2)


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_classic_and_inverted_compute_the_same_function(kind):
    torch.manual_seed(0)
    cfg = ModelConfig(kind=kind, widths=(16,), conv_channels=(3, 4), p_drop_conv=(0.2, 0.3), p_drop_input=0.2, p_drop_hidden=(0.5,), convention="classic")
    classic = build_model(cfg, (1, 8, 8), 10)
    inverted = convert_convention(classic, "inverted")
    x = torch.randn(7, 1, 8, 8)
    # weight-scaled predictions agree
    assert torch.allclose(classic.eval()(x), inverted.eval()(x), atol=1e-6)
    # and so does every thinned network: equal seeds draw equal masks in both conventions
    torch.manual_seed(5)
    a = classic.train()(x)
    torch.manual_seed(5)
    b = inverted.train()(x)
    assert torch.allclose(a, b, atol=1e-6)
    back = convert_convention(inverted, "classic")
    assert torch.allclose(back.eval()(x), classic.eval()(x), atol=1e-6)


def test_max_norm_bounds_rows_and_leaves_short_rows_alone():
    m = mlp(widths=(16,))
    w = m.ops[0][0].weight
    with torch.no_grad():
        w[0].mul_(100.0)
    short = w[1].clone()
    apply_max_norm(m, 1.0)
    norms = w.norm(dim=1)
    assert norms.max() <= 1.0 + 1e-5 and abs(norms[0].item() - 1.0) < 1e-5
    if short.norm() < 1.0:
        assert torch.equal(w[1], short)
