"""One trained run under distribution shift and on unseen classes, as tidy tables.

For every evaluation set of `harness.data.shifts` (the test split, its rotations and corruptions, the
unseen sets) the run is evaluated by

- weight_scaled (k = 0): the deterministic net;
- temperature_scaled (k = 0): its logits divided by the temperature fitted on the validation split
  (`harness.measures.calibration`);
- mc_shared and mc_per_example (dropout nets only; the latter on the kinds of set in `per_example`):
  averages of k sampled subnetworks at k = `members` (the size of the deep ensembles it is compared with),
  k at equal test-time compute (`equal_compute_k`) and k = T; with each, the ensemble's loss decomposition
  (`harness.measures.diversity`).

Tables (`evaluate_robustness` returns them by name):

- shift: run_id, set, shift, intensity, mode, k, metric, value. Metrics: error, nll, brier, ece,
  overconfidence (mean confidence minus accuracy: signed calibration, positive when overconfident),
  entropy (labelled sets; unseen sets: entropy only) and, for averages, the decomposition terms;
  the fitted temperature as metric `temperature` of set `val` (and, for dropout nets, the k at
  equal test-time compute as metric `equal_compute_k`).
- ood: run_id, set (an unseen set), mode, k, score, metric (auroc, aupr, fpr95), value: the
  in-distribution test examples against the unseen ones, per score of `harness.measures.ood`, at each
  mode's largest k.
- entropy_hist: run_id, set, shift, intensity, mode, k, bin, low, high, count: predictive entropy
  histograms (nats, `bins` equal bins on [0, log C]) at each mode's largest k.
- predictions: run_id, set, shift, intensity, mode, k, example, label (-1 when unseen), logp_0 ...
  logp_{C-1}: log-probabilities (float32) of the weight-scaled net (mode weight_scaled, k 0) and,
  for dropout nets, of the average of its first `member_k` = T // members subnetworks (mode
  mc_shared), from which `harness.inference.ensembles` builds ensembles of runs without touching their
  checkpoints: M nets each averaged over T // M subnetworks use T subnetworks in all, as many as
  one net at k = T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from harness.data.datasets import Dataset
from harness.data.registry import DataInfo
from harness.data.shifts import (
    ALL_CORRUPTIONS,
    ANGLES,
    CORRUPTIONS,
    GENERIC_CORRUPTIONS,
    MNIST1D_CORRUPTIONS,
    SEVERITIES,
    UNSEEN,
    EvalSet,
    corruption_fits,
    evaluation_sets,
    rotations_fit,
    unseen_fits,
)
from harness.errors import ConfigError
from harness.measures.calibration import fit_temperature
from harness.measures.diversity import decomposition
from harness.measures.metrics import EnsembleAccumulator, entropies, point_metrics
from harness.measures.ood import SCORES, detection, scores
from harness.nets.models import DropoutNet
from harness.nets.subnetworks import SubnetworkEngine, sample_masks, subnetwork_seed
from harness.progress import progress_bar

SHIFT_KINDS = ("none", "rotation", "corruption", "unseen")


@dataclass(frozen=True)
class RobustnessSettings:
    """What the robustness evaluation measures: T subnetworks per average, `members` the deep
    ensembles' size (also the subnetworks averaged at equal members), the sets of `harness.data.shifts`."""

    T: int = 50
    members: int = 5
    per_example: tuple[str, ...] = SHIFT_KINDS  # the kinds of set that mc_per_example also runs on (the costly idiom)
    angles: tuple[int, ...] = ANGLES
    corruptions: tuple[str, ...] = tuple(CORRUPTIONS)
    severities: tuple[int, ...] = SEVERITIES
    unseen: tuple[str, ...] = ("permuted", "patches")
    seed: int = 0
    bins: int = 30

    def __post_init__(self) -> None:
        if self.T < 1 or self.members < 1:
            raise ConfigError(f"T={self.T}, members={self.members}: both must be positive")
        if self.T % self.members:
            # M nets averaged over T / M subnetworks each must use the T subnetworks of one net's average
            raise ConfigError(f"T={self.T}, members={self.members}: T must be a multiple of members")
        if self.bins < 1:
            raise ConfigError(f"bins={self.bins}: must be positive")
        if self.seed < 0:
            raise ConfigError(f"seed={self.seed}: the subnetwork seed must be >= 0")
        bad = [c for c in self.corruptions if c not in ALL_CORRUPTIONS] + [u for u in self.unseen if u not in UNSEEN]
        if bad:
            raise ConfigError(
                f"{bad[0]!r} is not a known corruption or unseen set; corruptions: {', '.join(ALL_CORRUPTIONS)}; "
                f"unseen: {', '.join(UNSEEN)}"
            )
        if any(s not in SEVERITIES for s in self.severities):
            raise ConfigError(
                f"severities={list(self.severities)}: each must be one of {', '.join(map(str, SEVERITIES))}"
            )
        if any(k not in SHIFT_KINDS for k in self.per_example):
            raise ConfigError(f"per_example={list(self.per_example)}: kinds of set are {', '.join(SHIFT_KINDS)}")
        if any(not 0 <= a <= 360 for a in self.angles):
            raise ConfigError(f"angles={list(self.angles)}: angles are degrees in [0, 360]")
        for name in ("angles", "corruptions", "severities", "unseen", "per_example"):
            values = list(getattr(self, name))
            twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
            if twice is not None:  # it would be evaluated twice and written as duplicate rows
                flag = (
                    f" (`python -m harness shift --{name}`)" if name in ("angles", "corruptions", "severities") else ""
                )
                raise ConfigError(f"{name}={values}: {twice!r} is listed twice; list each once{flag}")


