"""Deterministic splits: stratified by class, seeded, as sorted index arrays.

A dataset without an official test split gets a fixed stratified test split (TEST_FRACTION, seed
TEST_SPLIT_SEED), the same for every run; validation splits and training subsamples are drawn from
what is left with the run's split seed (`harness.data.datasets.load_dataset`).
"""

from __future__ import annotations

import numpy as np

from harness.data.validation import Raw

TEST_SPLIT_SEED = 0  # fixed: every run of a dataset without an official test split sees the same test set
TEST_FRACTION = 0.2


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
    for c, k in zip(classes, take, strict=False):
        idx = np.flatnonzero(y == c)
        chosen.append(idx[rng.permutation(len(idx))[:k]])
    return np.sort(np.concatenate(chosen))


def pool_and_test(raw: Raw) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Indices (pool, test) of the fixed stratified test split of a dataset without an official
    one; (None, None) when it has one."""
    if raw.x_test is not None:
        return None, None
    return stratified_split(np.asarray(raw.y), TEST_FRACTION, TEST_SPLIT_SEED)


def n_classes(y: np.ndarray, y_test: np.ndarray) -> int:
    """K, the labels being 0..K-1: one more than the largest label of either split."""
    return int(max(np.max(y), np.max(y_test) if len(y_test) else 0) + 1)
