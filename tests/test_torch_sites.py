"""MC dropout on torch's own modules: every dropout module torch ships sampled with its own
semantics, compared in distribution with the usual idiom (model.train() and T passes); mc_shared
rebuilds from (seed, t); randomness the harness does not sample is named."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from harness.errors import ConfigError
from harness.nets.attention import shared_attention
from harness.nets.subnetworks import ensemble, passes, predict
from harness.nets.torch_sites import find_sites, unsampled_randomness

T = 300


def usual_idiom(model: nn.Module, x: torch.Tensor, T: int, seed: int) -> torch.Tensor:
    """(T, N, C) logits of the idiom other libraries use: every module in train mode, T passes."""
    model.train()
    torch.manual_seed(seed)
    with torch.no_grad():
        z = torch.stack([model(x) for _ in range(T)])
    model.eval()
    return z


def harness_passes(model, x, mode, T, seed):
    with torch.no_grad():
        return torch.stack(list(passes(model, x, mode, T, seed)))


def assert_same_distribution(a: torch.Tensor, b: torch.Tensor) -> None:
    """Two sets of passes (T, N, C) of logits agree in distribution, example by example: the mean
    probabilities within their Monte-Carlo error, and the spread of the logits over passes."""
    pa, pb = torch.softmax(a.double(), 2), torch.softmax(b.double(), 2)
    se = ((pa.var(0) + pb.var(0)) / len(a)).sqrt()
    z = (pa.mean(0) - pb.mean(0)) / se.clamp_min(1e-12)
    assert (z**2).mean() < 1.7 and z.abs().max() < 5.5, (float((z**2).mean()), float(z.abs().max()))
    sa, sb = a.std(0).mean().item(), b.std(0).mean().item()
    assert sa > 1e-3 and abs(sa - sb) < 0.08 * sb, (sa, sb)


class Pooled(nn.Module):
    """A transformer layer (batch first or not) and a linear head on the mean over positions."""

    def __init__(self, layer: nn.Module, batch_first: bool = True, decoder: bool = False):
        super().__init__()
        self.layer, self.head, self.batch_first, self.decoder = layer, nn.Linear(16, 5), batch_first, decoder

    def forward(self, x):  # x (N, L, 16)
        h = x if self.batch_first else x.transpose(0, 1)
        h = self.layer(h, h[:, :3] if self.batch_first else h[:3]) if self.decoder else self.layer(h)
        return self.head(h.mean(1 if self.batch_first else 0))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.att, self.head = nn.MultiheadAttention(16, 4, dropout=0.3, batch_first=True), nn.Linear(16, 5)

    def forward(self, x):
        return self.head(self.att(x, x, x, need_weights=False)[0].mean(1))


class Mixed(nn.Module):
    """Channel dropout on 1-D signals, a transformer layer over positions, alpha and unit dropout."""

    def __init__(self):
        super().__init__()
        self.conv, self.channels = nn.Conv1d(3, 16, 3), nn.Dropout1d(0.3)
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.2, batch_first=True)
        self.alpha, self.drop, self.head = nn.AlphaDropout(0.1), nn.Dropout(0.4), nn.Linear(16, 5)

    def forward(self, x):  # x (N, 3, 12)
        h = self.channels(torch.relu(self.conv(x))).transpose(1, 2)
        h = self.alpha(F.selu(self.layer(h).mean(1)))
        return self.head(self.drop(h))


def seq(n=24):
    return torch.randn(n, 7, 16)


def img(n=24):
    return torch.randn(n, 3, 6, 6)


MODELS = {
    "encoder layer": lambda: (Pooled(nn.TransformerEncoderLayer(16, 4, 32, dropout=0.3, batch_first=True)), seq()),
    "encoder layer, sequence first": lambda: (
        Pooled(nn.TransformerEncoderLayer(16, 4, 32, dropout=0.3), batch_first=False),
        seq(),
    ),
    "decoder layer": lambda: (
        Pooled(nn.TransformerDecoderLayer(16, 4, 32, dropout=0.3, batch_first=True), decoder=True),
        seq(),
    ),
    "multihead attention": lambda: (Attention(), seq()),
    "dropout1d": lambda: (
        nn.Sequential(nn.Conv1d(3, 6, 3), nn.ReLU(), nn.Dropout1d(0.4), nn.Flatten(), nn.Linear(6 * 10, 5)),
        torch.randn(24, 3, 12),
    ),
    "dropout2d beside dropout": lambda: (
        nn.Sequential(
            nn.Conv2d(3, 6, 3),
            nn.ReLU(),
            nn.Dropout2d(0.5),
            nn.Flatten(),
            nn.Linear(96, 16),
            nn.Dropout(0.1),
            nn.Linear(16, 5),
        ),
        img(),
    ),
    "dropout3d": lambda: (
        nn.Sequential(nn.Conv3d(2, 4, 2), nn.ReLU(), nn.Dropout3d(0.4), nn.Flatten(), nn.Linear(4 * 27, 5)),
        torch.randn(24, 2, 4, 4, 4),
    ),
    "alpha dropout": lambda: (
        nn.Sequential(nn.Linear(10, 24), nn.SELU(), nn.AlphaDropout(0.2), nn.Linear(24, 5)),
        torch.randn(24, 10),
    ),
    "feature alpha dropout": lambda: (
        nn.Sequential(nn.Conv2d(3, 6, 3), nn.SELU(), nn.FeatureAlphaDropout(0.3), nn.Flatten(), nn.Linear(96, 5)),
        img(),
    ),
    "mix": lambda: (Mixed(), torch.randn(24, 3, 12)),
}


@pytest.fixture(params=list(MODELS))
def model_and_x(request):
    torch.manual_seed(0)
    model, x = MODELS[request.param]()
    return model.eval(), x


@pytest.mark.slow
def test_both_modes_sample_like_the_usual_idiom(model_and_x):
    """Per example, a shared mask is a mask: both modes have the idiom's distribution."""
    model, x = model_and_x
    reference = usual_idiom(model, x, T, seed=11)
    for mode in ("mc_per_example", "mc_shared"):
        assert_same_distribution(harness_passes(model, x, mode, T, seed=3), reference)
    assert not model.training and torch.backends.mha.get_fastpath_enabled()  # modes and torch's switch restored