def subnetwork_cost(model: DropoutNet) -> float:
    """Expected multiply-adds of one sampled subnetwork over the full network's: a linear layer
    computes only kept inputs times the units the next site keeps (compaction); convolutions count
    at full cost."""
    sites = model.dropout_sites()
    full = sub = 0.0
    for k, site in enumerate(sites):
        layer = model.consumer(k)
        if isinstance(layer, nn.Linear):
            macs = layer.in_features * layer.out_features
            out_keep = sites[k + 1].keep if k + 1 < len(sites) else 1.0
            full, sub = full + macs, sub + macs * site.keep * out_keep
        else:  # a convolution ("same" padding): every output position of every filter, over 1 or 2 axes
            c_in, *size = site.unit_shape
            macs = c_in * layer.out_channels * math.prod(layer.kernel_size) * math.prod(size)
            full, sub = full + macs, sub + macs
    return sub / full


def fit_robustness(settings: RobustnessSettings, info: DataInfo) -> tuple[RobustnessSettings, list[str]]:
    """The settings whose sets fit the data `info` (`harness.data.datasets.describe`), and in words
    what changed and why. Settings that fit already come back unchanged with no notes.

    - Rotations need square images: elsewhere there are none.
    - Image corruptions need images: on mnist1d's signals they give way to the mnist1d generator's
      harsher sets (MNIST1D_CORRUPTIONS), on other data to `gaussian_noise`; mnist1d corruptions
      elsewhere give way to `gaussian_noise` too. Severities stay as they are, so that the
      corrupted sets keep their names (`<corruption>_<severity>`), kind `corruption` and
      intensity (the severity), which the severity bands of the claims read.
    - Unseen sets: `patches` needs images, `fashion-mnist` 28 x 28 images; `permuted` fits all.
    """
    from dataclasses import replace

    shape, name = tuple(info.input_shape), info.name
    what = {"image": f"{'x'.join(map(str, shape[1:]))} images", "signal": "1-D signals", "features": "flat features"}[
        info.kind
    ]
    label = _label(name)
    notes: list[str] = []
    changes: dict = {}
    turned = [a for a in settings.angles if a % 360]
    rotations_dropped = bool(turned) and not rotations_fit(shape)
    if rotations_dropped:
        changes["angles"] = ()
    kept = [c for c in settings.corruptions if corruption_fits(c, shape, name)]
    dropped = [c for c in settings.corruptions if c not in kept]
    if dropped:
        mnist1d = all(corruption_fits(c, shape, name) for c in MNIST1D_CORRUPTIONS)
        substitutes = list(MNIST1D_CORRUPTIONS) if mnist1d else list(GENERIC_CORRUPTIONS)
        changes["corruptions"] = tuple(kept + [c for c in substitutes if c not in kept])
        severities = ", ".join(map(str, settings.severities))
        if mnist1d:
            source = (
                "shifted test sets come from the mnist1d generator with harsher noise, scale and translation than "
                f"the training data ({', '.join(MNIST1D_CORRUPTIONS)} at severities {severities})"
            )
        else:
            sigmas = GENERIC_CORRUPTIONS["gaussian_noise"]
            source = (
                "shifted test sets add Gaussian noise to the standardized test examples (gaussian_noise at "
                f"severities {severities}: sigma {', '.join(f'{sigmas[s - 1]:g}' for s in settings.severities)} "
                "standard deviations)"
            )
        gone = ["rotations"] if rotations_dropped and info.kind != "image" else []
        gone += ["image corruptions"] if any(c in CORRUPTIONS for c in dropped) else []
        gone += [c for c in dropped if c not in CORRUPTIONS]
        notes.append(
            f"{_and(gone)} do{'es' * (len(gone) == 1 and gone[0] in MNIST1D_CORRUPTIONS)} not apply to {label}'s "
            f"{what}; {source}"
        )
    if rotations_dropped and info.kind == "image":
        notes.insert(0, f"rotations apply only to square images; {label} holds {what}: no rotated test sets")
    elif rotations_dropped and not dropped:
        notes.append(f"rotations do not apply to {label}'s {what}: no rotated test sets")
    kept_unseen = tuple(u for u in settings.unseen if unseen_fits(u, shape))
    if kept_unseen != tuple(settings.unseen):
        changes["unseen"] = kept_unseen
        out = [u for u in settings.unseen if u not in kept_unseen]
        why = "28 x 28 images" if out == ["fashion-mnist"] else "images"
        rest = f"unseen classes come from {', '.join(kept_unseen)} only" if kept_unseen else "no unseen set remains"
        notes.append(
            f"unseen set{'s' * (len(out) > 1)} {_and(out)} need{'s' * (len(out) == 1)} {why}, not {label}'s {what}; "
            f"{rest}"
        )
    return (replace(settings, **changes) if changes else settings), notes


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _label(name: str) -> str:
    """A dataset's name in words: its own name, or a .npz file's name."""
    from pathlib import Path

    return Path(name).name if name.endswith(".npz") else name


