"""Shifted and unseen sets, the robustness evaluation of one run, and deep ensembles of runs."""

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from harness.config import DataConfig, ModelConfig, RunConfig
from harness.data.datasets import describe, load_dataset, load_raw
from harness.data.registry import DataInfo
from harness.data.shifts import (
    ANGLES,
    CORRUPTIONS,
    MNIST1D_CORRUPTIONS,
    EvalSet,
    corrupt,
    evaluation_sets,
    fashion,
    fashion_available,
    gaussian_noise,
    mnist1d_published_scale,
    mnist1d_shifted,
    mnist1d_signals,
    patches,
    permuted,
    rotate,
    shift_images,
    translation_offsets,
    unseen_available,
)
from harness.errors import ConfigError
from harness.inference.ensembles import Ensemble, ensembles_of, evaluate_ensemble, member_configs
from harness.inference.robustness import (
    Recorder,
    RobustnessSettings,
    equal_compute_k,
    evaluate_robustness,
    fit_robustness,
    subnetwork_cost,
)
from harness.measures.metrics import ece, overconfidence, point_metrics
from harness.nets.models import build_model
from harness.store.identity import run_id
from harness.sweep.experiment import load_experiment
from tests.test_data import write_mnist_like


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(name="digits"))


def _images(n=3, size=8, seed=0):
    return np.random.default_rng(seed).random((n, 1, size, size))


def test_rotations_by_hand():
    x = _images()
    assert np.array_equal(rotate(x, 0), x) and np.array_equal(rotate(x, 360), x)
    assert np.allclose(rotate(x, 90), np.rot90(x, 1, axes=(2, 3)), atol=1e-12)  # counter-clockwise
    assert np.allclose(rotate(x, 180), x[..., ::-1, ::-1], atol=1e-12)


def test_corruptions_do_what_they_say():
    x = _images(4, 28)
    for name in CORRUPTIONS:
        for s in (1, 2, 3):
            a, b = corrupt(x, name, s), corrupt(x, name, s)
            assert a.shape == x.shape and np.array_equal(a, b), name  # deterministic
    band = corrupt(x, "centre_band", 3)  # 5 white columns through the centre
    assert (
        (band[..., 11:16] == 1).all()
        and np.array_equal(band[..., :11], x[..., :11])
        and np.array_equal(band[..., 16:], x[..., 16:])
    )
    hits = [np.mean(corrupt(x, "impulse_noise", s) != x) for s in (1, 2, 3)]
    assert (
        hits[0] < hits[1] < hits[2] and abs(hits[2] - 0.2) < 0.02
    )  # 20% of the pixels hit (none of these is already black or white)
    shot = corrupt(np.full((200, 1, 28, 28), 0.5), "shot_noise", 1)
    assert abs(shot.mean() - 0.5) < 0.002  # Poisson noise is unbiased
    odd = _images(2, 29)  # centre row 14: it stays, and row 19 (5 below) moves 0.2 x 5 = 1 pixel left
    sheared = corrupt(odd, "shear", 1)
    assert np.allclose(sheared[..., 14, :], odd[..., 14, :]) and np.allclose(sheared[..., 19, :-1], odd[..., 19, 1:])
    assert np.allclose(
        sheared[..., 9, 2:], odd[..., 9, 1:-1]
    )  # and row 9 (5 above) 1 pixel right (column 1 reads column 0 at a coordinate that rounds just outside)
    centre = np.zeros((1, 1, 28, 28))
    centre[..., 14, 14] = 1.0
    assert math.isclose(corrupt(centre, "gaussian_blur", 3).sum(), 1.0, rel_tol=1e-9)  # blur moves ink, never adds it
    with pytest.raises(ConfigError, match="known corruptions"):
        corrupt(x, "fog", 1)
    with pytest.raises(ConfigError, match="severities"):
        corrupt(x, "centre_band", 4)


