"""Co-adaptation: do dropout's units behave more independently? Measured on held-out activations.

Activations are the post-activation outputs of every hidden layer (and conv block) of the
weight-scaled network. Conv blocks (2-D over images, 1-D over signals) are reduced to one value
per channel, the mean over space, so a unit is a feature map.

Measures per layer (`layer_measures`), each a pure function of an activation matrix (N, U):
correlations (one matrix product), DeCov (Cogswell et al. 2016), effective dimensionality, sparsity;
and, for fully connected layers, dependence by ablation (`ablation`), which correlation alone
cannot show. Dead or constant units (zero variance on the held-out set) are excluded from
correlations and counted in their own column.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from harness.nets.models import DropoutNet, linear_stage

HIST_BINS = np.linspace(-1.0, 1.0, 41)  # histogram of r: 40 bins of width 0.05
CORR_SAMPLE_UNITS = 48  # the correlation matrix of a layer's first units is kept for heat maps
ACTIVATION_BINS = np.linspace(0.0, 5.0, 51)  # histogram of activation values; the last bin takes all above
FEATURE_UNITS = 64


@torch.no_grad()
def capture(model: DropoutNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Held-out activations per layer, {layer: (N, U)}: hidden layers as they are, conv blocks
    ((N, C, H, W) or, over signals, (N, C, L)) as the spatial mean of each channel. Layers are
    named by the site their units feed."""
    out = {}
    for name, a in model.hidden_activations(x).items():
        out[name] = a.mean(dim=tuple(range(2, a.dim()))) if a.dim() > 2 else a
    return out


def alive_units(a: torch.Tensor, tol: float = 1e-12) -> torch.Tensor:
    """Bool (U,): units whose activation varies over the examples."""
    return a.double().var(0, unbiased=False) > tol


