"""What is wrong with parsed arrays: `raw_problem` for any dataset, `checked_npz` for a user's file.

`Raw` holds a dataset's arrays as read from disk; every loader's result passes `raw_problem` before
it is used, and a user's .npz arrays pass the stricter `checked_npz`, whose every refusal names the
file, the problem and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import DataError


@dataclass
class Raw:
    """Arrays as read from disk. x_test is None when the dataset has no official test split."""

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None


def raw_problem(raw: Raw) -> str:
    """What is wrong with parsed arrays, or "" when they are usable: examples and labels must
    agree in number and be non-empty, labels non-negative integers, pixels finite; images have at
    least one pixel and one size in both splits; every test label is a class of the training split."""
    for xs, ys, part in ((raw.x, raw.y, "training"), (raw.x_test, raw.y_test, "test")):
        if xs is None and part == "test":
            continue
        problem = _split_problem(np.asarray(xs), np.asarray(ys), part, np.shape(raw.x)[1:])
        if problem:
            return problem
    if raw.y_test is not None:
        unseen = np.setdiff1d(np.asarray(raw.y_test), np.asarray(raw.y))
        if len(unseen):
            seen = np.unique(raw.y)
            return (
                f"the test labels include {label_list(unseen)}, which no training example has (training labels: "
                f"{label_list(seen)}); a net cannot predict a class it never saw: test and training files must come "
                "from one dataset"
            )
    return ""


def _split_problem(xs: np.ndarray, ys: np.ndarray, part: str, train_shape: tuple[int, ...]) -> str:
    """What is wrong with one split's examples `xs` and labels `ys`, or ""."""
    if xs.ndim < 2 or ys.ndim != 1:
        return f"the {part} arrays have shapes {xs.shape} and {ys.shape}: expected (N, ...) images and (N,) labels"
    if len(xs) == 0:
        return f"the {part} split holds zero examples"
    if math.prod(xs.shape[1:]) == 0:
        return f"the {part} images have shape {xs.shape[1:]}: they hold no pixels"
    if part == "test" and xs.shape[1:] != train_shape:
        return (
            f"the test images have shape {xs.shape[1:]} but the training images {train_shape}: both splits need one "
            "image size"
        )
    if len(xs) != len(ys):
        return f"the {part} split has {len(xs)} examples but {len(ys)} labels"
    if not np.issubdtype(ys.dtype, np.integer):
        return f"the {part} labels are {ys.dtype}, not integers"
    if ys.min() < 0:
        return f"the {part} labels include {int(ys.min())}: labels must be >= 0"
    if np.issubdtype(xs.dtype, np.floating) and not np.isfinite(xs).all():
        return f"the {part} images hold {int((~np.isfinite(xs)).sum())} NaN or infinite values"
    return ""


def label_list(values: np.ndarray) -> str:
    """Sorted labels for a message: all of them, or a range when they are many."""
    values = np.unique(values)
    if len(values) <= 6:
        return ", ".join(map(str, values))
    return f"{values[0]}..{values[-1]} ({len(values)} labels)"