def test_mc_shared_rebuilds_from_seed_and_t_alone(model_and_x):
    """Pass t is the same subnetwork whichever other passes and examples come with it."""
    model, x = model_and_x
    four = harness_passes(model, x, "mc_shared", 4, seed=5)
    again = harness_passes(model, x[:9], "mc_shared", 4, seed=5)
    assert torch.allclose(four[:, :9], again, atol=1e-5)
    other = harness_passes(model, x, "mc_shared", 4, seed=6)
    assert not torch.allclose(four, other, atol=1e-3)
    assert not torch.allclose(four[0], four[3], atol=1e-3)
    # one mask for all examples: an example's pass equals that example passed alone
    alone = torch.cat([harness_passes(model, x[i : i + 1], "mc_shared", 4, seed=5) for i in range(3)], dim=1)
    assert torch.allclose(four[:, :3], alone, atol=1e-5)


@pytest.mark.slow
def test_channel_dropout_is_not_unit_dropout():
    """The comparison can fail: the same net with unit dropout in place of channel dropout has
    another spread, far beyond the tolerance the distribution test allows."""
    torch.manual_seed(0)
    pooled = (nn.Conv2d(3, 6, 3), nn.ReLU(), nn.Dropout2d(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
    channel = nn.Sequential(*pooled).eval()
    units = nn.Sequential(*[nn.Dropout(0.5) if isinstance(m, nn.Dropout2d) else m for m in channel]).eval()
    x = img()
    a, b = harness_passes(channel, x, "mc_shared", 200, 0), harness_passes(units, x, "mc_shared", 200, 0)
    assert a.std(0).mean() > 2 * b.std(0).mean()  # averaging over positions thins unit dropout's noise
    with pytest.raises(AssertionError):
        assert_same_distribution(a, usual_idiom(units, x, 200, seed=1))
    assert_same_distribution(a, usual_idiom(channel, x, 200, seed=1))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(batch_first=True),
        dict(batch_first=False),
        dict(batch_first=True, kdim=12, vdim=10),
        dict(batch_first=True, add_bias_kv=True, add_zero_attn=True),
        dict(batch_first=False, bias=False),
    ],
)
def test_written_out_attention_equals_torch_attention(kwargs):
    """With nothing dropped, the attention of mc_shared is torch's own, masks and weights included."""
    torch.manual_seed(0)
    m = nn.MultiheadAttention(16, 4, dropout=0.0, **kwargs).eval()
    N, L, S = 5, 6, 8
    kd, vd = kwargs.get("kdim", 16), kwargs.get("vdim", 16)

    def lay(n, length, d):
        return torch.randn(n, length, d) if kwargs["batch_first"] else torch.randn(length, n, d)

    q, k, v = lay(N, L, 16), lay(N, S, kd), lay(N, S, vd)
    padding = torch.zeros(N, S, dtype=torch.bool)
    padding[:, -2:] = True
    causal = torch.triu(torch.full((L, S), float("-inf")), diagonal=1)
    keep_all = lambda shape: torch.ones(shape, dtype=torch.bool)  # noqa: E731
    cases = [
        dict(),
        dict(key_padding_mask=padding),
        dict(attn_mask=causal),
        dict(attn_mask=causal.isinf(), key_padding_mask=padding),
        dict(attn_mask=torch.randn(N * 4, L, S)),
        dict(average_attn_weights=False),
    ]
    with torch.no_grad():
        for case in cases:
            want = m(q, k, v, **case)
            got = shared_attention(m, keep_all, q, k, v, **case)
            assert torch.allclose(got[0], want[0], atol=1e-5) and torch.allclose(got[1], want[1], atol=1e-6), case
        if kd == 16 and vd == 16:  # unbatched: one example (L, E)
            one = q[0] if kwargs["batch_first"] else q[:, 0]
            want, got = m(one, one, one), shared_attention(m, keep_all, one, one, one)
            assert torch.allclose(got[0], want[0], atol=1e-5) and torch.allclose(got[1], want[1], atol=1e-6)