@torch.no_grad()
def correlation_matrix(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pearson correlations of the alive units over examples, as one matrix product.

    a: (N, U). Returns (r (A, A) float64 over the A alive units, alive mask (U,))."""
    alive = alive_units(a)
    z = a[:, alive].double()
    z = z - z.mean(0)
    z = z / z.norm(dim=0)
    r = (z.t() @ z).clamp_(-1.0, 1.0)
    return r, alive


def covariance(a: torch.Tensor) -> torch.Tensor:
    """Covariance of units over examples, (U, U) float64 (population normalisation)."""
    z = a.double() - a.double().mean(0)
    return z.t() @ z / a.shape[0]


def decov(c: torch.Tensor) -> float:
    """Cogswell et al.'s DeCov loss: 0.5 * (||C||_F^2 - ||diag C||^2)."""
    return 0.5 * ((c**2).sum() - (c.diagonal() ** 2).sum()).item()


def participation_ratio(c: torch.Tensor) -> float:
    """(sum of eigenvalues)^2 / sum of squared eigenvalues = tr(C)^2 / ||C||_F^2: 1 for a rank-1
    representation, U for U independent units of equal variance."""
    fro = (c**2).sum().item()
    return c.trace().item() ** 2 / fro if fro > 0 else 0.0


def effective_rank(c: torch.Tensor) -> float:
    """exp of the entropy of the normalised covariance spectrum (Roy and Vetterli 2007)."""
    lam = torch.linalg.eigvalsh(c).clamp_min(0)
    total = lam.sum()
    if total <= 0:
        return 0.0
    p = lam / total
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


def layer_measures(a: torch.Tensor) -> tuple[dict[str, float], np.ndarray]:
    """Every correlation-based measure of one layer's activations (N, U).

    Returns ({metric: value}, histogram counts of r over distinct pairs on HIST_BINS). With fewer
    than two alive units the correlation summaries are NaN: a dead layer is not a decorrelated one.
    """
    r, alive = correlation_matrix(a)
    n_alive = int(alive.sum())
    iu = torch.triu_indices(n_alive, n_alive, offset=1)
    pairs = r[iu[0], iu[1]]
    absr = pairs.abs()
    c = covariance(a)
    total_var = c.trace().item()
    d = decov(c)
    out = {
        "n_units": a.shape[1],
        "n_dead": a.shape[1] - n_alive,
        "mean_abs_r": absr.mean().item() if len(pairs) else math.nan,
        "median_abs_r": absr.quantile(0.5).item()
        if len(pairs)
        else math.nan,  # the usual median (torch's median is the lower one)
        "p90_abs_r": absr.quantile(0.9).item() if len(pairs) else math.nan,
        "frac_abs_r_gt_0.5": (absr > 0.5).double().mean().item() if len(pairs) else math.nan,
        "decov": d,
        "decov_normalized": d / total_var**2 if total_var > 0 else math.nan,
        "participation_ratio": participation_ratio(c),
        "effective_rank": effective_rank(c),
        "mean_activation": a.double().mean().item(),
        "zero_fraction": (a == 0).double().mean().item(),
    }
    hist, _ = np.histogram(pairs.cpu().numpy(), bins=HIST_BINS)
    return out, hist


@torch.no_grad()
def ablation(
    model: DropoutNet, x: torch.Tensor, y: torch.Tensor, layer: str, n_pairs: int = 200, seed: int = 0, batch: int = 16
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dependence by removal in a fully connected layer.

    Removing a unit sets its activation to zero in the weight-scaled network. For each unit i,
    delta_i = loss(without i) - loss; for `n_pairs` sampled pairs of alive units,
    interaction = delta_ij - delta_i - delta_j (0 when the units act independently on the loss).
    The consuming layer's pre-activations change by a rank-one term per removed unit, so a batch of
    removals costs one broadcast, not a forward pass each. Returns (units: unit, delta;
    pairs: unit_i, unit_j, delta_ij, interaction).
    """
    k = next(i for i, s in enumerate(model.sites) if s.name == layer)
    # float64 throughout: an interaction is a second difference of losses that move by ~1e-5
    model = copy.deepcopy(model).double().eval()
    x = x.double()
    stage = linear_stage(model.ops[k])
    if stage is None:
        raise ValueError(f"layer {layer}: ablation needs a fully connected consumer")
    h = model.hidden_activations(x)[layer]  # (N, U): the site's input
    site = model.sites[k]
    f = site.keep if site.convention == "classic" else 1.0  # the site's evaluation-mode factor
    w = stage.weight * f  # (out, U)
    z = torch.addmm(stage.bias, h, w.t())  # (N, out) pre-activations of the consuming layer

    def loss_from(zb: torch.Tensor) -> torch.Tensor:
        """Mean loss of each of B variants of the consuming layer's pre-activations (B, N, out)."""
        b = len(zb)
        if stage.act is not None:
            zb = stage.act(zb)
        flat = zb.reshape(-1, zb.shape[-1])
        logits = model.forward_from(k + 1, flat) if k + 1 < len(model.sites) else flat
        ce = F.cross_entropy(logits, y.repeat(b), reduction="none")
        return ce.view(b, len(y)).mean(1)

    def losses(sets: torch.Tensor) -> torch.Tensor:
        """Loss with each row of `sets` (B, m) of unit indices removed; (B,)."""
        out = []
        for s in range(0, len(sets), batch):
            idx = sets[s : s + batch]  # (b, m)
            delta = torch.einsum("nbm,bmo->bno", h[:, idx], w.t()[idx])  # removed units' contribution
            out.append(loss_from(z[None] - delta))
        return torch.cat(out)

    base = loss_from(z[None].clone()).item()  # the same computation with nothing removed
    units = torch.arange(h.shape[1], device=x.device)
    single = losses(units[:, None]) - base
    alive = torch.nonzero(alive_units(h)).squeeze(1).cpu()
    rng = np.random.default_rng(seed)
    if len(alive) >= 2:
        n_possible = len(alive) * (len(alive) - 1) // 2
        chosen = set()
        while len(chosen) < min(n_pairs, n_possible):
            i, j = rng.choice(len(alive), size=2, replace=False)
            chosen.add((int(alive[min(i, j)]), int(alive[max(i, j)])))
        pairs = torch.tensor(sorted(chosen), device=x.device)
        both = losses(pairs) - base
        inter = both - single[pairs[:, 0]] - single[pairs[:, 1]]
    else:
        pairs = torch.zeros(0, 2, dtype=torch.long)
        both = inter = torch.zeros(0, dtype=torch.float64)
    unit_df = pd.DataFrame({"unit": units.cpu().numpy(), "delta": single.cpu().numpy()})
    pair_df = pd.DataFrame(
        {
            "unit_i": pairs[:, 0].cpu().numpy(),
            "unit_j": pairs[:, 1].cpu().numpy(),
            "delta_ij": both.cpu().numpy(),
            "interaction": inter.cpu().numpy(),
        }
    )
    return unit_df, pair_df


def feature_grid(model: DropoutNet, n: int = 64, pad: int = 1) -> np.ndarray:
    """First-layer features of an MLP on images as one grayscale image (Srivastava et al. 2014,
    Figure 7): the incoming weights of the first n hidden units, each scaled to [0, 1], tiled."""
    if model.kind != "mlp" or len(model.input_shape) != 3:
        raise ValueError("feature grids need an MLP on image data")
    return tile_images(_scaled_features(model, n), pad)


def tile_images(w: np.ndarray, pad: int = 1) -> np.ndarray:
    """Tile images (n, h, w) into one near-square grid with `pad` white pixels between them."""
    _, hh, ww = w.shape
    cols = int(math.ceil(math.sqrt(len(w))))
    rows = int(math.ceil(len(w) / cols))
    grid = np.ones((rows * (hh + pad) + pad, cols * (ww + pad) + pad))
    for i, img in enumerate(w):
        r, q = divmod(i, cols)
        grid[pad + r * (hh + pad) : pad + r * (hh + pad) + hh, pad + q * (ww + pad) : pad + q * (ww + pad) + ww] = img
    return grid


def feature_table(model: DropoutNet, n: int = FEATURE_UNITS) -> pd.DataFrame:
    """The first-layer features of an MLP as a tidy table: layer "input", unit, y, x, value (the
    unit's incoming weights, scaled to [0, 1] per unit, channels averaged). On images (C, H, W) y
    and x are the pixel's row and column; on signals (C, L) and flat features (D,) y is 0 and x
    the position or feature index, so one table serves every kind of data. Empty for a CNN."""
    cols = ["layer", "unit", "y", "x", "value"]
    if model.kind != "mlp":
        return pd.DataFrame(columns=cols)
    w = _scaled_features(model, n)  # (units, H, W) for images, (units, 1, L or D) otherwise
    u, yy, xx = np.meshgrid(np.arange(w.shape[0]), np.arange(w.shape[1]), np.arange(w.shape[2]), indexing="ij")
    return pd.DataFrame({"layer": "input", "unit": u.ravel(), "y": yy.ravel(), "x": xx.ravel(), "value": w.ravel()})


def _scaled_features(model: DropoutNet, n: int) -> np.ndarray:
    """Incoming weights of the first n units of an MLP's first layer, (n, H, W) for images and
    (n, 1, L or D) for signals and flat features, channels averaged, each unit scaled to [0, 1]."""
    w = model.consumer(0).weight.detach().cpu()
    shape = model.input_shape
    if len(shape) == 1:
        w = w[:n].view(-1, 1, shape[0])
    else:
        c, *size = shape
        w = w[:n].view(-1, c, *size).mean(1)  # average colour channels
        if len(size) == 1:
            w = w[:, None]
    lo, hi = w.amin(dim=(1, 2), keepdim=True), w.amax(dim=(1, 2), keepdim=True)
    return ((w - lo) / (hi - lo).clamp_min(1e-12)).numpy()


def analyze_model(
    model: DropoutNet, x: torch.Tensor, y: torch.Tensor, run_id: str = "", n_pairs: int = 200, seed: int = 0
) -> dict[str, pd.DataFrame]:
    """All co-adaptation measures of one network on held-out (x, y), as tidy tables:

    coadaptation: run_id, layer, metric, value (ablation summaries added for fully connected layers);
    correlation_hist: run_id, layer, bin_left, bin_right, count;
    units: run_id, layer, unit, mean_activation, zero_fraction, ablation_delta (NaN for conv blocks);
    pairs: run_id, layer, unit_i, unit_j, delta_ij, interaction;
    corr_sample: run_id, layer, unit_i, unit_j, r among the layer's first CORR_SAMPLE_UNITS alive units;
    activation_hist: run_id, layer, bin_left, bin_right, count of activation values;
    features: run_id, layer, unit, y, x, value: first-layer features of an MLP (`feature_table`).
    """
    acts = capture(model, x)
    rows, hists, units, pairs, samples, act_hists = [], [], [], [], [], []
    for layer, a in acts.items():
        measures, hist = layer_measures(a)
        r, alive = correlation_matrix(a[:, :CORR_SAMPLE_UNITS])
        ids = torch.nonzero(alive).squeeze(1).cpu().numpy()
        ii, jj = np.meshgrid(ids, ids, indexing="ij")
        samples.append(
            pd.DataFrame({"layer": layer, "unit_i": ii.ravel(), "unit_j": jj.ravel(), "r": r.cpu().numpy().ravel()})
        )
        unit = pd.DataFrame(
            {
                "unit": np.arange(a.shape[1]),
                "mean_activation": a.double().mean(0).cpu().numpy(),
                "zero_fraction": (a == 0).double().mean(0).cpu().numpy(),
            }
        )
        k = next(i for i, s in enumerate(model.sites) if s.name == layer)
        if linear_stage(model.ops[k]) is not None and model.sites[k].unit_shape == (a.shape[1],):
            u, p = ablation(model, x, y, layer, n_pairs=n_pairs, seed=seed)
            unit["ablation_delta"] = u["delta"].to_numpy()
            measures |= {
                "ablation_delta_mean": float(u["delta"].mean()),
                "interaction_mean": float(p["interaction"].mean()) if len(p) else 0.0,
                "interaction_abs_mean": float(p["interaction"].abs().mean()) if len(p) else 0.0,
            }
            pairs.append(p.assign(layer=layer))
        else:
            unit["ablation_delta"] = np.nan
        rows += [(layer, m, float(v)) for m, v in measures.items()]
        hists.append(
            pd.DataFrame({"layer": layer, "bin_left": HIST_BINS[:-1], "bin_right": HIST_BINS[1:], "count": hist})
        )
        units.append(unit.assign(layer=layer))
        counts, _ = np.histogram(
            np.clip(a.double().cpu().numpy().ravel(), ACTIVATION_BINS[0], ACTIVATION_BINS[-1]), bins=ACTIVATION_BINS
        )
        act_hists.append(
            pd.DataFrame(
                {"layer": layer, "bin_left": ACTIVATION_BINS[:-1], "bin_right": ACTIVATION_BINS[1:], "count": counts}
            )
        )
    tables = {
        "coadaptation": pd.DataFrame(rows, columns=["layer", "metric", "value"]),
        "correlation_hist": pd.concat(hists, ignore_index=True),
        "units": pd.concat(units, ignore_index=True),
        "pairs": pd.concat(pairs, ignore_index=True)
        if pairs
        else pd.DataFrame(columns=["unit_i", "unit_j", "delta_ij", "interaction", "layer"]),
        "corr_sample": pd.concat(samples, ignore_index=True),
        "activation_hist": pd.concat(act_hists, ignore_index=True),
        "features": feature_table(model),
    }
    for name, df in tables.items():
        cols = ["layer"] + [c for c in df.columns if c != "layer"]
        df = df[cols]
        df.insert(0, "run_id", run_id)
        tables[name] = df
    return tables


COADAPT_TABLES = ("coadaptation", "correlation_hist", "units", "pairs", "corr_sample", "activation_hist", "features")


@dataclass(frozen=True)
class CoadaptSettings:
    """Co-adaptation measurement of a run: held-out split, ablation pairs per layer, their seed."""

    split: str = "test"
    n_pairs: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        from harness.errors import ConfigError

        if self.split not in ("test", "val"):
            raise ConfigError(f"split={self.split!r}: co-adaptation is measured on held-out data, test or val")
        if self.n_pairs < 0:
            raise ConfigError(f"n_pairs={self.n_pairs}: must be >= 0")


def compare(measures: pd.DataFrame, runs: pd.DataFrame, by: str, baseline=None) -> pd.DataFrame:
    """Compare groups of runs on every (layer, metric).

    measures: tidy co-adaptation rows (run_id, layer, metric, value); runs: the runs table; `by`: a
    runs-table column defining the groups (e.g. p_drop_hidden); `baseline`: the group every other is
    compared with (default: the smallest value). Per layer, metric and group: n and mean of both
    groups (runs; NaN values, such as mean |r| of a layer with fewer than two live units, left
    out), the difference (group - baseline) with its 95% Welch-t interval, the Mann-Whitney U test
    with its p-value and the Benjamini-Hochberg adjusted p across the whole table (an exploratory
    family), and the groups' mean train and test error, so a difference in correlation can be read
    beside a difference in fit.
    """
    from harness.stats.intervals import benjamini_hochberg, diff_interval, mann_whitney

    if by not in runs.columns:
        raise ValueError(f"runs have no column {by!r}; columns: {', '.join(runs.columns)}")
    df = measures.merge(runs[["run_id", by, "train_error", "test_error"]], on="run_id")
    levels = sorted(df[by].unique())
    if len(levels) < 2:
        raise ValueError(
            f"the runs with co-adaptation tables have {len(levels)} value{'s' * (len(levels) != 1)} of {by} "
            f"({', '.join(map(repr, levels)) or 'none'}): a comparison needs at least two groups; measure runs of "
            f"another {by} (`python -m harness coadapt`), or choose another column with --by"
        )
    if baseline is None:
        baseline = levels[0]
    if baseline not in levels:
        raise ValueError(f"baseline {baseline!r} is not among the values of {by}: {levels}")
    fit = runs.groupby(by)[["train_error", "test_error"]].mean()
    out = []
    for (layer, metric), g in df.groupby(["layer", "metric"], sort=False):
        g = g.dropna(subset=["value"])
        a = g[g[by] == baseline]["value"].to_numpy()
        for level in levels:
            if level == baseline:
                continue
            b = g[g[by] == level]["value"].to_numpy()
            d = diff_interval(a, b)
            u, p = mann_whitney(a, b)
            out.append(
                {
                    "layer": layer,
                    "metric": metric,
                    by: level,
                    "baseline": baseline,
                    "n_baseline": len(a),
                    "n": len(b),
                    "mean_baseline": float(a.mean()) if len(a) else math.nan,
                    "mean": float(b.mean()) if len(b) else math.nan,
                    "diff": d.estimate,
                    "ci_low": d.low,
                    "ci_high": d.high,
                    "method": d.method,
                    "mannwhitney_u": u,
                    "p_value": p,
                    "test_error_baseline": fit.loc[baseline, "test_error"],
                    "test_error": fit.loc[level, "test_error"],
                    "train_error_baseline": fit.loc[baseline, "train_error"],
                    "train_error": fit.loc[level, "train_error"],
                }
            )
    table = pd.DataFrame(out)
    if not table.empty:
        table.insert(table.columns.get_loc("p_value") + 1, "p_adjusted", benjamini_hochberg(table["p_value"]))
    return table