def test_translate_moves_each_image_diagonally_by_its_recorded_offset():
    x = _images(64, 28)
    off = translation_offsets(64, 2)  # 4 pixels along each axis, a seeded random sign per axis and image
    assert (np.abs(off) == 4).all() and len({tuple(o) for o in off}) == 4  # all four diagonal directions occur
    assert np.array_equal(translation_offsets(64, 2), off) and not np.array_equal(
        translation_offsets(64, 2, seed=1), off
    )
    moved = corrupt(x, "translate", 2)
    for i, (dr, dc) in enumerate(off):
        # by hand: roll, then blank the rows and columns that wrapped around (background comes in)
        expected = np.roll(x[i], (dr, dc), axis=(1, 2))
        rows = slice(0, dr) if dr > 0 else slice(28 + dr, 28)
        cols = slice(0, dc) if dc > 0 else slice(28 + dc, 28)
        expected[:, rows, :] = 0.0
        expected[:, :, cols] = 0.0
        assert np.array_equal(moved[i], expected), i
    assert np.array_equal(
        translation_offsets(3, 3, width=8) * 7, translation_offsets(3, 3) * 2
    )  # 7 pixels at width 28 are 2 at width 8
    dot = np.zeros((2, 1, 8, 8))
    dot[:, 0, 3, 3] = 1.0
    out = shift_images(dot, np.array([[2, -3], [0, -4]]))
    assert out[0, 0, 5, 0] == 1.0 and out[0].sum() == 1.0 and not out[1].any()  # the second dot leaves the image


