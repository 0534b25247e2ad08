import pytest
import torch
from torch import nn

from harness.config import ModelConfig
from harness.errors import ConfigError
from harness.nets.models import apply_max_norm, build_model, convert_convention
from harness.nets.subnetworks import SubnetworkEngine, predict, sample_masks


def mlp(**kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(**kw), (1, 8, 8), 10)


def test_mlp_exposes_named_sites():
    m = mlp(widths=(16, 12), p_drop_input=0.2, p_drop_hidden=(0.5, 0.3))
    sites = m.dropout_sites()
    assert [(s.name, s.p_drop, s.n_units) for s in sites] == [
        ("input", 0.2, 64),
        ("hidden1", 0.5, 16),
        ("hidden2", 0.3, 12),
    ]
    assert [m.consumer(k).in_features for k in range(3)] == [64, 16, 12]


def test_cnn_sites_and_shapes():
    torch.manual_seed(0)
    cfg = ModelConfig(kind="cnn", widths=(20, 10), conv_channels=(4, 6), p_drop_conv=(0.1, 0.25), p_drop_hidden=(0.5,))
    m = build_model(cfg, (1, 28, 28), 10)
    names = [(s.name, s.unit_shape) for s in m.dropout_sites()]
    assert names == [
        ("input", (1, 28, 28)),
        ("block1", (4, 14, 14)),
        ("block2", (6, 7, 7)),
        ("hidden1", (20,)),
        ("hidden2", (10,)),
    ]
    x = torch.randn(3, 1, 28, 28)
    assert m(x).shape == (3, 10)
    acts = m.hidden_activations(x)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "block1": (3, 4, 14, 14),
        "block2": (3, 6, 7, 7),
        "hidden1": (3, 20),
        "hidden2": (3, 10),
    }


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
    conv = (
        {"conv_channels": (3, 4), "p_drop_conv": (0.2, 0.3)} if kind == "cnn" else {}
    )  # conv keys on an MLP are refused
    cfg = ModelConfig(kind=kind, widths=(16,), p_drop_input=0.2, p_drop_hidden=(0.5,), convention="classic", **conv)
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


# ---------------------------------------------------------------------------------------------------
# The 1-D CNN over signals (C, L)


def cnn1d(p_conv=(0.3, 0.2), p_in=0.2, p_hidden=0.5, convention="inverted", seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(
        kind="cnn",
        widths=(12, 8),
        conv_channels=(3, 4),
        p_drop_input=p_in,
        p_drop_conv=p_conv,
        p_drop_hidden=(p_hidden,),
        convention=convention,
    )
    return build_model(cfg, (2, 20), 5)


def test_cnn_on_signals_is_the_1d_counterpart():
    m = cnn1d()
    names = [(s.name, s.unit_shape, s.n_units) for s in m.dropout_sites()]
    assert names == [
        ("input", (2, 20), 40),
        ("block1", (3, 10), 30),
        ("block2", (4, 5), 20),
        ("hidden1", (12,), 12),
        ("hidden2", (8,), 8),
    ]
    convs = [mod for mod in m.modules() if isinstance(mod, (nn.Conv1d, nn.Conv2d))]
    assert [type(c) for c in convs] == [nn.Conv1d, nn.Conv1d] and [c.kernel_size for c in convs] == [(5,), (5,)]
    assert [type(m.consumer(k)) for k in range(5)] == [nn.Conv1d, nn.Conv1d, nn.Linear, nn.Linear, nn.Linear]
    x = torch.randn(6, 2, 20)
    assert m.eval()(x).shape == (6, 5)
    acts = m.hidden_activations(x)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "block1": (6, 3, 10),
        "block2": (6, 4, 5),
        "hidden1": (6, 12),
        "hidden2": (6, 8),
    }
    # block1 by hand: convolution with padding 2, ReLU, max over neighbouring pairs
    conv = m.ops[0][0]
    by_hand = torch.relu(nn.functional.conv1d(x, conv.weight, conv.bias, padding=2)).view(6, 3, 10, 2).amax(3)
    assert torch.allclose(acts["block1"], by_hand, atol=1e-6)


def test_cnn_on_flat_features_or_short_signals_is_refused_by_name():
    cfg = ModelConfig(kind="cnn", widths=(8,))
    with pytest.raises(
        ConfigError,
        match=r"model.kind=cnn needs images \(C, H, W\) or 1-D signals \(C, L\); iris.npz holds flat features "
        r"of shape \(4,\).*use model.kind=mlp",
    ):
        build_model(cfg, (4,), 3, dataset="iris.npz")
    with pytest.raises(ConfigError, match="signals of length 3 are too small for two poolings"):
        build_model(cfg, (1, 3), 3)