def member_k(settings: RobustnessSettings) -> int:
    """Subnetworks per member when M dropout nets share the T subnetworks of one net's average."""
    return max(1, settings.T // settings.members)


def equal_compute_k(model: DropoutNet, members: int) -> int:
    """Subnetworks that cost as many multiply-adds as `members` full forward passes."""
    return max(1, round(members / subnetwork_cost(model)))


@dataclass
class Recorder:
    """Collects the rows of the robustness tables for one run or ensemble (`unit`)."""

    unit: str
    n_classes: int
    bins: int
    shift: list = field(default_factory=list)
    ood: list = field(default_factory=list)
    hist: list = field(default_factory=list)
    predictions: list = field(default_factory=list)
    _in_scores: dict = field(default_factory=dict)

    def record(
        self,
        s: EvalSet,
        mode: str,
        k: int,
        probs: torch.Tensor,
        logp: torch.Tensor,
        acc: EnsembleAccumulator | None = None,
        final: bool = True,
    ) -> None:
        """Metrics of one predictive distribution (N, C) on set `s`; at a mode's largest k (`final`),
        also its entropy histogram and, on unseen sets, its OOD detection against the test set's scores."""
        key = (s.name, s.shift, s.intensity, mode, k)
        if s.y is not None:
            m = point_metrics(probs, s.y, log_probs=logp)
        else:
            m = {"entropy": float(entropies(probs, logp).mean())}
        if acc is not None:
            m |= decomposition(acc, s.y)
        self.shift += [(*key, name, value) for name, value in m.items()]
        if not final:
            return
        ent = entropies(probs, logp).cpu().numpy()
        edges = np.linspace(0.0, math.log(self.n_classes), self.bins + 1)
        counts, _ = np.histogram(np.clip(ent, 0.0, edges[-1]), bins=edges)
        self.hist += [(*key, b, edges[b], edges[b + 1], int(c)) for b, c in enumerate(counts)]
        sc = scores(probs, logp, acc)
        if s.name == "test":
            self._in_scores[mode] = sc
        elif s.shift == "unseen":
            if mode not in self._in_scores:
                raise ValueError(f"the test set must be recorded before unseen set {s.name} (mode {mode})")
            for score in SCORES:
                if score in sc:
                    for metric, value in detection(self._in_scores[mode][score], sc[score]).items():
                        self.ood.append((s.name, mode, k, score, metric, value))

    def predict(self, s: EvalSet, logp: torch.Tensor, mode: str = "weight_scaled", k: int = 0) -> None:
        labels = s.y.cpu().numpy() if s.y is not None else np.full(len(logp), -1)
        self.predictions.append(
            pd.DataFrame(
                {
                    "set": s.name,
                    "shift": s.shift,
                    "intensity": s.intensity,
                    "mode": mode,
                    "k": k,
                    "example": np.arange(len(logp)),
                    "label": labels,
                }
            ).join(pd.DataFrame(logp.float().cpu().numpy(), columns=[f"logp_{c}" for c in range(logp.shape[1])]))
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        key = ["set", "shift", "intensity", "mode", "k"]
        out = {
            "shift": pd.DataFrame(self.shift, columns=key + ["metric", "value"]),
            "ood": pd.DataFrame(self.ood, columns=["set", "mode", "k", "score", "metric", "value"]),
            "entropy_hist": pd.DataFrame(self.hist, columns=key + ["bin", "low", "high", "count"]),
        }
        if self.predictions:
            out["predictions"] = pd.concat(self.predictions, ignore_index=True)
        for df in out.values():
            df.insert(0, "run_id", self.unit)
        return out


@torch.no_grad()
def evaluate_robustness(
    model: DropoutNet, data: Dataset, settings: RobustnessSettings = RobustnessSettings(), run_id: str = ""
) -> dict[str, pd.DataFrame]:
    """Every mode of `model` on every evaluation set; the tables of the module docstring."""
    model.eval()
    if len(data.y_val) == 0:
        raise ConfigError(
            f"run {run_id}: the robustness evaluation fits a temperature on the validation split, which is empty; "
            "set data.val_fraction > 0"
        )
    sets = evaluation_sets(
        data, settings.angles, settings.corruptions, settings.severities, settings.unseen, settings.seed
    )
    temperature = fit_temperature(model(data.x_val), data.y_val)
    rec = Recorder(run_id, data.n_classes, settings.bins)
    rec.shift.append(("val", "none", 0.0, "temperature_scaled", 0, "temperature", temperature))
    sites = model.dropout_sites()
    dropout = any(s.p_drop > 0 for s in sites)
    k_compute = min(equal_compute_k(model, settings.members), settings.T)
    k_member = member_k(settings)
    ks = sorted({min(settings.members, settings.T), k_compute, settings.T, k_member})
    if dropout:
        rec.shift.append(("val", "none", 0.0, "mc_shared", k_compute, "equal_compute_k", float(k_compute)))
    passes = sum(settings.T * (2 if s.shift in settings.per_example else 1) for s in sets) if dropout else len(sets)
    bar = progress_bar(total=passes, desc=f"shift {run_id}".strip(), unit="net")
    for s in sets:
        engine = SubnetworkEngine(model, s.x)
        ws = engine.weight_scaled().double()
        for mode, z in (("weight_scaled", ws), ("temperature_scaled", ws / temperature)):
            logp = torch.log_softmax(z, 1)
            rec.record(s, mode, 0, logp.exp(), logp)
            if mode == "weight_scaled":
                rec.predict(s, logp)
        if not dropout:
            bar.update(1)
            continue
        streams = {"mc_shared": lambda t, engine=engine: engine.logits(sample_masks(sites, settings.seed, t))}
        if s.shift in settings.per_example:
            g = torch.Generator(device=s.x.device).manual_seed(subnetwork_seed(settings.seed, 0, 0, purpose=1))
            streams["mc_per_example"] = lambda t, engine=engine, g=g: engine.logits_per_example(g)
        for mode, draw in streams.items():
            acc = EnsembleAccumulator(len(s.x), data.n_classes, s.x.device)
            for t in range(settings.T):
                acc.add(draw(t))
                if acc.k in ks:
                    rec.record(s, mode, acc.k, acc.mean(), acc.log_mean(), acc, final=acc.k == settings.T)
                if mode == "mc_shared" and acc.k == k_member:
                    rec.predict(s, acc.log_mean(), mode, acc.k)
                bar.update(1)
    bar.close()
    return rec.tables()