def test_overconfidence_by_hand():
    p = torch.tensor([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3], [0.2, 0.8]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    # confidences 0.9, 0.6, 0.7, 0.8 (mean 0.75); correct 1, 0, 0, 1 (accuracy 0.5)
    assert math.isclose(overconfidence(p, y), 0.25)
    assert math.isclose(overconfidence(p, 1 - y), 0.75 - 0.5)  # the same confidences, the other two right
    under = torch.tensor([[0.6, 0.4]] * 4, dtype=torch.float64)
    assert math.isclose(
        overconfidence(under, torch.zeros(4, dtype=torch.long)), -0.4
    )  # right every time at 60%: underconfident
    assert point_metrics(p, y)["overconfidence"] == overconfidence(p, y)


def test_overconfidence_is_one_bin_ece_and_bounded_by_any_ece():
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        p = torch.softmax(torch.randn(200, 5, generator=g, dtype=torch.float64) * (trial % 4 + 0.5), 1)
        y = torch.randint(0, 5, (200,), generator=g)
        o = overconfidence(p, y)
        assert math.isclose(abs(o), ece(p, y, bins=1), rel_tol=1e-12, abs_tol=1e-15)
        for bins in (2, 5, 15, 100):
            assert abs(o) <= ece(p, y, bins=bins) + 1e-12


def test_unseen_inputs():
    x = _images(5)
    p = permuted(x)
    assert np.array_equal(np.sort(p.reshape(5, -1), 1), np.sort(x.reshape(5, -1), 1))  # the same pixels, moved
    assert np.array_equal(permuted(x), p)
    order = p.reshape(5, -1)[:, :, None] == x.reshape(5, 1, -1)  # one permutation for every image
    assert (order.argmax(2) == order[0].argmax(1)).all()
    a, b = patches(6, (1, 28, 28)), patches(6, (1, 7, 7))
    assert a.shape == (6, 1, 28, 28) and b.shape == (6, 1, 7, 7) and 0 <= a.min() and a.max() <= 1
    assert np.allclose(b[:, 0], a[:, 0].reshape(6, 7, 4, 7, 4).mean((2, 4)))  # area averaging: 4 x 4 blocks
    assert patches(2, (1, 8, 8)).shape == (2, 1, 8, 8)
    assert np.array_equal(patches(6, (1, 28, 28)), a)


def test_fashion_mnist_joins_when_its_files_are_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    assert not fashion_available((1, 28, 28)) and unseen_available((1, 28, 28)) == ("permuted", "patches")
    arrays = write_mnist_like(tmp_path / "fashion-mnist")
    assert fashion_available((1, 28, 28)) and not fashion_available((1, 8, 8))
    assert unseen_available((1, 28, 28)) == ("permuted", "patches", "fashion-mnist")
    f = fashion(5, (1, 28, 28))
    test = arrays["t10k-images-idx3-ubyte"][:5].astype(np.float64)
    assert np.allclose(f[:, 0], test / test.max())


def test_evaluation_sets(digits):
    sets = evaluation_sets(
        digits, angles=(0, 90, 180), corruptions=("centre_band",), severities=(1, 3), unseen=("permuted", "patches")
    )
    assert [s.name for s in sets] == [
        "test",
        "rotation_90",
        "rotation_180",
        "centre_band_1",
        "centre_band_3",
        "permuted",
        "patches",
    ]
    assert sets[0].x is digits.x_test and all(s.x.shape == digits.x_test.shape for s in sets)
    assert all(s.y is digits.y_test for s in sets[:5]) and sets[5].y is None and sets[6].y is None
    # rotating back by 180 degrees restores the test images (unit intensity, standardized again)
    back = rotate((sets[2].x.double().numpy() * digits.std + digits.mean) / 16.0, 180) * 16.0
    assert np.allclose((back - digits.mean) / digits.std, digits.x_test.numpy(), atol=1e-5)
    with pytest.raises(
        ConfigError,
        match=r"mnist1d holds signal data of shape \(1, 40\): rotations .* need square images.*corruption shot_noise "
        r"needs images.*fit_robustness chooses the sets that fit",
    ):
        evaluation_sets(load_dataset(DataConfig(name="mnist1d")))


def test_subnetwork_cost_by_hand():
    m = build_model(ModelConfig(widths=(4,), p_drop_input=0.5, p_drop_hidden=(0.5,)), (1, 2, 3), 3)
    # full: 6 x 4 + 4 x 3 = 36 multiply-adds; a subnetwork: 3 inputs x 2 units + 2 units x 3 outputs = 12
    assert math.isclose(subnetwork_cost(m), 12 / 36) and equal_compute_k(m, 5) == 15
    none = build_model(ModelConfig(widths=(4,), p_drop_input=0.0, p_drop_hidden=(0.0,)), (1, 2, 3), 3)
    assert subnetwork_cost(none) == 1.0 and equal_compute_k(none, 5) == 5


def _run(digits, p_drop, seed=0):
    torch.manual_seed(seed)
    return build_model(
        ModelConfig(widths=(16,), p_drop_input=0.0, p_drop_hidden=(p_drop,), max_norm=None),
        digits.input_shape,
        digits.n_classes,
    ).eval()


SMALL = RobustnessSettings(
    T=6, members=2, angles=(0, 90), corruptions=("centre_band",), severities=(2,), per_example=("none",)
)


def test_robustness_tables(digits):
    t = evaluate_robustness(_run(digits, 0.5), digits, SMALL, "r1")
    sh = t["shift"]
    modes = sh[sh["set"] == "test"].groupby("mode")["k"].unique().map(sorted).to_dict()
    # k = M = 2, T / M = 3, T = 6, and 4 at equal compute: a subnetwork keeps half the hidden units, so half of
    # 64 x 16 + 16 x 10
    assert modes == {
        "weight_scaled": [0],
        "temperature_scaled": [0],
        "mc_shared": [2, 3, 4, 6],
        "mc_per_example": [2, 3, 4, 6],
    }
    assert set(sh[sh["set"] == "rotation_90"]["mode"]) == {
        "weight_scaled",
        "temperature_scaled",
        "mc_shared",
    }  # per-example on the test split only
    val = sh[sh["set"] == "val"].set_index("metric")["value"]
    assert (
        set(val.index) == {"temperature", "equal_compute_k"}
        and val["equal_compute_k"] == 4
        and 0.05 <= val["temperature"] <= 20
    )
    assert set(sh[sh["set"] == "patches"].metric) >= {"entropy", "brier_diversity"} and "error" not in set(
        sh[sh["set"] == "patches"].metric
    )
    cells = lambda metric: set(sh.loc[sh.metric == metric, ["set", "mode", "k"]].itertuples(index=False))  # noqa: E731
    assert (
        cells("overconfidence") == cells("ece") and len(cells("ece")) == 3 * (2 + 4) + 4
    )  # 3 labelled sets x (2 modes at k = 0, mc_shared at 4 k); mc_per_example at 4 k on the test split
    pred = t["predictions"]
    # the weight-scaled net and each member's share of T subnetworks (k = T / M = 3), on every set
    assert set(pred[["mode", "k"]].itertuples(index=False, name=None)) == {("weight_scaled", 0), ("mc_shared", 3)}
    assert pred.groupby("mode")["set"].nunique().nunique() == 1
    ood = t["ood"]
    assert set(ood["set"]) == {"permuted", "patches"} and set(ood.metric) == {"auroc", "aupr", "fpr95"}
    assert set(ood[ood["mode"] == "mc_shared"].score) == {"max_prob", "entropy", "mutual_information", "disagreement"}
    assert set(ood[ood["mode"] == "weight_scaled"].score) == {"max_prob", "entropy"}
    counts = t["entropy_hist"].groupby(["set", "mode", "k"])["count"].sum()
    assert (counts == len(digits.y_test)).all()  # every example in one bin, at each mode's largest k only
    assert set(t["entropy_hist"][t["entropy_hist"]["mode"] == "mc_shared"].k) == {6}
    pred = t["predictions"]
    assert len(pred) == 2 * 5 * len(
        digits.y_test
    )  # test, rotation_90, centre_band_2, permuted, patches; weight scaled and k = T / M
    assert (pred[pred["set"] == "patches"].label == -1).all()
    logp = pred[[f"logp_{c}" for c in range(10)]].to_numpy()
    assert np.allclose(np.exp(logp).sum(1), 1, atol=1e-5)
    ws = sh[(sh["set"] == "test") & (sh["mode"] == "weight_scaled")].set_index("metric")["value"]
    test = pred[(pred["set"] == "test") & (pred["mode"] == "weight_scaled")]
    assert math.isclose(ws["nll"], -np.mean(logp[test.index, test.label]), rel_tol=1e-5)
    mc = sh[(sh["set"] == "test") & (sh["mode"] == "mc_shared") & (sh.k == 3)].set_index("metric")["value"]
    test = pred[(pred["set"] == "test") & (pred["mode"] == "mc_shared")]
    assert math.isclose(mc["nll"], -np.mean(logp[test.index, test.label]), rel_tol=1e-5)


def test_without_dropout_only_the_deterministic_modes(digits):
    t = evaluate_robustness(_run(digits, 0.0), digits, SMALL, "r0")
    assert set(t["shift"]["mode"]) == {"weight_scaled", "temperature_scaled"}
    assert "equal_compute_k" not in set(t["shift"].metric)


def test_an_ensemble_of_identical_members_is_that_member(digits):
    t = evaluate_robustness(_run(digits, 0.0), digits, SMALL, "a")
    preds = pd.concat([t["predictions"].assign(run_id=r) for r in ("a", "b", "c")], ignore_index=True)
    e = evaluate_ensemble(Ensemble("e", "no dropout", 0, ("a", "b", "c")), preds)
    ens = e["shift"][e["shift"]["set"] == "test"].set_index("metric")["value"]
    ws = t["shift"][(t["shift"]["set"] == "test") & (t["shift"]["mode"] == "weight_scaled")].set_index("metric")[
        "value"
    ]
    for m in ("error", "nll", "brier", "ece", "overconfidence", "entropy"):
        assert math.isclose(ens[m], ws[m], rel_tol=1e-5, abs_tol=1e-6), m
    for m in ("nll_gap", "ce_diversity", "brier_diversity", "disagreement", "pairwise_kl", "mutual_information"):
        assert abs(ens[m]) < 1e-9, m
    assert math.isclose(ens["member_nll"], ws["nll"], rel_tol=1e-5)
    assert set(e["shift"]["mode"]) == {"ensemble"} and set(e["shift"].k) == {3}
    with pytest.raises(ConfigError, match="no stored predictions for member d"):
        evaluate_ensemble(Ensemble("e", "no dropout", 0, ("a", "d")), preds)


def test_two_different_members_decompose_exactly(digits):
    a = evaluate_robustness(_run(digits, 0.0, seed=1), digits, SMALL, "a")["predictions"]
    b = evaluate_robustness(_run(digits, 0.0, seed=2), digits, SMALL, "b")["predictions"]
    e = evaluate_ensemble(Ensemble("e", "no dropout", 0, ("a", "b")), pd.concat([a, b], ignore_index=True))["shift"]
    v = e[e["set"] == "test"].set_index("metric")["value"]
    assert math.isclose(v["member_nll"] - v["nll_gap"], v["nll"], rel_tol=1e-9)
    assert math.isclose(v["member_brier"] - v["brier_diversity"], v["brier"], rel_tol=1e-9)
    assert v["brier_diversity"] > 0 and v["disagreement"] > 0


def test_recorder_needs_the_test_set_first():
    rec = Recorder("u", 2, 5)
    p = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    with pytest.raises(ValueError, match="test set must be recorded before"):
        rec.record(EvalSet("patches", "unseen", 0.0, None, None), "weight_scaled", 0, p, p.log())


def test_settings_are_checked():
    for bad, match in [
        ({"T": 0}, "positive"),
        ({"corruptions": ("fog",)}, "not a known corruption"),
        ({"unseen": ("cifar",)}, "not a known"),
        ({"severities": (4,)}, "severities"),
        ({"per_example": ("rotated",)}, "kinds of set"),
        ({"angles": (400,)}, "degrees"),
    ]:
        with pytest.raises(ConfigError, match=match):
            RobustnessSettings(**bad)


def test_ensembles_are_disjoint_seed_groups():
    b = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(widths=(8,)))
    cfgs = member_configs(b, 3, 2) + member_configs(
        b.replace(**{"model.p_drop_input": 0.0, "model.p_drop_hidden": [0.0]}), 3, 2
    )
    ens = ensembles_of(cfgs, 3)
    assert [(e.group, e.replicate) for e in ens] == [
        ("dropout", 0),
        ("dropout", 1),
        ("no dropout", 0),
        ("no dropout", 1),
    ]
    assert [c.seed for c in cfgs[:6]] == [0, 1, 2, 3, 4, 5] and ens[1].run_ids == tuple(run_id(c) for c in cfgs[3:6])
    assert len({r for e in ens for r in e.run_ids}) == 12  # no run is a member twice
    with pytest.raises(ConfigError, match="multiple of 4"):
        ensembles_of(cfgs, 4)


