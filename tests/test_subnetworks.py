import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from harness.config import ModelConfig
from harness.errors import ConfigError
from harness.inference.evaluation import MCSettings, checkpoints, evaluate_model
from harness.measures.metrics import EnsembleAccumulator, point_metrics
from harness.nets.models import DropoutNet, DropoutSite, build_model, convert_convention
from harness.nets.subnetworks import SubnetworkEngine, enumerate_subnetworks, predict, sample_masks


def net(sites, ops, n_in):
    return DropoutNet("mlp", sites, ops, (n_in,), flatten_input=True).double().eval()


def small_mlp(convention="inverted", p_in=0.3, p_hid=0.5, widths=(5,), n_in=6, act=nn.ReLU):
    torch.manual_seed(1)
    dims = [n_in, *widths, 4]
    sites = [
        DropoutSite("input" if k == 0 else f"hidden{k}", p_in if k == 0 else p_hid, convention, (dims[k],))
        for k in range(len(dims) - 1)
    ]
    ops = [nn.Sequential(nn.Linear(dims[k], dims[k + 1]), *([act()] if act else [])) for k in range(len(dims) - 2)]
    ops.append(nn.Linear(dims[-2], dims[-1]))
    return net(sites, ops, n_in)


def test_zero_drop_makes_every_mode_equal_weight_scaling():
    torch.manual_seed(0)
    m = build_model(ModelConfig(widths=(16, 16), p_drop_input=0.0, p_drop_hidden=(0.0,)), (1, 8, 8), 10).eval()
    x, y = torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,))
    ev, _ = evaluate_model(m, x, y, MCSettings(T=5, streams=2))
    for metric in ("error", "nll", "brier", "ece", "entropy"):
        values = ev[ev.metric == metric]["value"]
        assert np.allclose(values, values.iloc[0], atol=1e-6), metric
    ws = predict(m, x, "weight_scaled")
    for mode in ("mc_shared", "mc_per_example"):
        assert torch.allclose(predict(m, x, mode, T=3), ws, atol=1e-6)


@pytest.mark.parametrize("convention", ["inverted", "classic"])
def test_linear_network_weight_scaling_is_the_exact_mean(convention):
    m = small_mlp(convention, act=None)  # 6 -> 5 -> 4 with no nonlinearity: 11 droppable units
    x = torch.randn(9, 6, dtype=torch.float64)
    engine = SubnetworkEngine(m, x)
    exact = enumerate_subnetworks(engine)
    assert int(exact["count"]) == 2**11
    assert torch.allclose(exact["mean_logits"], engine.weight_scaled(), atol=1e-12)


@pytest.mark.parametrize("convention", ["inverted", "classic"])
def test_softmax_layer_weight_scaling_is_the_exact_geometric_mean(convention):
    torch.manual_seed(2)
    m = net([DropoutSite("input", 0.4, convention, (12,))], [nn.Linear(12, 5)], 12)
    x = torch.randn(20, 12, dtype=torch.float64)
    engine = SubnetworkEngine(m, x)
    exact = enumerate_subnetworks(engine)
    ws = torch.softmax(engine.weight_scaled(), 1)
    assert torch.allclose(exact["geometric"], ws, atol=1e-12)
    assert not torch.allclose(exact["mean"], ws, atol=1e-3)  # the arithmetic mean differs


def test_mc_average_converges_to_the_exact_mean_at_the_square_root_rate():
    m = small_mlp(widths=(8,), n_in=6)
    x = torch.randn(50, 6, dtype=torch.float64)
    engine = SubnetworkEngine(m, x)
    exact = enumerate_subnetworks(engine)["mean"]
    ks, streams = [4, 16, 64, 256], 40
    sq = np.zeros(len(ks))
    for r in range(streams):
        acc = EnsembleAccumulator(len(x), 4)
        for t in range(ks[-1]):
            acc.add(engine.logits(sample_masks(engine.sites, 0, t, stream=r)))
            if acc.k in ks:
                sq[ks.index(acc.k)] += ((acc.mean() - exact) ** 2).sum(1).mean().item()
    rmse = np.sqrt(sq / streams)
    slope = np.polyfit(np.log(ks), np.log(rmse), 1)[0]
    assert -0.6 < slope < -0.4, slope