def overflows(xs: np.ndarray) -> bool:
    """Whether the mean or standard deviation of `xs` (in float64, as standardization computes them)
    is not finite: finite values near 1e300 square to infinity."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = xs.astype(np.float64)
        return not (math.isfinite(float(a.mean())) and math.isfinite(float(a.std())))


# ---------------------------------------------------------------------------------------------------
# A user's .npz file


def checked_npz(path: Path, arrays: dict[str, np.ndarray]) -> Raw:
    """A user's arrays x, y and optionally x_test, y_test (as read from `path`) as `Raw`, or a
    DataError naming the defect: shapes, types, labels that are not the classes 0..K-1 each with
    examples, one class only, values whose statistics overflow. (N, H, W) images get a channel axis."""
    x, y = arrays["x"], arrays["y"]
    x_test, y_test = arrays.get("x_test"), arrays.get("y_test")
    for xs, ys, xn, yn in ((x, y, "x", "y"), (x_test, y_test, "x_test", "y_test")):
        if xs is not None:
            _check_npz_split(path, xs, ys, xn, yn)
    if x_test is not None and x_test.shape[1:] != x.shape[1:]:
        raise DataError(
            f"{path}: x holds examples of shape {x.shape[1:]} but x_test of shape {x_test.shape[1:]}; both splits "
            "need one shape per example"
        )
    _check_npz_labels(path, y, y_test)
    for xs, xn in ((x, "x"), (x_test, "x_test")):
        if xs is not None and len(xs) and overflows(xs):
            top = float(np.max(np.abs(xs.astype(np.float64))))
            raise DataError(
                f"{path}: {xn} holds values up to {top:.3g} in magnitude, whose mean or standard deviation "
                f"overflows: standardization would turn every example into 0; rescale {xn} (e.g. divide it by "
                f"{top:.0e})"
            )
    if x.ndim == 3:  # (N, H, W) images: one channel
        x = x[:, None]
        x_test = x_test[:, None] if x_test is not None else None
    return Raw(x, y.astype(np.int64), x_test, y_test.astype(np.int64) if y_test is not None else None)


def _check_npz_split(path: Path, xs: np.ndarray, ys: np.ndarray, xn: str, yn: str) -> None:
    """One split's examples `xs` (array `xn`) and labels `ys` (array `yn`): shapes, types, finite values."""
    if xs.ndim not in (2, 3, 4):
        raise DataError(
            f"{path}: {xn} has shape {xs.shape} ({xs.ndim} dimension{'s' * (xs.ndim != 1)}); examples must be (N, D) "
            "flat features, (N, H, W) or (N, C, H, W) images"
            + ("; for one feature per example save x[:, None]" if xs.ndim == 1 else "")
        )
    if not (np.issubdtype(xs.dtype, np.integer) or np.issubdtype(xs.dtype, np.floating) or xs.dtype == np.bool_):
        raise DataError(
            f"{path}: {xn} holds {xs.dtype} values; examples must be real numbers: save {xn}.astype(np.float32)"
        )
    if ys.ndim != 1:
        hint = (
            f"; for one-hot labels save {yn}.argmax(1)"
            if ys.ndim == 2 and ys.shape[1] > 1
            else f"; save {yn}.reshape(-1)"
        )
        raise DataError(f"{path}: {yn} has shape {ys.shape}; labels must be one integer per example, shape (N,){hint}")
    if len(xs) != len(ys):
        raise DataError(f"{path}: {xn} holds {len(xs)} examples but {yn} {len(ys)} labels; give one label per example")
    if not np.issubdtype(ys.dtype, np.integer):  # a cast would truncate 2.7 to 2 without a word
        raise DataError(
            f"{path}: {yn} holds {ys.dtype} labels; labels must be integers 0..K-1: save {yn}.astype(np.int64)"
        )
    if np.issubdtype(xs.dtype, np.floating) and not np.isfinite(xs).all():
        raise DataError(
            f"{path}: {xn} holds {int((~np.isfinite(xs)).sum())} NaN or infinite values; replace or drop those examples"
        )


def _check_npz_labels(path: Path, y: np.ndarray, y_test: np.ndarray | None) -> None:
    """The labels are the classes 0..K-1, each with training examples, and K is at least 2."""
    if len(y):
        low = int(min(y.min(), y_test.min() if y_test is not None and len(y_test) else y.min()))
        if low < 0:
            raise DataError(
                f"{path}: the labels include {low}; labels are the classes 0..K-1, never negative: renumber them "
                "(np.unique(y, return_inverse=True)[1])"
            )
        if int(y.min()) != 0:
            raise DataError(
                f"{path}: the smallest label of y is {int(y.min())}; labels are the classes 0..K-1, so the smallest "
                f"is 0: subtract {int(y.min())} from y{' and y_test' if y_test is not None else ''}, or renumber them"
            )
        absent = np.setdiff1d(np.arange(int(y.max()) + 1), y)
        if len(absent):  # a class without training examples would be an output unit no example ever trains
            raise DataError(
                f"{path}: y has labels 0..{int(y.max())} but no example of {label_list(absent)}; labels are the "
                "classes 0..K-1, each with examples: renumber them (np.unique(y, return_inverse=True)[1])"
            )
    if len(y) and int(y.max()) == 0:  # every output would be the one class: error 0, and nothing learned
        raise DataError(
            f"{path}: every example of y has label 0: a classifier needs at least two classes to tell apart; add "
            "examples of another class"
        )
