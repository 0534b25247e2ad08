"""Shifted and unseen test sets, generated offline and deterministically from a run's dataset.

- Rotation (Ovadia et al. 2019): the test split rotated by an angle in degrees (0 to 180), bilinear,
  background filled; labels kept.
- Corruptions in the style of MNIST-C (Mu and Gilmer 2019), each at severities 1, 2, 3 with the
  parameter in CORRUPTIONS (lengths are stated for 28 x 28 images and scale with the image width,
  rounded to whole pixels, at least 1):
  - shot_noise: Poisson counts at rate r = 60, 20, 6 per unit intensity, divided by r;
  - impulse_noise: each pixel, with probability 0.03, 0.09, 0.2, set to black or white with equal
    chance;
  - gaussian_blur: a Gaussian filter of sigma 0.7, 1.1, 1.6 pixels;
  - motion_blur: a horizontal box filter 3, 5, 9 pixels long, background beyond the edges (MNIST-C
    streaks at a random angle);
  - shear: horizontal shear by a factor 0.2, 0.4, 0.7 about the centre (each row moves sideways by
    the factor times its height from the centre; rows below it move left), bilinear (MNIST-C picks
    the direction at random);
  - translate: each image moved 2, 4, 7 pixels along both axes with a random sign per axis and image
    (one of the four diagonal directions, as in MNIST-C; `translation_offsets`), background filled in;
  - centre_band: a vertical band of 2, 3, 5 columns through the centre set to white. This is not
    MNIST-C's `stripe`, which inverts the outer seven columns on each side and has no severity.
  Random corruptions draw from a generator seeded by (seed, corruption, severity), so every run sees
  the same images.
- Unseen classes (labels unknown): `permuted` (the test digits with one fixed permutation of their
  pixels: a sanity floor), `patches` (grayscale patches cut from the two photographs that
  scikit-learn installs, resized to the input size) and `fashion-mnist` (its test split, when its
  files are in data/ and its images match the input size).

Images are transformed in unit intensity (0 = background, 1 = the brightest pixel of the test
split) and standardized again with the run's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from .data import Dataset
from .errors import ConfigError, DataError

ANGLES = tuple(range(0, 181, 15))
CORRUPTIONS = {  # name: parameter at severity 1, 2, 3
    "shot_noise": (60.0, 20.0, 6.0),
    "impulse_noise": (0.03, 0.09, 0.2),
    "gaussian_blur": (0.7, 1.1, 1.6),
    "motion_blur": (3, 5, 9),
    "shear": (0.2, 0.4, 0.7),
    "translate": (2, 4, 7),
    "centre_band": (2, 3, 5),
}
SEVERITIES = (1, 2, 3)
UNSEEN = ("permuted", "patches", "fashion-mnist")


@dataclass
class EvalSet:
    """One evaluation set: name (e.g. rotation_60, shot_noise_2, permuted), shift (none, rotation,
    corruption, unseen), intensity (degrees, severity, or 0), standardized images x (N, *input_shape)
    and labels y (N,), or None for unseen classes."""

    name: str
    shift: str
    intensity: float
    x: torch.Tensor
    y: torch.Tensor | None


def fashion_available(shape: tuple[int, ...]) -> bool:
    """Whether Fashion-MNIST's files are in data/ and its images have this input shape."""
    from .data import load_raw

    try:
        raw = load_raw("fashion-mnist")
    except DataError:
        return False
    return tuple(raw.x.shape[1:]) == tuple(shape) or tuple(raw.x.shape[1:]) == tuple(shape[1:])


def unseen_available(shape: tuple[int, ...]) -> tuple[str, ...]:
    """The unseen sets this machine can make for images of `shape` (Fashion-MNIST needs its files)."""
    return tuple(u for u in UNSEEN if u != "fashion-mnist" or fashion_available(shape))


def _unit(data: Dataset) -> tuple[np.ndarray, float]:
    """The test images in raw intensity (N, C, H, W) and their peak (the brightest test pixel)."""
    raw = data.x_test.detach().cpu().double().numpy() * data.std + data.mean
    peak = float(raw.max())
    if peak <= 0:
        raise DataError(f"{data.name}: the test images are all background; nothing to shift")
    return raw, peak