def test_attention_dropout_of_transformer_layers_is_a_site():
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.3)
    sites = {s.name: (s.kind, s.p, s.batch_dim) for s in find_sites(layer)}
    assert sites == {
        "self_attn": ("attention", 0.3, 0),
        "dropout1": ("dropout", 0.3, 1),
        "dropout2": ("dropout", 0.3, 1),
        "dropout": ("dropout", 0.3, 1),
    }


class Functional(nn.Module):
    def forward(self, x):
        return F.dropout(x, 0.5, self.training)


class Noise(nn.Module):
    def forward(self, x):
        return x + torch.randn_like(x)  # random in every mode


class Net(nn.Module):
    def __init__(self, inner: nn.Module, own_dropout: bool = False):
        super().__init__()
        self.fc1, self.bn, self.inner, self.drop, self.fc2 = (
            nn.Linear(8, 16),
            nn.BatchNorm1d(16),
            inner,
            nn.Dropout(0.3),
            nn.Linear(16, 3),
        )
        self.own_dropout = own_dropout

    def forward(self, x):
        h = self.inner(self.bn(torch.relu(self.fc1(x))))
        if self.own_dropout:
            h = F.dropout(h, 0.2, self.training)
        return self.fc2(self.drop(h))


@pytest.mark.parametrize(
    "net, named",
    [
        (Net(Functional()), "inner (Functional)"),
        (Net(nn.Sequential(nn.Identity(), Noise())), "inner.1 (Noise)"),
        (Net(nn.Identity(), own_dropout=True), "(the model) (Net)"),
    ],
)
def test_randomness_the_harness_does_not_sample_is_named(net, named):
    torch.manual_seed(0)
    net.eval()
    stats = net.bn.running_mean.clone()
    x = torch.randn(10, 8)
    assert unsampled_randomness(net, x, find_sites(net)) == [named]
    for mode in ("mc_shared", "mc_per_example"):
        with pytest.raises(
            ConfigError, match=rf"samples nothing: {named.replace('(', '.').replace(')', '.')}\. .*allow_unsampled=True"
        ):
            predict(net, x, mode, T=3)
        with pytest.warns(RuntimeWarning, match="allow_unsampled"):
            if (
                isinstance(net.inner, nn.Sequential) and mode == "mc_shared"
            ):  # random even in eval mode: no subnetwork is reproducible
                with pytest.raises(ConfigError, match="in a batch of two than alone"):
                    ensemble(net, x, mode, T=3, allow_unsampled=True)
                continue
            acc = ensemble(net, x, mode, T=3, allow_unsampled=True)
        assert acc.k == 3
    assert torch.equal(net.bn.running_mean, stats) and not net.training  # batch norm left alone


def test_a_model_random_only_in_its_sites_passes_the_check():
    torch.manual_seed(0)
    net = Net(nn.Identity()).eval()
    assert unsampled_randomness(net, torch.randn(10, 8), find_sites(net)) == []


