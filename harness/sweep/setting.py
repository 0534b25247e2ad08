"""A setting: one profile's study design run on one dataset.

Every study of a profile names its own data (quick: the embedded mnist5k; paper: MNIST, CIFAR-10
for the CNN); `Setting(profile, dataset)` runs the same design on another dataset instead: an
embedded one, standard files in data/, or a user's `.npz` file given by its path. Its outputs live
side by side with the default's: reports/<name>/, figures/<name>/, where `name` is the profile for
the default and `<profile>-<dataset>` otherwise (a `.npz` file is named by its stem and a hash of its
path).

`adapt` moves a study onto the setting's dataset and says, in words, every way the study had to
change to fit the data (a training size capped at the examples there are, convolutions over 1-D
signals instead of images, shifts that fit the data) or why it is skipped (convolutions on flat
features). No study changes what it measures without saying so: the words go into the study's
tables folder (`adaptation.json`) and from there into the report.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

GENERALITY = ("mnist5k", "mnist1d", "digits")  # `make generality`: the quick design in three settings
DEFAULT_DATASETS = {"smoke": "digits", "quick": "mnist5k"}  # a profile whose every study uses one dataset


def dataset_label(dataset: str) -> str:
    """A dataset's name in paths: its own name, or a .npz file's stem and 8 hex digits of its
    absolute path (two files of one name in two folders get two settings)."""
    if dataset.endswith(".npz"):
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(dataset).stem) or "data"
        return f"{stem}-{hashlib.sha256(os.path.abspath(dataset).encode()).hexdigest()[:8]}"
    return dataset


@dataclass(frozen=True)
class Setting:
    """A profile's design on a dataset; `dataset` None (or the profile's only dataset): each
    study's own data, under the profile's own paths."""

    profile: str
    dataset: str | None = None

    def __post_init__(self) -> None:
        if self.dataset is not None and DEFAULT_DATASETS.get(self.profile) == self.dataset:
            object.__setattr__(self, "dataset", None)  # the default itself: one set of outputs, not two
        if self.dataset is not None and self.dataset.endswith(".npz"):
            object.__setattr__(self, "dataset", os.path.abspath(os.path.expanduser(self.dataset)))

    @property
    def name(self) -> str:
        return self.profile if self.dataset is None else f"{self.profile}-{dataset_label(self.dataset)}"


def setting_name(profile: str, dataset: str | None = None) -> str:
    return Setting(profile, dataset).name


@dataclass
class Adapted:
    """A study's configs and evaluations moved onto a setting's dataset, with what changed in words.

    `configs` keeps the order of the study's own list (one adapted config per original, so that
    ensembles built from the originals can be mapped; `harness.sweep.experiment` drops duplicates after);
    `skipped` is the reason the study cannot run on this data (its configs are then empty)."""

    configs: list
    evaluations: object
    notes: list[str]
    skipped: str | None = None


def adapt(configs: list, evaluations, dataset: str, files: bool = True) -> Adapted:
    """`configs` (RunConfig) and `evaluations` (harness.sweep.evaluations.Evaluations) of one study, on `dataset`.

    - every config trains on `dataset`;
    - a CNN runs on images as it is, over 1-D signals with 1-D convolutions, and is skipped on flat
      features (convolutions need neighbouring inputs);
    - a training size larger than the data holds is capped at the training examples there are;
    - robustness evaluations keep only the shifted and unseen sets that fit the data
      (`harness.inference.robustness.fit_robustness`).
    With `files=False` nothing is read from disk (a plan before the data are in place): the data's
    shape and size come from `harness.data.datasets.describe`'s metadata.
    """
    from dataclasses import replace

    from harness.data.datasets import describe

    info = describe(dataset, files=files)
    notes: list[str] = []
    label = Path(dataset).name if dataset.endswith(".npz") else dataset  # in words: the file's name
    out = [c.replace(**{"data.name": dataset}) for c in configs]
    if any(c.model.kind == "cnn" for c in out):
        if info.kind == "features":
            reason = (
                f"{label} holds flat features of shape {info.input_shape}: a convolutional net needs images or 1-D "
                "signals (neighbouring inputs to convolve), so this study's CNNs cannot be trained on it"
            )
            return Adapted([], evaluations, [reason], skipped=reason)
        if min(info.input_shape[1:]) < 4:  # two poolings by 2 leave nothing to convolve
            reason = (
                f"{label}'s inputs ({' x '.join(map(str, info.input_shape))}) are too small for this study's CNN, "
                "which pools twice by 2 (at least 4 along each axis), so its CNNs cannot be trained on it"
            )
            return Adapted([], evaluations, [reason], skipped=reason)
        if info.kind == "signal":
            notes.append(
                f"the CNN convolves over {label}'s 1-D signals ({' x '.join(map(str, info.input_shape))}): Conv1d "
                "blocks in place of Conv2d, the same sites, channels and widths"
            )
    out, said = cap_sizes(out, info, files)
    notes += said
    out, said = scale_budgets(out, dataset)
    notes += said
    robustness = getattr(evaluations, "robustness", None)
    if robustness is not None:
        from harness.inference.robustness import fit_robustness

        fitted, said = fit_robustness(robustness, info)
        evaluations = replace(evaluations, robustness=fitted)
        notes += said
    return Adapted(out, evaluations, notes)


def scale_budgets(configs: list, dataset: str) -> tuple[list, list[str]]:
    """Configs with their training budget (`train.epochs`, and `train.steps` when set) multiplied by
    the profile's `harness.sweep.profiles.budget_scale` for `dataset`, and a note saying so. Under the
    exponential (and constant) schedules the learning rate at a given step does not change: the
    decay is stated in units of `epochs` over `steps`, and both grow by the same factor (a cosine
    schedule would stretch)."""
    from harness.sweep.profiles import budget_scale

    out, scaled = [], set()
    for c in configs:
        k = budget_scale(c.profile, dataset)
        if k == 1:
            out.append(c)
            continue
        change = {"train.epochs": c.train.epochs * k} | ({"train.steps": c.train.steps * k} if c.train.steps else {})
        out.append(c.replace(**change))
        scaled.add(k)
    if not scaled:
        return out, []
    label = Path(dataset).name if dataset.endswith(".npz") else dataset
    times = " and ".join(f"{k}x" for k in sorted(scaled))
    return out, [
        f"training budgets {times} the profile's (epochs, or steps where a study fixes steps): runs on {label} take "
        "longer to stop by patience (harness.sweep.profiles.BUDGET_SCALE); the learning rate at each step is "
        "unchanged"
    ]


def cap_sizes(configs: list, info=None, files: bool = True) -> tuple[list, list[str]]:
    """Configs whose `data.train_size` exceeds the training examples their dataset holds, capped at
    that number, and a note saying so (none when nothing was capped). `info`: the data's
    `harness.data.registry.DataInfo`, needed only when `files` is False."""
    out, capped = list(configs), {}
    for i, c in enumerate(out):
        if c.data.train_size is not None:
            if info is None and not files:
                from harness.data.datasets import describe

                info = describe(c.data.name, files=False)
            meta = info
            have = available_train(c.data.name, c.data.val_fraction, c.resolved_data().split_seed, meta, files)
            if c.data.train_size > have:
                capped[c.data.train_size] = (have, c.data.name)
                out[i] = c.replace(**{"data.train_size": have})
    if not capped:
        return out, []
    sizes = ", ".join(f"{k:,}" for k in sorted(capped))
    have, name = min(capped.values())
    return out, [f"training sizes {sizes} capped at {have:,}, the training examples {Path(name).name} holds"]


@functools.lru_cache(maxsize=64)
def _available(dataset: str, val_fraction: float, split_seed: int, sources: tuple) -> int:
    from harness.data.datasets import load_raw
    from harness.data.splits import TEST_FRACTION, TEST_SPLIT_SEED, stratified_split

    raw = load_raw(dataset)
    y = raw.y
    if raw.x_test is None:
        rest, _ = stratified_split(y, TEST_FRACTION, TEST_SPLIT_SEED)
        y = y[rest]
    train, _ = stratified_split(y, val_fraction, split_seed)
    return len(train)


def available_train(dataset: str, val_fraction: float, split_seed: int, info=None, files: bool = True) -> int:
    """How many training examples a run on `dataset` can have: the non-test pool less its stratified
    validation split (exact, as `harness.data.datasets.load_dataset` splits; from the pool's size when the
    files are not read)."""
    from harness.data.datasets import source_stamps

    if not files:
        return round((1 - val_fraction) * info.n_examples)
    return _available(
        dataset, val_fraction, split_seed, source_stamps(dataset)
    )  # once per dataset, split and state of its files


CHECK_ENV = "HARNESS_CHECK"  # set (to 1) by `make paper-check`: every study loaded with check caps
CHECK_STEPS = 3  # optimizer steps per run
CHECK_WIDTH_DIVISOR = 16  # hidden widths and conv channels divided by this (at least CHECK_MIN_WIDTH)
CHECK_MIN_WIDTH = 4
CHECK_T = 8  # subnetworks per Monte-Carlo average


def checking() -> bool:
    """Whether this process checks a profile end to end (`make paper-check`) rather than measures."""
    import os

    return os.environ.get(CHECK_ENV, "") not in ("", "0")


def check_caps(configs: list, evaluations) -> tuple[list, object, list[str]]:
    """A study's configs and evaluations cut down to prove the pipeline, not to measure: every run
    trains CHECK_STEPS steps, widths and channels are divided by CHECK_WIDTH_DIVISOR, Monte-Carlo
    averages take at most CHECK_T subnetworks, rotations every fourth angle and corruptions their
    mildest and harshest severity. Every study, config, evaluation kind and kind of shift of the
    profile still runs, so a mistake in any of them shows in minutes instead of hours on a cluster."""
    import math
    from dataclasses import replace

    def narrow(ws):
        return [max(CHECK_MIN_WIDTH, math.ceil(w / CHECK_WIDTH_DIVISOR)) for w in ws]

    out = [
        c.replace(
            **{"train.steps": CHECK_STEPS, "train.check_every_steps": None, "model.widths": narrow(c.model.widths)}
            | ({"model.conv_channels": narrow(c.model.conv_channels)} if c.model.kind == "cnn" else {})
        )
        for c in configs
    ]
    ev = evaluations
    if ev.mc is not None:
        ev = replace(ev, mc=replace(ev.mc, T=min(ev.mc.T, CHECK_T), streams=min(ev.mc.streams, 2)))
    if ev.coadapt is not None:
        ev = replace(ev, coadapt=replace(ev.coadapt, n_pairs=min(ev.coadapt.n_pairs, 20)))
    if ev.robustness is not None:
        r = ev.robustness
        # two subnetworks per member: T stays a multiple of M and apart from it, as the figures and claims need
        # (k = T, M, T / M)
        ev = replace(
            ev,
            robustness=replace(
                r,
                T=r.members * min(2, r.T // r.members),
                angles=r.angles[::4],
                severities=tuple(dict.fromkeys((r.severities[0], r.severities[-1]))),
            ),
        )
    notes = [
        f"paper-check: every run trains {CHECK_STEPS} steps, widths and channels divided by {CHECK_WIDTH_DIVISOR}, "
        f"at most {CHECK_T} subnetworks per average: these outputs prove the pipeline, they are not results"
    ]
    return out, ev, notes


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.sweep.setting name PROFILE [DATASET]``: the setting's name (the Makefile's folders)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (2, 3) or argv[0] != "name":
        print("usage: python -m harness.sweep.setting name PROFILE [DATASET]", file=sys.stderr)
        return 2
    print(setting_name(argv[1], (argv[2] if len(argv) == 3 else "") or None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
