"""File formats, read without ever running code from a file.

IDX files (the MNIST layout: four files, gzipped or not) are parsed byte by byte; CIFAR batches
(pickled dicts) go through `SafeUnpickler`, which refuses every global but plain numpy arrays; a
user's `.npz` file is read with pickles refused, then checked by `harness.data.validation.checked_npz`.
Every defect is a DataError naming the file, the problem and the fix.
"""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from harness.data.splits import TEST_FRACTION
from harness.data.validation import Raw, checked_npz
from harness.errors import DataError

# ---------------------------------------------------------------------------------------------------
# IDX

IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}  # the four files of the MNIST layout, by role
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, expect_ndim: int | None = None) -> np.ndarray:
    """Parse an IDX file (gzipped or not). Raises DataError naming the defect: bad gzip, wrong magic
    number, wrong number of dimensions, or a data size that does not match the header."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{path} is not a valid gzip file ({exc}); delete it and put a good copy in its place"
            ) from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} has a wrong magic number ({raw[:4].hex() or 'empty file'}): not an IDX file; expected 00000801 "
            "(labels) or 00000803 (images)"
        )
    ndim = raw[3]
    if expect_ndim is not None and ndim != expect_ndim:
        want = f"{0x800 + expect_ndim:08x}"
        raise DataError(
            f"{path} has magic number {raw[:4].hex()}, expected {want}: it holds {ndim}-d data, not {expect_ndim}-d"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: the header is incomplete")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize  # Python integers: a forged header cannot overflow
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or padded: the header promises {expected} bytes of data for shape {dims}, the file "
            f"holds {len(raw) - header}; delete it and put a good copy in its place"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def idx_path(folder: Path, stem: str) -> Path | None:
    """The IDX file `stem` in `folder`, unzipped or gzipped (`stem`.gz), or None when neither is there."""
    return next((c for c in (folder / stem, folder / f"{stem}.gz") if c.is_file()), None)


def _find_file(folder: Path, stem: str, dataset: str) -> Path:
    path = idx_path(folder, stem)
    if path is None:
        raise DataError(
            f"{dataset} needs {folder / (stem + '.gz')} (or the unzipped {stem}), which is missing. Put the four "
            f"standard IDX files in {folder}/, or run `python -m harness data fetch {dataset}` (`make data`) on a "
            "machine with internet."
        )
    return path


def read_idx_folder(folder: Path, dataset: str) -> Raw:
    """The four IDX files of `dataset` in `folder` (images (N, 1, H, W), integer labels), checked to
    agree: as many labels as images, integer labels, one image size in both splits."""
    paths = {k: _find_file(folder, stem, dataset) for k, stem in IDX_FILES.items()}
    x = read_idx(paths["train_x"], 3)
    y = read_idx(paths["train_y"], 1)
    xt = read_idx(paths["test_x"], 3)
    yt = read_idx(paths["test_y"], 1)
    for xs, ys, part in ((x, y, "train"), (xt, yt, "t10k")):
        if len(xs) != len(ys):
            raise DataError(f"{dataset} {part} files disagree: {len(xs)} images but {len(ys)} labels")
    for ys, key in ((y, "train_y"), (yt, "test_y")):
        if not np.issubdtype(ys.dtype, np.integer):  # a cast would truncate 2.7 to 2 without a word
            raise DataError(
                f"{paths[key]} holds {ys.dtype.name} labels: labels must be integers (IDX type 0x08, unsigned byte); "
                "write the labels as integers"
            )
    if x.shape[1:] != xt.shape[1:]:
        raise DataError(
            f"{dataset}: {paths['train_x'].name} holds {' x '.join(map(str, x.shape[1:]))} images but "
            f"{paths['test_x'].name} holds {' x '.join(map(str, xt.shape[1:]))} images; training and test images "
            f"must have one size: replace the files in {folder} with the four files of one dataset"
        )
    return Raw(x[:, None], y.astype(np.int64), xt[:, None], yt.astype(np.int64))


# ---------------------------------------------------------------------------------------------------
# CIFAR batches (Python pickles)

CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)  # five training batches, one test


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


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch: images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    d = safe_unpickle(path)
    if not isinstance(d, dict):
        raise DataError(f"{path} is not a CIFAR batch: expected a dict, found {type(d).__name__}")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
    if "data" not in d or "labels" not in d:
        raise DataError(f"{path} is not a CIFAR batch: keys 'data' and 'labels' are missing")
    x = np.asarray(d["data"], dtype=np.uint8)
    y = np.asarray(d["labels"], dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
        raise DataError(
            f"{path} is not a CIFAR batch: data has shape {x.shape} for {len(y)} labels, expected (N, 3072)"
        )
    return x.reshape(-1, 3, 32, 32), y


def read_cifar_folder(folder: Path) -> Raw:
    """CIFAR-10 from the standard Python batches in `folder`: the five training batches, then the test batch."""
    for n in CIFAR_BATCHES:
        if not (folder / n).is_file():
            raise DataError(
                f"cifar10 needs {folder / n}, which is missing. Put the standard Python batches in {folder}/, or run "
                "`python -m harness data fetch cifar10` (`make data`) on a machine with internet."
            )
    parts = [read_cifar_batch(folder / n) for n in CIFAR_BATCHES]
    x = np.concatenate([p[0] for p in parts[:5]])
    y = np.concatenate([p[1] for p in parts[:5]])
    return Raw(x, y, parts[5][0], parts[5][1])


# ---------------------------------------------------------------------------------------------------
# A user's .npz file

NPZ_ARRAYS = ("x", "y", "x_test", "y_test")
NPZ_FORMAT = (
    "arrays x (examples: (N, C, H, W) or (N, H, W) images, or (N, D) flat features) and y (N,) (integer labels "
    "0..K-1), optionally x_test and y_test (an official test split); write it with numpy.savez_compressed(path, "
    "x=x, y=y) and no object arrays"
)


def is_npz(name: str) -> bool:
    """Whether a dataset name is the path of a user's .npz file."""
    return name.endswith(".npz")


