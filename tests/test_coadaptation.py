import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from harness.config import ModelConfig
from harness.inference.coadaptation import (
    ablation,
    analyze_model,
    capture,
    compare,
    correlation_matrix,
    covariance,
    decov,
    effective_rank,
    feature_table,
    layer_measures,
    participation_ratio,
)
from harness.nets.models import DropoutNet, DropoutSite, build_model


def test_identical_units_correlate_at_one_and_negated_at_minus_one():
    torch.manual_seed(0)
    u, v = torch.randn(200), torch.randn(200)
    r, alive = correlation_matrix(torch.stack([u, 3 * u + 1, -u, v], 1))
    assert alive.all()
    assert math.isclose(r[0, 1].item(), 1.0, abs_tol=1e-12) and math.isclose(r[0, 2].item(), -1.0, abs_tol=1e-12)
    assert torch.allclose(r.diagonal(), torch.ones(4, dtype=torch.float64))


def test_independent_units_correlate_near_zero_within_sampling_error():
    torch.manual_seed(0)
    n = 10_000
    m, _ = layer_measures(torch.randn(n, 60))
    expected = math.sqrt(2 / (math.pi * n))  # E|r| for independent Gaussians, r ~ N(0, 1/n)
    assert 0.8 * expected < m["mean_abs_r"] < 1.2 * expected
    assert m["frac_abs_r_gt_0.5"] == 0.0


def test_diagonal_covariance_has_zero_decov():
    torch.manual_seed(0)
    z = torch.randn(500, 6, dtype=torch.float64)
    z = z - z.mean(0)
    q, _ = torch.linalg.qr(z)  # orthonormal, centred columns: uncorrelated units
    a = q * torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0, 1.5], dtype=torch.float64)
    c = covariance(a)
    assert abs(decov(c)) < 1e-12 * c.trace().item() ** 2
    assert decov(covariance(torch.stack([a[:, 0], a[:, 0]], 1))) > 0


def test_rank_one_representation_has_participation_ratio_one():
    torch.manual_seed(0)
    a = torch.outer(torch.randn(300, dtype=torch.float64), torch.randn(8, dtype=torch.float64))
    c = covariance(a)
    assert math.isclose(participation_ratio(c), 1.0, rel_tol=1e-9)
    assert math.isclose(effective_rank(c), 1.0, rel_tol=1e-6)
    iso = covariance(torch.randn(100_000, 4, dtype=torch.float64))
    assert 3.95 < participation_ratio(iso) <= 4.0


def test_dead_and_constant_units_are_counted_and_excluded():
    torch.manual_seed(0)
    a = torch.randn(100, 5)
    a[:, 1] = 0.0
    a[:, 3] = 2.5
    m, hist = layer_measures(a)
    assert m["n_dead"] == 2 and m["n_units"] == 5
    assert hist.sum() == 3  # pairs among the 3 alive units
    assert not any(math.isnan(v) for v in m.values())
    m1, _ = layer_measures(torch.zeros(50, 3))  # a dead layer is not decorrelated: its correlations are undefined
    assert m1["n_dead"] == 3 and all(
        math.isnan(m1[k]) for k in ("mean_abs_r", "median_abs_r", "p90_abs_r", "frac_abs_r_gt_0.5")
    )
    one = torch.zeros(50, 3)
    one[:, 0] = torch.randn(50)
    m2, _ = layer_measures(one)  # one live unit: no pair to correlate
    assert m2["n_dead"] == 2 and math.isnan(m2["mean_abs_r"])


def test_median_abs_r_is_the_usual_median():
    u = torch.randn(400, dtype=torch.float64)
    noise = torch.randn(400, 4, dtype=torch.float64)
    a = torch.stack([u, u + 0.5 * noise[:, 0], u + noise[:, 1], noise[:, 2], noise[:, 3]], 1)
    m, _ = layer_measures(a)
    r, _ = correlation_matrix(a)
    iu = torch.triu_indices(5, 5, offset=1)
    pairs = r[iu[0], iu[1]].abs().sort().values  # 10 pairs: the median is the mean of the 5th and 6th
    assert math.isclose(m["median_abs_r"], ((pairs[4] + pairs[5]) / 2).item(), rel_tol=1e-12)