def test_zero_drop_makes_every_inference_mode_of_the_1d_cnn_equal():
    m = cnn1d(p_conv=(0.0, 0.0), p_in=0.0, p_hidden=0.0).eval()
    x = torch.randn(9, 2, 20)
    ws = predict(m, x, "weight_scaled")
    for mode in ("mc_shared", "mc_per_example"):
        assert torch.allclose(predict(m, x, mode, T=3), ws, atol=1e-6), mode
    engine = SubnetworkEngine(m, x)
    assert torch.equal(engine.logits(sample_masks(engine.sites, seed=0, t=0)), engine.weight_scaled())
    assert torch.equal(m.train()(x), m.eval()(x))


def test_a_1d_subnetwork_is_the_net_with_its_masks_applied():
    m = cnn1d().eval()
    x = torch.randn(7, 2, 20)
    engine = SubnetworkEngine(m, x)
    assert not engine.uses_compaction  # dropout between conv blocks: masking
    for t in range(3):
        masks = sample_masks(engine.sites, seed=1, t=t)
        h = x
        for site, op, mask in zip(m.sites, m.ops, masks, strict=False):  # by hand: each site's units times mask / keep
            h = op(h * mask.view(site.unit_shape) / site.keep)
        assert torch.allclose(engine.logits(masks), h, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 8, 8), (2, 20)])
def test_classic_and_inverted_1d_and_2d_cnns_compute_the_same_function(shape):
    torch.manual_seed(0)
    cfg = ModelConfig(
        kind="cnn",
        widths=(16,),
        conv_channels=(3, 4),
        p_drop_conv=(0.2, 0.3),
        p_drop_input=0.2,
        p_drop_hidden=(0.5,),
        convention="classic",
    )
    classic = build_model(cfg, shape, 10)
    inverted = convert_convention(classic, "inverted")
    x = torch.randn(7, *shape)
    assert torch.allclose(classic.eval()(x), inverted.eval()(x), atol=1e-6)
    torch.manual_seed(5)
    a = classic.train()(x)
    torch.manual_seed(5)
    assert torch.allclose(a, inverted.train()(x), atol=1e-6)  # the same thinned network


def test_max_norm_bounds_conv1d_filters():
    m = cnn1d()
    with torch.no_grad():
        m.ops[0][0].weight.mul_(100.0)
    apply_max_norm(m, 0.5)
    norms = m.ops[0][0].weight.flatten(1).norm(dim=1)  # one filter (in channels x kernel) per output channel
    assert torch.allclose(norms, torch.full_like(norms, 0.5), atol=1e-6)


@pytest.mark.slow
def test_the_1d_cnn_trains_on_mnist1d_end_to_end(store):
    from harness.config import RunConfig
    from harness.inference.coadaptation import CoadaptSettings
    from harness.inference.evaluation import MCSettings
    from harness.sweep.evaluations import Evaluations
    from harness.sweep.run import execute

    cfg = RunConfig(experiment="t").replace(
        **{
            "data.name": "mnist1d",
            "model.kind": "cnn",
            "model.widths": [16],
            "model.conv_channels": [4, 8],
            "model.p_drop_conv": [0.1, 0.1],
            "data.train_size": 1000,
            "train.epochs": 4,
            "train.batch_size": 50,
            "train.lr": 0.01,
            "train.optimizer": "adam",
        }
    )
    rec = execute(
        cfg,
        store,
        evaluations=Evaluations(mc=MCSettings(T=4, streams=1, per_example=False), coadapt=CoadaptSettings(n_pairs=3)),
    )
    assert rec.row["status"] == "ok" and rec.row["test_error"] < 0.8  # chance is 0.9
    assert rec.row["p_drop_sites"] == "input=0.2,block1=0.1,block2=0.1,hidden1=0.5"
    co = store.read_table("coadaptation", [rec.run_id])
    assert set(co.layer) == {"block1", "block2", "hidden1"}
    units = store.read_table("units", [rec.run_id])
    assert units.groupby("layer").size().to_dict() == {
        "block1": 4,
        "block2": 8,
        "hidden1": 16,
    }  # a conv unit is a channel