def read_npz(name: str) -> Raw:
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
        raise DataError(
            f"{path} is not a valid .npz file (a zip archive of .npy arrays): it is truncated or in another format; "
            f"save a file holding {NPZ_FORMAT}"
        )
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(
            f"{path} cannot be read as a .npz file ({exc}); save it again with numpy.savez_compressed"
        ) from None
    with z:
        _check_npz_names(path, list(z.files))
        arrays = {n: _npz_array(z, n, path) for n in NPZ_ARRAYS if n in z.files}
    return checked_npz(path, arrays)


def _check_npz_names(path: Path, names: list[str]) -> None:
    """The arrays a dataset file holds: x and y, x_test and y_test both or neither, nothing else."""
    listed = ", ".join(names) or "none"
    for needed in ("x", "y"):
        if needed not in names:
            raise DataError(f"{path} has no array {needed!r} (arrays: {listed}); a dataset file holds {NPZ_FORMAT}")
    if ("x_test" in names) != ("y_test" in names):
        has, lacks = ("x_test", "y_test") if "x_test" in names else ("y_test", "x_test")
        raise DataError(
            f"{path} holds {has} but no {lacks} (arrays: {listed}); give both (an official test split) or neither (a "
            f"fixed stratified {TEST_FRACTION:.0%} of x becomes the test split)"
        )
    unknown = [n for n in names if n not in NPZ_ARRAYS]
    if unknown:  # a misspelt x_test would otherwise be ignored and a test split drawn from x instead
        raise DataError(
            f"{path} holds an array named {unknown[0]!r} (arrays: {listed}); a dataset file holds only x, y, x_test "
            "and y_test: rename or remove the others"
        )


def _npz_array(z, name: str, path: Path) -> np.ndarray:
    """One array of an open .npz file, refusing pickles (object arrays) and naming damage."""
    try:
        a = z[name]
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(
                f"{path}: array {name!r} holds Python objects (a pickle), which the harness never loads because "
                f"unpickling can run code; save plain numeric arrays ({name}.astype(np.float32) for examples, "
                "astype(np.int64) for labels)"
            ) from None
        raise DataError(
            f"{path}: array {name!r} cannot be read ({exc}); save the file again with numpy.savez_compressed"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(
            f"{path}: array {name!r} is damaged ({exc}); save the file again with numpy.savez_compressed"
        ) from None
    if not isinstance(a, np.ndarray):  # a zip member that is not a .npy array comes back as bytes
        raise DataError(f"{path}: {name!r} is not a .npy array; save the file with numpy.savez_compressed")
    return a