def test_experiment_files_declare_valid_ensembles(tmp_path):
    exp = load_experiment("experiments/ensemble_vs_dropout.py", "smoke")
    shift = load_experiment("experiments/shift.py", "smoke")
    assert [run_id(c) for c in exp.configs] == [
        run_id(c) for c in shift.configs
    ] and exp.evaluations == shift.evaluations
    assert len(exp.ensembles) == 10 and exp.evaluations.robustness.members == 2
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from harness.config import RunConfig\nfrom harness.inference.ensembles import Ensemble\nNAME = 'bad'\ndef "
        "configs(profile):\n    return [RunConfig(seed=0)]\ndef ensembles(profile):\n    return [Ensemble('e', "
        "'dropout', 0, ('nope',))]\n"
    )
    with pytest.raises(ConfigError, match="which configs\\(\\) does not list"):
        load_experiment(bad, "smoke")


# ---------------------------------------------------------------------------------------------------
# Shifted sets that fit the data: mnist1d's generator, Gaussian noise, fit_robustness


@pytest.fixture(scope="module")
def mnist1d():
    return load_dataset(DataConfig(name="mnist1d"))


def test_the_generator_reproduces_the_published_mnist1d_signals():
    raw = load_raw("mnist1d")
    published = np.concatenate([raw.x, raw.x_test])[
        :, 0
    ]  # (5000, 40), standardized by make_dataset and stored as float32
    labels = np.repeat(np.arange(10), 500)  # make_dataset's order before its shuffle
    before = np.random.get_state()
    mean, std = mnist1d_published_scale()
    ours = ((mnist1d_signals(labels, seed=42) - mean) / std).astype(np.float32)
    assert all(
        np.array_equal(a, b) for a, b in zip(np.random.get_state(), before, strict=False)
    )  # numpy's global generator is left as it was

    def rows(a):  # the same rows in one order: the shuffle moves rows, never values
        return a[np.lexsort(a.T[::-1])]

    assert np.array_equal(rows(ours), rows(published))