def test_compaction_and_masking_agree():
    torch.manual_seed(0)
    x = torch.randn(30, 1, 12, 12)
    cases = [
        ModelConfig(widths=(40, 30)),  # input keeps 0.8: full product minus the dropped part
        ModelConfig(widths=(40, 30), p_drop_input=0.7, p_drop_hidden=(0.3, 0.6)),
        ModelConfig(widths=(40,), p_drop_input=0.0, activation="tanh"),
        ModelConfig(widths=(40, 30), convention="classic", activation="sigmoid"),
        ModelConfig(kind="cnn", widths=(20,), conv_channels=(3, 4), p_drop_input=0.0, p_drop_hidden=(0.5,)),
    ]
    for cfg in cases:
        m = build_model(cfg, (1, 12, 12), 10).eval()
        engine = SubnetworkEngine(m, x)
        assert engine.uses_compaction, cfg
        for t in range(3):
            masks = sample_masks(engine.sites, 5, t)
            assert torch.allclose(engine.logits(masks), engine.logits_masked(masks), atol=1e-5), cfg
    cnn = build_model(
        ModelConfig(kind="cnn", widths=(20,), conv_channels=(3, 4), p_drop_conv=(0.2, 0.2)), (1, 12, 12), 10
    )
    assert not SubnetworkEngine(cnn, x).uses_compaction  # dropout between conv blocks: masking


def test_conventions_give_the_same_subnetworks():
    torch.manual_seed(0)
    classic = build_model(ModelConfig(widths=(20, 20), convention="classic"), (1, 8, 8), 10).eval()
    inverted = convert_convention(classic, "inverted")
    x = torch.randn(25, 1, 8, 8)
    a, b = SubnetworkEngine(classic, x), SubnetworkEngine(inverted, x)
    masks = sample_masks(a.sites, 0, 3)
    assert torch.allclose(a.logits(masks), b.logits(masks), atol=1e-5)
    assert torch.allclose(a.weight_scaled(), b.weight_scaled(), atol=1e-5)


def test_subnetworks_are_rebuilt_from_seed_and_index():
    torch.manual_seed(0)
    m = build_model(ModelConfig(widths=(24,)), (1, 8, 8), 10).eval()
    x, y = torch.randn(60, 1, 8, 8), torch.randint(0, 10, (60,))
    settings = MCSettings(T=6, streams=2, seed=11, per_example=False)
    ev, subs = evaluate_model(m, x, y, settings)
    engine = SubnetworkEngine(m, x)
    ws = torch.softmax(engine.weight_scaled().double(), 1)
    row = subs[(subs.stream == 1) & (subs.subnetwork == 4)].iloc[0]
    p, logp = EnsembleAccumulator(60, 10).add(engine.logits(sample_masks(engine.sites, 11, 4, stream=1)))
    ws_log = torch.log_softmax(engine.weight_scaled().double(), 1)  # as the evaluation computes it
    for name, value in point_metrics(p, y, ws, logp, ws_log).items():
        assert row[name] == value, name
    ev2, subs2 = evaluate_model(m, x, y, settings)
    pd.testing.assert_frame_equal(ev, ev2)
    pd.testing.assert_frame_equal(subs, subs2)
    assert not sample_masks(engine.sites, 11, 4, stream=0)[0].equal(sample_masks(engine.sites, 11, 4, stream=1)[0])


def test_evaluation_tables_follow_the_contract():
    m = small_mlp(widths=(6,), n_in=6).float()
    x, y = torch.randn(40, 6), torch.randint(0, 4, (40,))
    ev, subs = evaluate_model(m, x, y, MCSettings(T=20, streams=3), run_id="r1")
    assert list(ev.columns) == ["run_id", "split", "mode", "k", "repeat", "metric", "value"]
    assert set(ev["mode"]) == {"weight_scaled", "mc_shared", "geometric", "mc_per_example", "exact", "exact_geometric"}
    mc = ev[(ev["mode"] == "mc_shared") & (ev.metric == "error")]
    assert sorted(mc.k.unique()) == [1, 2, 5, 10, 20] and sorted(mc.repeat.unique()) == [0, 1, 2]
    assert {"l2_to_exact", "inference_gap", "kl_ws", "mutual_information", "disagreement"} <= set(ev.metric)
    assert len(subs) == 60 and {"run_id", "stream", "subnetwork", "kept_fraction", "error", "nll"} <= set(subs.columns)
    assert not ev["value"].isna().any()