def test_nothing_to_sample_is_an_error():
    x = torch.randn(6, 8)
    zero = nn.Sequential(nn.Linear(8, 4), nn.Dropout(0.0), nn.Linear(4, 3))
    with pytest.raises(ConfigError, match=r"every dropout site of Sequential has p = 0 \(1 \(Dropout, p=0\)\)"):
        predict(zero, x, "mc_shared")
    with pytest.raises(ConfigError, match="contains no dropout module"):
        predict(nn.Linear(8, 3), x, "mc_per_example")
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    with pytest.raises(ConfigError, match="self_attn .MultiheadAttention, p=0."):
        predict(nn.Sequential(layer, nn.Flatten(), nn.Linear(16 * 7, 3)), seq(4), "mc_per_example")
    assert torch.allclose(predict(zero, x), torch.softmax(zero.eval()(x), 1))  # weight scaling needs no site


def test_unknown_dropout_kinds_are_refused_by_name():
    from torch.nn.modules.dropout import _DropoutNd

    class Mine(_DropoutNd):
        def forward(self, x):
            return x

    with pytest.raises(ConfigError, match=r"1 \(Mine\) is a dropout module of a kind the harness does not know"):
        predict(nn.Sequential(nn.Linear(8, 3), Mine(0.5)), torch.randn(4, 8), "mc_shared")