def test_mnist1d_shifted_sets_are_deterministic_labelled_and_the_test_splits_size(mnist1d):
    sets = evaluation_sets(
        mnist1d, angles=(), corruptions=tuple(MNIST1D_CORRUPTIONS), severities=(1, 3), unseen=("permuted",)
    )
    assert [s.name for s in sets] == [
        "test",
        "mnist1d_noise_1",
        "mnist1d_noise_3",
        "mnist1d_scale_1",
        "mnist1d_scale_3",
        "mnist1d_shift_1",
        "mnist1d_shift_3",
        "permuted",
    ]
    assert [(s.shift, s.intensity) for s in sets[1:3]] == [("corruption", 1.0), ("corruption", 3.0)] and sets[
        -1
    ].y is None
    assert all(s.x.shape == (1000, 1, 40) and s.x.dtype == torch.float32 for s in sets)
    assert all(s.y is mnist1d.y_test for s in sets[:-1])  # new examples, one per test label
    again = mnist1d_shifted(mnist1d, "mnist1d_scale", 3)
    assert torch.equal(again, sets[4].x) and not torch.equal(
        mnist1d_shifted(mnist1d, "mnist1d_scale", 3, seed=1), again
    )
    # noise of every scale adds to the differences between neighbouring positions: they grow with severity
    rough = [float(np.diff(s.x.numpy(), axis=2).std()) for s in sets[:3]]
    assert rough[0] < rough[1] < rough[2]
    # the permuted signals: one fixed permutation of the 40 positions for every example
    order = np.random.default_rng(0).permutation(40)
    assert torch.equal(sets[-1].x[:, 0], mnist1d.x_test[:, 0, order])