def two_unit_net(out_weights):
    """2 inputs -> 2 ReLU units (identity weights) -> 3 classes."""
    lin1, lin2 = nn.Linear(2, 2), nn.Linear(2, 3)
    with torch.no_grad():
        lin1.weight.copy_(torch.eye(2))
        lin1.bias.zero_()
        lin2.weight.copy_(out_weights)
        lin2.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    sites = [DropoutSite("input", 0.0, "inverted", (2,)), DropoutSite("hidden1", 0.5, "inverted", (2,))]
    return DropoutNet("mlp", sites, [nn.Sequential(lin1, nn.ReLU()), lin2], (2,), flatten_input=True).eval()


def test_ablating_a_unit_with_zero_outgoing_weights_changes_nothing():
    net = two_unit_net(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.5, 0.0]]))
    x = torch.rand(40, 2) + 0.1
    y = torch.randint(0, 3, (40,))
    units, _ = ablation(net, x, y, "hidden1", n_pairs=1)
    assert units.loc[1, "delta"] == 0.0 and units.loc[0, "delta"] != 0.0


def test_units_acting_on_separate_examples_do_not_interact_and_shared_ones_do():
    torch.manual_seed(0)
    net = two_unit_net(torch.randn(3, 2))
    y = torch.randint(0, 3, (40,))
    x = torch.rand(40, 2) + 0.1
    x[:20, 1] = 0.0  # unit 0 alone on the first half, unit 1 alone on the second: additive loss
    x[20:, 0] = 0.0
    _, pairs = ablation(net, x, y, "hidden1", n_pairs=1)
    assert abs(pairs.loc[0, "interaction"]) < 1e-12
    both = torch.rand(40, 2) + 0.1  # both units shape the same softmax: the loss is not additive
    _, pairs = ablation(net, both, y, "hidden1", n_pairs=1)
    assert abs(pairs.loc[0, "interaction"]) > 1e-4


def test_batched_ablation_equals_zeroing_units_one_by_one():
    torch.manual_seed(0)
    m = build_model(ModelConfig(widths=(12, 10), convention="classic"), (1, 4, 4), 5).eval()
    x, y = torch.randn(30, 1, 4, 4), torch.randint(0, 5, (30,))
    units, pairs = ablation(m, x, y, "hidden1", n_pairs=5)
    md = m.double()
    base = nn.functional.cross_entropy(md(x.double()), y).item()

    def loss_without(removed):
        hook = md.sites[1].register_forward_pre_hook(
            lambda mod, inp: (inp[0].index_fill(1, torch.tensor(removed), 0.0),)
        )
        try:
            return nn.functional.cross_entropy(md(x.double()), y).item() - base
        finally:
            hook.remove()

    for u in (0, 5, 11):
        assert math.isclose(units.loc[u, "delta"], loss_without([u]), rel_tol=1e-9, abs_tol=1e-13)
    row = pairs.iloc[0]
    assert math.isclose(row["delta_ij"], loss_without([int(row.unit_i), int(row.unit_j)]), rel_tol=1e-9, abs_tol=1e-13)


def test_analyze_model_tables():
    torch.manual_seed(0)
    cnn = build_model(ModelConfig(kind="cnn", widths=(16,), conv_channels=(3, 4)), (1, 8, 8), 10).eval()
    t = analyze_model(cnn, torch.randn(50, 1, 8, 8), torch.randint(0, 10, (50,)), run_id="r", n_pairs=10)
    co = t["coadaptation"]
    assert list(co.columns) == ["run_id", "layer", "metric", "value"]
    assert set(co.layer) == {"block1", "block2", "hidden1"}
    assert not co.value.isna().any()
    assert "interaction_mean" in set(co[co.layer == "hidden1"].metric)  # ablation: fully connected only
    assert "interaction_mean" not in set(co[co.layer == "block1"].metric)
    assert set(t["units"][t["units"].layer == "block2"].unit) == set(range(4))  # a conv unit is a channel


