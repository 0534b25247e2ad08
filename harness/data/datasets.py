"""A dataset by name, as the rest of the harness sees it: arrays, tensors, description, fingerprint.

A dataset is named by one of `harness.data.registry.SPECS` (the names of `harness.config.DATASETS`)
or by the path of a `.npz` file (arrays `x`, `y` and optionally `x_test`, `y_test`; see
data/README.md). `load_raw` gives its arrays, checked; `load_dataset` turns them into standardized
tensors split into train / validation / test. One example is an image (C, H, W), a 1-D signal
(C, L) (mnist1d: one channel of length 40) or flat features (D,); `describe` says which, with the
split sizes, without loading the arrays where metadata suffice. `fingerprint` is what a run trains
on, for its identity. Loading a file never runs code from it (`harness.data.formats`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.config import DataConfig
from harness.data.formats import is_npz, read_npz
from harness.data.registry import DataInfo, data_dir, data_kind, spec
from harness.data.splits import n_classes, pool_and_test, stratified_split, stratified_subsample
from harness.data.validation import Raw, raw_problem
from harness.errors import DataError


@dataclass
class Dataset:
    """Standardized tensors of one dataset, split three ways.

    x_*: (N, *input_shape) float32; y_*: (N,) int64. `mean` and `std` are the scalar statistics of
    the raw training split that standardized every split.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    input_shape: tuple[int, ...]
    n_classes: int
    mean: float
    std: float

    def to(self, device: str | torch.device) -> Dataset:
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return Dataset(**moved)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @property
    def kind(self) -> str:
        """image (C, H, W), signal (C, L) or features (D,)."""
        return data_kind(self.input_shape)


def load_raw(name: str) -> Raw:
    """The arrays of a dataset (a name of `SPECS` or a .npz path), checked by `raw_problem`."""
    if is_npz(name):
        raw = read_npz(name)
        problem = raw_problem(raw)
        if problem:
            raise DataError(f"{Path(name).expanduser()}: {problem}; fix the arrays and save the file again")
        return raw
    raw = spec(name).load()
    problem = raw_problem(raw)
    if problem:
        raise DataError(f"{name} ({data_dir() / name}): {problem}; replace the files with good copies")
    return raw


# ---------------------------------------------------------------------------------------------------
# What a dataset is, without or with its arrays

_FINGERPRINTS: dict[tuple, str] = {}
_DESCRIPTIONS: dict[tuple, DataInfo] = {}


def source_stamps(name: str) -> tuple:
    """(path, size, mtime) of the files a dataset is read from: its fingerprint is recomputed
    when they change, and only then. A user's .npz is its own single source."""
    if is_npz(name):
        paths = [Path(name).expanduser()]
    else:
        folder = data_dir() / name
        paths = [data_dir() / f"{name}.npz"] + (sorted(folder.rglob("*")) if folder.is_dir() else [])
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file())


def fingerprint(name: str) -> str:
    """What a run trains on, as part of its identity: the example counts and 16 hex digits of the
    SHA-256 of the parsed arrays (dtype, shape and bytes). Computed once per dataset and process,
    again when its files change; runs on changed data get new identities, never a cached result."""
    key = (name, source_stamps(name))  # the files are statted once per call: run ids are computed often
    if key not in _FINGERPRINTS:
        raw = load_raw(name)
        h = hashlib.sha256()
        for a in (raw.x, raw.y, raw.x_test, raw.y_test):
            a = np.ascontiguousarray(a) if a is not None else np.zeros(0)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        n_test = len(raw.y_test) if raw.y_test is not None else 0
        key = (name, source_stamps(name))  # an embedded dataset's cache file may have been written just now
        _FINGERPRINTS[key] = f"{len(raw.y)}+{n_test}:{h.hexdigest()[:16]}"
    return _FINGERPRINTS[key]


def missing_files(name: str) -> list[Path]:
    """The files `name` needs that are not there: under data/ for a standard dataset (an IDX file
    counts when it is there gzipped or not; the .gz name is listed), the file itself for a .npz
    path; empty for embedded datasets and complete ones."""
    if is_npz(name):
        path = Path(name).expanduser()
        return [] if path.is_file() else [path]
    paths = [data_dir() / f for f in spec(name).files]
    return [p for p in paths if not (p.is_file() or (p.suffix == ".gz" and p.with_suffix("").is_file()))]


def describe(name: str, files: bool = True) -> DataInfo:
    """What dataset `name` is: shape and kind of one example, split sizes, classes (`DataInfo`).

    With `files` (default) the arrays are read where they are there; a standard dataset whose
    files are missing, or any named dataset with files=False, is answered from its published
    metadata without touching the disk (a plan made before `make data`). A .npz path is always
    read: the file is the only description of a user's data. Cached per dataset and files, like
    `fingerprint`.
    """
    if not is_npz(name):
        info = spec(name).info
        if not files or missing_files(name):
            return info
    key = (name, str(data_dir()), source_stamps(name))
    if key not in _DESCRIPTIONS:
        raw = load_raw(name)
        pool, test = pool_and_test(raw)
        y_pool = np.asarray(raw.y)[pool] if pool is not None else np.asarray(raw.y)
        y_test = np.asarray(raw.y)[test] if test is not None else np.asarray(raw.y_test)
        shape = tuple(int(d) for d in np.shape(raw.x)[1:])
        # an embedded dataset's cache file may have been written just now
        key = (name, str(data_dir()), source_stamps(name))
        _DESCRIPTIONS[key] = DataInfo(
            name, shape, data_kind(shape), len(y_pool), len(y_test), n_classes(y_pool, y_test)
        )
    return _DESCRIPTIONS[key]