def _standardize(unit: np.ndarray, data: Dataset, peak: float) -> torch.Tensor:
    x = (np.clip(unit, 0.0, 1.0) * peak - data.mean) / data.std
    return torch.from_numpy(x.astype(np.float32)).to(data.x_test.device)


def rotate(images: np.ndarray, angle: float) -> np.ndarray:
    """Images (N, C, H, W) in unit intensity rotated counter-clockwise by `angle` degrees about their centre."""
    if angle % 360 == 0:
        return images.copy()
    return ndimage.rotate(images, angle, axes=(3, 2), reshape=False, order=1, mode="constant", cval=0.0)


def _pixels(length: float, width: int) -> int:
    """A length stated for 28-pixel images, in whole pixels of images `width` pixels wide (at least 1)."""
    return max(1, round(length * width / 28.0))


def _generator(name: str, severity: int, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, list(CORRUPTIONS).index(name), severity])


def shift_images(images: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Images (N, C, H, W), image i moved by offsets[i] = (rows down, columns right) whole pixels
    (negative: up, left); content moved past the edge is lost and background (0) fills in."""
    out = np.zeros_like(images)
    h, w = images.shape[-2:]

    def span(d: int, n: int) -> tuple[slice, slice]:  # (source, destination) along an axis of length n
        m = min(abs(d), n)
        return (slice(0, n - m), slice(m, n)) if d >= 0 else (slice(m, n), slice(0, n - m))

    offsets = np.asarray(offsets, dtype=np.int64).reshape(len(images), 2)
    for dr, dc in np.unique(offsets, axis=0):  # a few distinct offsets: one slice copy each
        idx = np.flatnonzero((offsets == (dr, dc)).all(1))
        (r_src, r_dst), (c_src, c_dst) = span(int(dr), h), span(int(dc), w)
        out[idx, :, r_dst, c_dst] = images[idx, :, r_src, c_src]
    return out


def translation_offsets(n: int, severity: int, seed: int = 0, width: int = 28) -> np.ndarray:
    """The offsets (n, 2) (rows down, columns right, pixels) by which corruption `translate` at
    `severity` moves each of n images `width` pixels wide: its length along each axis, with a sign
    per axis and image drawn from the corruption's seeded generator."""
    d = _pixels(CORRUPTIONS["translate"][severity - 1], width)
    return d * _generator("translate", severity, seed).choice(np.array([-1, 1]), size=(n, 2))


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """Images (N, C, H, W) in unit intensity with corruption `name` at `severity` (1, 2, 3)."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"corruption {name!r} is not known; known corruptions: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ConfigError(f"severity={severity}: severities are {', '.join(map(str, SEVERITIES))}")
    param = CORRUPTIONS[name][severity - 1]
    width = images.shape[-1]
    rng = _generator(name, severity, seed)
    x = images.astype(np.float64)
    if name == "shot_noise":
        return rng.poisson(np.clip(x, 0, 1) * param) / param
    if name == "impulse_noise":
        hit = rng.random(x.shape) < param
        return np.where(hit, rng.integers(0, 2, x.shape).astype(np.float64), x)
    if name == "gaussian_blur":
        return ndimage.gaussian_filter(x, sigma=(0, 0, param * width / 28.0, param * width / 28.0))
    if name == "motion_blur":
        return ndimage.uniform_filter1d(x, size=_pixels(param, width), axis=3, mode="constant")
    if name == "shear":
        h = x.shape[2]
        # output (n, ch, r, c) reads input (n, ch, r, c + s (r - centre)): rows slide sideways in proportion to height
        matrix = np.eye(4)
        matrix[3, 2] = param
        return ndimage.affine_transform(x, matrix, offset=(0, 0, 0, -param * (h - 1) / 2), order=1, cval=0.0)
    if name == "translate":
        return shift_images(x, translation_offsets(len(x), severity, seed, width))
    band = _pixels(param, width)  # centre_band
    start = (width - band) // 2
    out = x.copy()
    out[..., start : start + band] = 1.0
    return out


def permuted(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The images with one fixed permutation of their pixel positions (the same for every image)."""
    n = images.shape[0]
    flat = images.reshape(n, -1)
    return flat[:, np.random.default_rng(seed).permutation(flat.shape[1])].reshape(images.shape)


def patches(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """`n` grayscale patches (n, C, H, W) in unit intensity, 28 x 28 crops of scikit-learn's two
    sample photographs at seeded positions, resized to H x W by area averaging."""
    from sklearn.datasets import load_sample_images

    photos = [im.astype(np.float64).mean(2) / 255.0 for im in load_sample_images().images]
    rng = np.random.default_rng(seed)
    out = np.empty((n, 28, 28))
    for i in range(n):
        im = photos[i % len(photos)]
        r, c = rng.integers(0, im.shape[0] - 28), rng.integers(0, im.shape[1] - 28)
        out[i] = im[r : r + 28, c : c + 28]
    t = torch.from_numpy(out)[:, None]
    if shape[-2:] != (28, 28):
        t = torch.nn.functional.adaptive_avg_pool2d(t, shape[-2:])
    return t.expand(n, shape[0], *shape[-2:]).numpy().copy()


def fashion(n: int, shape: tuple[int, ...]) -> np.ndarray:
    """The first `n` test images of Fashion-MNIST (n, C, H, W) in unit intensity."""
    from .data import load_raw

    raw = load_raw("fashion-mnist")
    x = raw.x_test if raw.x_test is not None else raw.x
    x = np.asarray(x[:n], dtype=np.float64).reshape(-1, *shape)
    return x / max(float(x.max()), 1e-12)


def evaluation_sets(data: Dataset, angles=ANGLES, corruptions=tuple(CORRUPTIONS), severities=SEVERITIES, unseen=("permuted", "patches"),
                    seed: int = 0) -> list[EvalSet]:
    """The in-distribution test split (`test`), its rotations and corruptions, and the unseen sets,
    standardized like the run's data. Needs image data (N, C, H, W).

    The shifted images are made once per process for the last dataset and settings asked for: a
    worker evaluates one study's runs in turn, and they share their test split and its statistics."""
    if not data.is_image:
        raise ConfigError(f"{data.name} is not image data: rotations, corruptions and unseen images need a 2-D dataset (e.g. mnist5k, digits)")
    for u in unseen:
        if u not in UNSEEN:
            raise ConfigError(f"unseen set {u!r} is not known; known sets: {', '.join(UNSEEN)}")
    from .data import fingerprint

    key = (data.name, fingerprint(data.name), data.mean, data.std, tuple(data.x_test.shape), str(data.x_test.device),
           tuple(angles), tuple(corruptions), tuple(severities), tuple(unseen), seed)
    if _SETS.get("key") != key:
        _SETS.clear()
        _SETS.update(key=key, sets=_shifted(data, angles, corruptions, severities, unseen, seed))
    y = data.y_test
    return [EvalSet("test", "none", 0.0, data.x_test, y)] + [EvalSet(n, sh, i, x, y if labelled else None) for n, sh, i, x, labelled in _SETS["sets"]]


_SETS: dict = {}  # the last evaluation sets made in this process, under their key


def _shifted(data: Dataset, angles, corruptions, severities, unseen, seed: int) -> list[tuple]:
    """(name, shift, intensity, standardized images, labelled) of every set but the test split."""
    raw, peak = _unit(data)
    unit = raw / peak
    shape = tuple(data.input_shape)
    n = len(data.y_test)
    out = [(f"rotation_{a:g}", "rotation", float(a), _standardize(rotate(unit, a), data, peak), True) for a in angles if a % 360]
    out += [(f"{name}_{s}", "corruption", float(s), _standardize(corrupt(unit, name, s, seed), data, peak), True)
            for name in corruptions for s in severities]
    makers = {"permuted": lambda: permuted(unit, seed), "patches": lambda: patches(n, shape, seed), "fashion-mnist": lambda: fashion(n, shape)}
    return out + [(u, "unseen", 0.0, _standardize(makers[u](), data, peak), False) for u in unseen]