def test_changed_generator_settings_make_new_sets(mnist1d, monkeypatch):
    first = evaluation_sets(mnist1d, angles=(), corruptions=("mnist1d_shift",), severities=(1,), unseen=())[1].x
    monkeypatch.setitem(MNIST1D_CORRUPTIONS, "mnist1d_shift", ({"max_translation": 60},) * 3)
    second = evaluation_sets(mnist1d, angles=(), corruptions=("mnist1d_shift",), severities=(1,), unseen=())[1].x
    assert not torch.equal(first, second)  # the settings are part of the sets' key: no stale cache


def test_gaussian_noise_fits_any_data(tmp_path):
    x = torch.zeros(4000, 3)
    noisy = [gaussian_noise(x, s) for s in (1, 2, 3)]
    assert all(
        abs(float(n.std()) / sigma - 1) < 0.03 for n, sigma in zip(noisy, (0.25, 0.5, 1.0), strict=False)
    )  # 12,000 draws: within 5 standard errors
    assert torch.equal(gaussian_noise(x, 2), noisy[1]) and torch.allclose(
        gaussian_noise(x + 5, 2) - 5, noisy[1], atol=1e-5
    )  # seeded, additive
    path = tmp_path / "flat.npz"
    np.savez(path, x=np.random.default_rng(0).random((100, 6)), y=np.arange(100) % 2)
    flat = load_dataset(DataConfig(name=str(path)))
    sets = evaluation_sets(flat, angles=(0,), corruptions=("gaussian_noise",), severities=(1,), unseen=("permuted",))
    assert [s.name for s in sets] == ["test", "gaussian_noise_1", "permuted"] and sets[1].x.shape == flat.x_test.shape
    with pytest.raises(ConfigError, match="unseen set patches needs images, not examples of shape"):
        evaluation_sets(flat, angles=(), corruptions=(), unseen=("patches",))