def test_compare_reports_difference_interval_and_rank_test():
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(10)],
            "p_drop_hidden": [0.0] * 5 + [0.5] * 5,
            "train_error": [0.0] * 5 + [0.01] * 5,
            "test_error": [0.05] * 5 + [0.03] * 5,
        }
    )
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    measures = pd.DataFrame({"run_id": runs.run_id, "layer": "hidden1", "metric": "mean_abs_r", "value": values})
    out = compare(measures, runs, "p_drop_hidden")
    row = out.iloc[0]
    assert row["diff"] == 5.0 and row["ci_low"] <= 5.0 <= row["ci_high"] and row["ci_low"] > 0
    assert row["mannwhitney_u"] == 25.0 and math.isclose(row["p_value"], 2 / 252)
    assert row["method"] == "welch-t" and math.isclose(
        row["ci_high"] - 5.0, stats.t.ppf(0.975, 8) * math.sqrt(2 * 2.5 / 5)
    )
    two = compare(pd.concat([measures, measures.assign(metric="decov", value=[1.0] * 10)]), runs, "p_drop_hidden")
    assert np.allclose(two["p_adjusted"], [2 * (2 / 252), 1.0])  # Benjamini-Hochberg across the table
    assert row["n"] == 5 and row["n_baseline"] == 5 and row["test_error"] == 0.03
    with pytest.raises(ValueError, match="baseline 0.3 is not among"):
        compare(measures, runs, "p_drop_hidden", baseline=0.3)


def test_capture_averages_1d_conv_blocks_over_the_signal():
    torch.manual_seed(0)
    cnn = build_model(ModelConfig(kind="cnn", widths=(16,), conv_channels=(3, 4)), (2, 12), 10).eval()
    x = torch.randn(50, 2, 12)
    acts, full = capture(cnn, x), cnn.hidden_activations(x)
    assert (
        torch.equal(acts["block1"], full["block1"].mean(2))
        and acts["block2"].shape == (50, 4)
        and torch.equal(acts["hidden1"], full["hidden1"])
    )
    t = analyze_model(cnn, x, torch.randint(0, 10, (50,)), run_id="r", n_pairs=5)
    assert (
        set(t["coadaptation"].layer) == {"block1", "block2", "hidden1"} and t["features"].empty
    )  # features: MLPs only


@pytest.mark.parametrize("shape", [(2, 6), (5,), (1, 3, 4)])
def test_feature_table_of_any_data_holds_each_units_scaled_incoming_weights(shape):
    torch.manual_seed(0)
    m = build_model(ModelConfig(widths=(7,)), shape, 3)
    f = feature_table(m).sort_values(["unit", "y", "x"])
    assert list(f.columns) == ["layer", "unit", "y", "x", "value"] and set(f.layer) == {"input"}
    w = m.consumer(0).weight.detach().double()  # (7, inputs)
    if len(shape) == 3:  # images: pixels at (y, x)
        w = w.view(7, *shape).mean(1).flatten(1)
        assert (f.y.max(), f.x.max()) == (shape[1] - 1, shape[2] - 1)
    else:  # signals (channels averaged) and flat features: y = 0, x = position or feature
        w = w.view(7, *shape).mean(1) if len(shape) == 2 else w
        assert (f.y == 0).all() and f.x.max() == shape[-1] - 1
    lo, hi = w.min(1, keepdim=True).values, w.max(1, keepdim=True).values
    assert np.allclose(f.value.to_numpy().reshape(7, -1), ((w - lo) / (hi - lo)).numpy(), atol=1e-6)


@pytest.mark.parametrize("shape, kind", [((1, 6, 6), "image"), ((1, 40), "signal"), ((9,), "features")])
def test_features_are_drawn_to_fit_the_data(shape, kind):
    from analysis import style
    from analysis.fig_features import SIGNAL_UNITS, draw_units

    torch.manual_seed(0)
    f = feature_table(build_model(ModelConfig(widths=(20,)), shape, 3)).sort_values(["unit", "y", "x"])
    fig, axes = style.figure()
    ax = axes[0][0]
    shown = draw_units(ax, f, kind)
    if kind == "signal":  # one curve per unit over the 40 positions, in lanes
        assert (
            shown == SIGNAL_UNITS
            and len(ax.lines) == SIGNAL_UNITS
            and all(len(line.get_xdata()) == 40 for line in ax.lines)
        )
        assert np.allclose(ax.lines[3].get_ydata(), f[f.unit == 3].value.to_numpy() * 0.9 + 3)
    elif kind == "features":  # a heat map: units x inputs
        assert shown == 20 and ax.images[0].get_array().shape == (20, 9)
    else:  # tiles of 6 x 6 images, 5 x 4 of them with a pixel between
        assert shown == 20 and ax.images[0].get_array().shape == (4 * 7 + 1, 5 * 7 + 1)
    import matplotlib.pyplot as plt

    plt.close(fig)