def test_checkpoints():
    assert checkpoints(1000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert checkpoints(30) == [1, 2, 5, 10, 20, 30]


def test_exact_refuses_large_networks():
    m = build_model(ModelConfig(widths=(32,)), (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="at most 20 droppable units; this network has 96 .input: 64, hidden1: 32."):
        enumerate_subnetworks(SubnetworkEngine(m, torch.randn(3, 1, 8, 8)))


class Plain(nn.Module):
    def __init__(self, dropout=True, functional=False):
        super().__init__()
        self.bn = nn.BatchNorm1d(16)
        self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 5)
        self.drop = nn.Dropout(0.5) if dropout else nn.Identity()
        self.functional = functional

    def forward(self, x):
        h = torch.relu(self.fc1(self.bn(x)))
        if self.functional:
            h = nn.functional.dropout(h, 0.5, self.training)
        return self.fc2(self.drop(h))


def test_any_module_with_dropout_keeps_batch_norm_in_eval_mode():
    torch.manual_seed(0)
    m = Plain()
    m.bn.running_mean.fill_(0.3)
    x = torch.randn(20, 16)
    stats = m.bn.running_mean.clone()
    m.train()
    ws = predict(m, x, "weight_scaled")
    assert torch.allclose(ws, torch.softmax(m.eval()(x), 1))
    m.train()
    for mode in ("mc_per_example", "mc_shared"):
        p = predict(m, x, mode, T=10)
        assert p.shape == (20, 5) and torch.allclose(p.sum(1), torch.ones(20), atol=1e-5)
        assert not torch.allclose(p, ws)
    assert torch.equal(m.bn.running_mean, stats) and m.training and m.bn.training  # state restored


def test_hooked_masks_match_the_engine_on_an_equivalent_network():
    """mc_shared through hooks on a plain nn.Sequential draws the same masks as the harness engine."""
    torch.manual_seed(0)
    dn = build_model(ModelConfig(widths=(16, 12)), (1, 8, 8), 10).eval()
    lin = [m for m in dn.modules() if isinstance(m, nn.Linear)]
    seq = nn.Sequential(
        nn.Flatten(), nn.Dropout(0.2), lin[0], nn.ReLU(), nn.Dropout(0.5), lin[1], nn.ReLU(), nn.Dropout(0.5), lin[2]
    )
    x = torch.randn(15, 1, 8, 8)
    assert torch.allclose(
        predict(seq, x, "mc_shared", T=7, seed=3), predict(dn, x, "mc_shared", T=7, seed=3), atol=1e-5
    )


def test_modules_without_dropout_modules_get_a_clear_error():
    x = torch.randn(10, 16)
    with pytest.raises(ConfigError, match="Plain contains no dropout module: there are no subnetworks to sample"):
        predict(Plain(dropout=False), x, "mc_shared")
    with pytest.raises(
        ConfigError, match=r"Plain is random in train mode where the harness samples nothing: \(the model\) \(Plain\)"
    ):
        predict(Plain(dropout=False, functional=True), x, "mc_shared")


def test_flop_count_of_compaction():
    torch.manual_seed(0)
    m = build_model(ModelConfig(widths=(40, 30)), (1, 8, 8), 10).eval()
    engine = SubnetworkEngine(m, torch.randn(7, 1, 8, 8))
    masks = sample_masks(engine.sites, 0, 0)
    k0, k1, k2 = (int(mk.sum()) for mk in masks)
    # input keeps 0.8 > 0.5: its product subtracts the dropped inputs' part from the shared product
    assert engine.flops(masks) == 2 * 7 * (k1 * (64 - k0) + k2 * k1 + 10 * k2)


def test_ensemble_of_any_dropout_classifier_feeds_the_measures():
    from harness.measures.diversity import decomposition
    from harness.measures.ood import detection, scores
    from harness.nets.subnetworks import ensemble

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 3))
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    for mode in ("mc_shared", "mc_per_example"):
        acc = ensemble(model, x, mode, T=7, seed=3)
        assert acc.k == 7 and torch.allclose(acc.mean().float(), predict(model, x, mode, T=7, seed=3), atol=1e-6)
        d = decomposition(acc, y)
        assert (
            abs(
                d["member_brier"]
                - d["brier_diversity"]
                - ((acc.mean() - torch.eye(3)[y].double()) ** 2).sum(1).mean().item()
            )
            < 1e-12
        )
        s = scores(acc.mean(), acc.log_mean(), acc)
        assert 0.0 <= detection(s["mutual_information"][:20], s["mutual_information"][20:])["auroc"] <= 1.0
    assert model.training  # the module's own mode is restored
    assert torch.is_grad_enabled()


def test_per_example_masks_run_on_the_first_streams_only():
    from harness.inference.evaluation import MCSettings, evaluate_model

    torch.manual_seed(0)
    m = build_model(ModelConfig(widths=(12,)), (1, 8, 8), 10).eval()
    x, y = torch.randn(30, 1, 8, 8), torch.randint(0, 10, (30,))
    ev, _ = evaluate_model(m, x, y, MCSettings(T=5, streams=3, exact="no"))
    assert set(ev[ev["mode"] == "mc_per_example"].repeat) == {0} and set(ev[ev["mode"] == "mc_shared"].repeat) == {
        0,
        1,
        2,
    }
    both, _ = evaluate_model(m, x, y, MCSettings(T=5, streams=3, per_example_streams=2, exact="no"))
    assert set(both[both["mode"] == "mc_per_example"].repeat) == {0, 1}
    one = ev[ev["mode"] == "mc_per_example"].reset_index(drop=True)  # stream 0 is the same either way
    assert one.equals(both[(both["mode"] == "mc_per_example") & (both.repeat == 0)].reset_index(drop=True))
    with pytest.raises(ConfigError, match="per_example_streams=4: between 1 and streams=3"):
        MCSettings(streams=3, per_example_streams=4)
