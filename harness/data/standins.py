"""Stand-in data files in the paper profile's layout: ``python -m harness.data.standins FOLDER``.

Writes FOLDER/mnist/ and FOLDER/fashion-mnist/ (the four gzipped IDX files each) and
FOLDER/cifar10/cifar-10-batches-py/ (data_batch_1 ... 5 and test_batch, pickled dicts), a few
hundred examples each, so that `make paper-check` runs every study of the paper profile through the
same loaders, splits and checks as the real files, in minutes. The images are learnable but
artificial: each class is a bright square at its own place on a noisy background. They prove the
pipeline, never a result.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import sys
from pathlib import Path

import numpy as np

from harness.data.formats import IDX_FILES
from harness.files import atomic_write

SIZES = {"train": 600, "test": 200}  # MNIST-like; CIFAR-10: 5 batches of 120 and a test batch of 200
CLASSES = 10


def images(n: int, channels: int, side: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` uint8 images (n, channels, side, side) and their labels (n,), every class equally often:
    class k is a bright square of side // 4 at the k-th place of a 4 x 3 grid, on uniform noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    rng.shuffle(y)
    x = rng.integers(0, 80, (n, channels, side, side)).astype(np.uint8)
    s = side // 4
    for k in range(CLASSES):
        r, c = divmod(k, 4)
        x[y == k, :, r * s + s // 2 : r * s + s // 2 + s, c * s : c * s + s] = 230
    return x, y.astype(np.int64)


def idx_bytes(a: np.ndarray) -> bytes:
    """An unsigned-byte IDX file (magic 0x0000080N) holding `a`."""
    return (
        struct.pack(">HBB", 0, 0x08, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape) + a.astype(np.uint8).tobytes()
    )


def write_idx_dataset(folder: Path, seed: int) -> None:
    for part, (xk, yk) in (("train", ("train_x", "train_y")), ("test", ("test_x", "test_y"))):
        x, y = images(SIZES[part], 1, 28, seed + (part == "test"))
        atomic_write(folder / f"{IDX_FILES[xk]}.gz", gzip.compress(idx_bytes(x[:, 0]), mtime=0))
        atomic_write(folder / f"{IDX_FILES[yk]}.gz", gzip.compress(idx_bytes(y), mtime=0))


def write_cifar(folder: Path, seed: int) -> None:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        x, y = images(SIZES["test"] if name == "test_batch" else SIZES["train"] // 5, 3, 32, seed + i)
        batch = {b"data": x.reshape(len(x), -1), b"labels": y.tolist(), b"batch_label": name.encode()}
        atomic_write(folder / name, pickle.dumps(batch, protocol=2))


def write_all(root: Path) -> list[Path]:
    """Every stand-in dataset under `root`; returns the folders written."""
    root = Path(root)
    out = [root / "mnist", root / "fashion-mnist", root / "cifar10" / "cifar-10-batches-py"]
    write_idx_dataset(out[0], seed=0)
    write_idx_dataset(out[1], seed=100)
    write_cifar(out[2], seed=200)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m harness.data.standins FOLDER", file=sys.stderr)
        return 2
    for folder in write_all(Path(argv[0])):
        print(f"stand-in files: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