def test_fit_robustness_keeps_image_settings_and_adapts_the_rest():
    quick = RobustnessSettings(
        T=20,
        members=5,
        angles=ANGLES,
        corruptions=tuple(CORRUPTIONS),
        severities=(1, 3),
        per_example=("none", "rotation"),
    )
    same, notes = fit_robustness(quick, describe("mnist5k", files=False))
    assert same is quick and notes == []

    signal, notes = fit_robustness(quick, describe("mnist1d", files=False))
    assert (signal.angles, signal.corruptions, signal.severities, signal.unseen) == (
        (),
        tuple(MNIST1D_CORRUPTIONS),
        (1, 3),
        ("permuted",),
    )
    assert notes == [
        "rotations and image corruptions do not apply to mnist1d's 1-D signals; shifted test sets come from the "
        "mnist1d generator with harsher noise, scale and translation than the training data (mnist1d_noise, "
        "mnist1d_scale, mnist1d_shift at severities 1, 3)",
        "unseen set patches needs images, not mnist1d's 1-D signals; unseen classes come from permuted only",
    ]
    assert fit_robustness(signal, describe("mnist1d", files=False)) == (signal, [])  # fitted settings fit

    flat, notes = fit_robustness(signal, DataInfo("/x/iris.npz", (4,), "features", 120, 30, 3))
    assert (flat.angles, flat.corruptions, flat.unseen) == ((), ("gaussian_noise",), ("permuted",))
    assert notes == [
        "mnist1d_noise, mnist1d_scale and mnist1d_shift do not apply to iris.npz's flat features; shifted test sets "
        "add Gaussian noise to the standardized test examples (gaussian_noise at severities 1, 3: sigma 0.25, 1 "
        "standard deviations)"
    ]

    wide, notes = fit_robustness(
        replace(quick, unseen=("permuted", "patches", "fashion-mnist")),
        DataInfo("wide.npz", (1, 8, 12), "image", 80, 20, 2),
    )
    assert wide.angles == () and wide.corruptions == quick.corruptions and wide.unseen == ("permuted", "patches")
    assert notes == [
        "rotations apply only to square images; wide.npz holds 8x12 images: no rotated test sets",
        "unseen set fashion-mnist needs 28 x 28 images, not wide.npz's 8x12 images; unseen classes come from "
        "permuted, patches only",
    ]


def test_robustness_on_mnist1d_fills_the_tables_the_claims_read(mnist1d):
    from analysis.claim_values import severity_bands, shifted

    settings, _ = fit_robustness(replace(SMALL, severities=(1, 3)), describe("mnist1d", files=False))
    t = evaluate_robustness(_run(mnist1d, 0.5), mnist1d, settings, "s1")
    sh = t["shift"]
    names = set(sh.loc[shifted(sh), "set"])
    assert names == {f"{c}_{s}" for c in MNIST1D_CORRUPTIONS for s in (1, 3)}
    bands = severity_bands(
        sh.assign(group="dropout")
    )  # the weight-scaled dropout net's error on each set against the test split's
    assert set(bands.index) == names and set(bands) <= {"mild", "moderate", "severe"}
    assert set(t["ood"]["set"]) == {"permuted"}


def test_subnetwork_cost_of_a_1d_cnn_by_hand():
    m = build_model(
        ModelConfig(
            kind="cnn",
            widths=(4,),
            conv_channels=(2, 3),
            p_drop_input=0.0,
            p_drop_conv=(0.0, 0.0),
            p_drop_hidden=(0.5,),
        ),
        (1, 8),
        3,
    )
    # convolutions in full: 1 x 2 x 5 x 8 = 80 and 2 x 3 x 5 x 4 = 120 multiply-adds; block2 (3 x 2 = 6) -> 4 units:
    # 24, half of them kept by the next site; 4 -> 3 classes: 12, half the inputs kept
    assert math.isclose(subnetwork_cost(m), (80 + 120 + 12 + 6) / (80 + 120 + 24 + 12))