def test_a_mask_needs_a_batch_dimension():
    """A site whose input does not carry the examples on its batch dimension cannot share a mask."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.3)  # sequence first, but fed (N, L, E)
    model = nn.Sequential(layer, nn.Flatten(), nn.Linear(7 * 16, 3)).eval()
    with pytest.raises(
        ConfigError, match=r"site 0.dropout1 .* dimension 1 is not the batch of \d+ examples; use mode='mc_per_example'"
    ):
        predict(model, seq(10), "mc_shared", T=2)


def test_torch_random_state_is_left_as_it_was():
    torch.manual_seed(0)
    model, x = MODELS["mix"]()
    state = torch.get_rng_state()
    for mode in ("mc_per_example", "mc_shared"):
        predict(model, x, mode, T=3)
    assert torch.equal(state, torch.get_rng_state())


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.layer, self.head = (
            nn.Embedding(50, 16),
            nn.TransformerEncoderLayer(16, 4, 32, 0.3, batch_first=True),
            nn.Linear(16, 3),
        )

    def forward(self, ids):
        return self.head(self.layer(self.emb(ids)).mean(1))


def test_token_ids_in_probabilities_out():
    torch.manual_seed(0)
    p = predict(Tokens().eval(), torch.randint(0, 50, (6, 5)), "mc_shared", T=4)
    assert p.dtype == torch.float32 and torch.allclose(p.sum(1), torch.ones(6)) and p.min() > 0


class SpatialDropout(nn.Dropout2d):
    """The NLP idiom: whole embedding channels of (N, L, K) dropped, through Dropout2d."""

    def forward(self, x):
        return super().forward(x.unsqueeze(2).permute(0, 3, 2, 1)).permute(0, 3, 2, 1).squeeze(2)


def test_a_subclass_with_its_own_forward_is_sampled_by_its_forward_or_refused():
    torch.manual_seed(0)
    model = nn.Sequential(SpatialDropout(0.4), nn.Flatten(), nn.Linear(7 * 16, 5)).eval()
    x = seq()
    with pytest.raises(
        ConfigError, match=r"mc_shared cannot sample 0 \(SpatialDropout, p=0.4\): the class overrides torch's forward"
    ):
        predict(model, x, "mc_shared", T=2)
    assert_same_distribution(harness_passes(model, x, "mc_per_example", T, seed=2), usual_idiom(model, x, T, seed=9))


class Gated(nn.Module):
    def __init__(self, unused: bool = False):
        super().__init__()
        self.fc, self.drop, self.spare, self.head = nn.Linear(8, 16), nn.Dropout(0.5), nn.Dropout(0.3), nn.Linear(16, 3)
        self.unused = unused

    def forward(self, x):
        h = torch.relu(self.fc(x))
        if self.training or self.unused:
            h = self.drop(h)
        return self.head(h)


def test_sites_that_never_run_are_caught():
    x = torch.randn(6, 8)
    for mode in ("mc_shared", "mc_per_example"):
        with pytest.raises(
            ConfigError, match=r"no dropout site of Gated ran while sampling \(drop .Dropout, p=0.5., spare"
        ):
            predict(Gated().eval(), x, mode, T=2)
        with pytest.warns(RuntimeWarning, match=r"did not run in a pass.*: spare \(Dropout, p=0.3\)"):
            predict(Gated(unused=True).eval(), x, mode, T=2)


class RunningMean(nn.Module):
    """A hand-written normalisation that rebinds its buffer in train mode."""

    def __init__(self, c):
        super().__init__()
        self.register_buffer("mean", torch.zeros(c))

    def forward(self, x):
        if self.training:
            self.mean = 0.9 * self.mean + 0.1 * x.mean(0)
            return x - x.mean(0)
        return x - self.mean


def test_the_check_leaves_rebound_buffers_as_they_were():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), RunningMean(16), nn.Dropout(0.3), nn.Linear(16, 3)).eval()
    x = torch.randn(6, 8)
    before, buffer = predict(model, x), model[1].mean
    assert unsampled_randomness(model, x, find_sites(model)) == []  # deterministic: rebinding is no randomness
    predict(model, x, "mc_shared", T=2)
    assert model[1].mean is buffer and torch.equal(predict(model, x), before)


class OneAtATime(nn.Module):
    def __init__(self):
        super().__init__()
        self.att, self.head = nn.MultiheadAttention(16, 4, dropout=0.3), nn.Linear(16, 3)

    def forward(self, x):
        return torch.stack([self.head(self.att(e, e, e)[0].mean(0)) for e in x])


class SequenceFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop, self.head = nn.Dropout(0.3), nn.Linear(16, 3)

    def forward(self, x):  # (N, L, E) read as (L, N, E): examples and positions swapped
        return self.head(self.drop(x.transpose(0, 1)).transpose(0, 1).mean(1))


@pytest.mark.parametrize(
    "model", [OneAtATime(), SequenceFirst()], ids=["loop over examples", "positions read as examples"]
)
def test_masks_that_would_not_be_shared_by_the_examples_are_refused(model):
    torch.manual_seed(0)
    with pytest.raises(
        ConfigError, match="gives example 1 other logits in a batch of two than alone|dimension 0 is not the batch"
    ):
        predict(model.eval(), torch.randn(7, 7, 16), "mc_shared", T=2)


def test_unbatched_channel_input_is_refused_in_mc_shared():
    model = nn.Sequential(nn.Dropout3d(0.3), nn.Flatten(0), nn.Linear(2 * 27, 3)).eval()
    with pytest.raises(
        ConfigError,
        match=r"site 0 \(Dropout3d, p=0.3\) gets input of shape \(2, 3, 3, 3\), which torch reads as one example",
    ):
        predict(model, torch.randn(2, 3, 3, 3), "mc_shared", T=2)


def test_interleaved_samplers_leave_no_state_behind():
    torch.manual_seed(0)
    model, x = MODELS["mix"]()
    model.eval()
    alone = harness_passes(model, x, "mc_per_example", 3, seed=0)
    with torch.no_grad():
        pairs = list(zip(passes(model, x, "mc_per_example", 3, 0), passes(model, x, "mc_shared", 3, 1), strict=False))
    assert torch.equal(torch.stack([a for a, _ in pairs]), alone)
    assert not any(m.training for m in model.modules()) and torch.backends.mha.get_fastpath_enabled()


class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.drop, self.head = nn.Linear(8, 16), nn.Dropout(0.3), nn.Linear(16, 3)

    def forward(self, x):
        out = self.head(self.drop(input=self.fc(x)))
        return out, out.softmax(1)


def test_outputs_that_are_not_logits_and_keyword_inputs():
    torch.manual_seed(0)
    x = torch.randn(5, 8)
    with pytest.raises(
        ConfigError, match=r"Pair returned a tuple; sampling needs logits \(N, C\) for the \d+ examples"
    ):
        predict(Pair().eval(), x, "mc_shared", T=2)

    class First(Pair):
        def forward(self, x):
            return super().forward(x)[0]

    assert predict(First().eval(), x, "mc_shared", T=2).shape == (5, 3)  # dropout called by keyword is sampled too


class HandNorm(nn.Module):
    def forward(self, x):
        if self.training and len(x) < 2:
            raise ValueError("Expected more than 1 value per channel when training")
        return x


def test_a_check_that_cannot_run_says_why():
    model = nn.Sequential(nn.Linear(8, 4), HandNorm(), nn.Dropout(0.3), nn.Linear(4, 3)).eval()
    with pytest.raises(
        ConfigError,
        match=r"runs Sequential in train mode .* on 1 example\(s\), and it failed: ValueError: Expected more",
    ):
        predict(model, torch.randn(1, 8), "mc_shared", T=2)