# ---------------------------------------------------------------------------------------------------
# Split and standardized tensors


def load_dataset(cfg: DataConfig, device: str | torch.device = "cpu") -> Dataset:
    """Load, split and standardize a dataset as tensors on `device`.

    Standardization uses one scalar mean and std of the raw training split (per-pixel statistics
    would blow up the near-constant border pixels of digit images).
    """
    raw = load_raw(cfg.name)
    x, y = np.asarray(raw.x), np.asarray(raw.y)
    rest, test = pool_and_test(raw)
    if rest is not None:
        x_test, y_test = x[test], y[test]
        x, y = x[rest], y[rest]
    else:
        x_test, y_test = raw.x_test, raw.y_test
    train, val = _train_and_validation(cfg, y)
    mean, std = _training_statistics(cfg, x, y, y_test, train)

    def prep(a: np.ndarray, split: str) -> torch.Tensor:
        return _standardized(a, split, cfg.name, mean, std).to(device)

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64)).to(device)

    return Dataset(
        name=cfg.name,
        x_train=prep(x[train], "training"),
        y_train=labels(y[train]),
        x_val=prep(x[val], "validation"),
        y_val=labels(y[val]),
        x_test=prep(x_test, "test"),
        y_test=labels(y_test),
        input_shape=tuple(x.shape[1:]),
        n_classes=n_classes(y, y_test),
        mean=mean,
        std=std,
    )


def _train_and_validation(cfg: DataConfig, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) into the non-test pool with labels `y`: the stratified validation split
    and the training subsample of `cfg`, both drawn with its split seed."""
    split_seed = 0 if cfg.split_seed is None else cfg.split_seed  # a run passes RunConfig.resolved_data(): its own seed
    train, val = stratified_split(y, cfg.val_fraction, split_seed)
    if len(train) == 0:
        raise DataError(
            f"data.val_fraction={cfg.val_fraction} leaves no training examples: all {len(y)} non-test examples of "
            f"{cfg.name} go to validation (the fraction is rounded per class); use a smaller data.val_fraction "
            "(default 0.1)"
        )
    if cfg.val_fraction > 0 and len(val) == 0:
        raise DataError(
            f"data.val_fraction={cfg.val_fraction} holds out no validation examples of {cfg.name} (the fraction of "
            f"each class rounds to 0 of {len(y)} non-test examples); use a larger data.val_fraction, or 0 with "
            "train.select_on_val=false"
        )
    if cfg.train_size is not None:
        if cfg.train_size > len(train):
            raise DataError(
                f"data.train_size={cfg.train_size} is larger than the {len(train)} training examples of {cfg.name} "
                f"(after the test and validation splits); use at most {len(train)}"
            )
        train = train[stratified_subsample(y[train], cfg.train_size, split_seed)]
    return train, val


def _training_statistics(
    cfg: DataConfig, x: np.ndarray, y: np.ndarray, y_test: np.ndarray, train: np.ndarray
) -> tuple[float, float]:
    """The scalar mean and std of the training examples x[train] (float64), refused where they
    cannot standardize: values that overflow, one class only, constant examples."""
    x_train = x[train].astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(x_train.mean()), float(x_train.std())
    # else every standardized example would be 0 and the run "ok" at chance
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise DataError(
            f"the training examples of {cfg.name} hold values up to {float(np.max(np.abs(x_train))):.3g} in "
            "magnitude: their mean or standard deviation overflows, so standardization would turn every example "
            "into 0; rescale the data"
        )
    if n_classes(y, y_test) < 2:
        raise DataError(
            f"{cfg.name} has examples of one class only: a classifier needs at least two classes to tell apart"
        )
    if not std > 0:  # standardization divides by std: constant images would become NaN and "diverge"
        fix = (
            f"save real examples in {cfg.name}"
            if is_npz(cfg.name)
            else f"replace the files in {data_dir() / cfg.name} with real images"
        )
        what = "images" if x.ndim == 4 else "examples"
        raise DataError(
            f"the {len(train)} training {what} of {cfg.name} are constant (every value is {mean:g}): standardization "
            f"divides by their standard deviation, 0, and they hold nothing to learn; {fix}"
        )
    return mean, std


def _standardized(a: np.ndarray, split: str, name: str, mean: float, std: float) -> torch.Tensor:
    """(a - mean) / std in float64, as float32 (on the CPU); a split whose values overflow float32 is refused."""
    with np.errstate(over="ignore", invalid="ignore"):
        z = ((a.astype(np.float64) - mean) / std).astype(np.float32)
    if not np.isfinite(z).all():  # a split far outside the training split's range
        raise DataError(
            f"the {split} examples of {name}, standardized with the training split's mean {mean:.3g} and standard "
            f"deviation {std:.3g}, overflow float32 ({int((~np.isfinite(z)).sum())} values); rescale the data"
        )
    return torch.from_numpy(z)
