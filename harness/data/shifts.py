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

Other data get the sets that fit them (`misfits` says which do not; `harness.inference.robustness.fit_robustness`
chooses them):

- mnist1d (1-D signals (1, 40)): corruptions drawn from the mnist1d generator itself
  (`mnist1d.transform.transform`), new examples with the test split's labels, with settings harsher
  than the published ones that made the training data (MNIST1D_CORRUPTIONS): `mnist1d_noise`
  (correlated and iid noise scales), `mnist1d_scale` (the range of amplitude scaling),
  `mnist1d_shift` (the range of circular translation). They are mapped into the units of the
  published data and standardized with the run's statistics.
- any data: `gaussian_noise`, the standardized test examples plus iid Gaussian noise of sigma
  0.25, 0.5, 1.0 (severities 1, 2, 3) standard deviations of the training data.
- `permuted` fits any data (one fixed permutation of the input positions); rotations need square
  images, `patches` images, `fashion-mnist` 28 x 28 images.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from harness.data.datasets import Dataset
from harness.errors import ConfigError, DataError

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
# mnist1d generator settings at severity 1, 2, 3 (`mnist1d.data.get_dataset_args` overridden).
# The published data use corr_noise_scale 0.25, iid_noise_scale 0.02, scale_coeff 0.4 (amplitude
# times 1 + 0.4 (u - 1/2)) and max_translation 48 (a circular shift of 0..47 of 72 positions).
MNIST1D_CORRUPTIONS = {
    "mnist1d_noise": (
        {"corr_noise_scale": 0.3, "iid_noise_scale": 0.04},
        {"corr_noise_scale": 0.4, "iid_noise_scale": 0.08},
        {"corr_noise_scale": 0.5, "iid_noise_scale": 0.15},
    ),
    "mnist1d_scale": ({"scale_coeff": 0.8}, {"scale_coeff": 1.2}, {"scale_coeff": 1.6}),
    "mnist1d_shift": ({"max_translation": 56}, {"max_translation": 64}, {"max_translation": 72}),
}
# A 1-D CNN (16, 32 channels, 128 units, 30 epochs) with 22% test error errs on about 28, 52, 70% of
# the noisy sets, 33, 39, 42% of the scaled ones and 30, 38, 41% of the translated ones: a spread
# over the mild, moderate and severe bands of the claims.
GENERIC_CORRUPTIONS = {"gaussian_noise": (0.25, 0.5, 1.0)}  # sigma in standard deviations of the training data
# every corruption by name; image corruptions first, so that their seeds (`_generator`) never move
ALL_CORRUPTIONS = {**CORRUPTIONS, **MNIST1D_CORRUPTIONS, **GENERIC_CORRUPTIONS}
MNIST1D_SHAPE = (1, 40)
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


def rotations_fit(shape: tuple[int, ...]) -> bool:
    """Whether examples of `shape` can be rotated: square images (C, H, H) only (a rotated H x W
    image would be cropped or padded to another shape)."""
    return len(shape) == 3 and shape[1] == shape[2]


def corruption_fits(name: str, shape: tuple[int, ...], dataset: str) -> bool:
    """Whether corruption `name` applies to examples of `shape` from `dataset`: the image
    corruptions to images, the mnist1d ones to mnist1d's signals, gaussian_noise to anything."""
    if name in CORRUPTIONS:
        return len(shape) == 3
    if name in MNIST1D_CORRUPTIONS:
        return dataset == "mnist1d" and tuple(shape) == MNIST1D_SHAPE
    return name in GENERIC_CORRUPTIONS


def unseen_fits(name: str, shape: tuple[int, ...]) -> bool:
    """Whether unseen set `name` can be made for examples of `shape` (files aside): permuted for
    any data, patches for images, fashion-mnist for 28 x 28 images."""
    if name == "permuted":
        return True
    if name == "patches":
        return len(shape) == 3
    return name == "fashion-mnist" and len(shape) == 3 and tuple(shape[1:]) == (28, 28)


def misfits(shape: tuple[int, ...], dataset: str, angles=(), corruptions=(), unseen=()) -> list[str]:
    """In words, each listed set that cannot be made for examples of `shape` from `dataset`;
    empty when every one fits."""
    out = []
    turned = [a for a in angles if a % 360]
    if turned and not rotations_fit(shape):
        out.append(
            f"rotations ({', '.join(f'{a:g}' for a in turned)} degrees) need square images, not examples of shape "
            f"{tuple(shape)}"
        )
    for c in corruptions:
        if c not in ALL_CORRUPTIONS:
            out.append(f"corruption {c!r} is not known; known corruptions: {', '.join(ALL_CORRUPTIONS)}")
        elif not corruption_fits(c, shape, dataset):
            need = "images" if c in CORRUPTIONS else f"mnist1d's signals {MNIST1D_SHAPE}"
            out.append(f"corruption {c} needs {need}, not {dataset}'s examples of shape {tuple(shape)}")
    for u in unseen:
        if u not in UNSEEN:
            out.append(f"unseen set {u!r} is not known; known sets: {', '.join(UNSEEN)}")
        elif not unseen_fits(u, shape):
            out.append(
                f"unseen set {u} needs {'28 x 28 images' if u == 'fashion-mnist' else 'images'}, not examples of "
                f"shape {tuple(shape)}"
            )
    return out


def fashion_available(shape: tuple[int, ...]) -> bool:
    """Whether Fashion-MNIST's files are in data/ and its 28 x 28 images fit this input shape
    (images of any number of channels: the grayscale is repeated)."""
    from harness.data.datasets import load_raw

    if not unseen_fits("fashion-mnist", shape):
        return False
    try:
        raw = load_raw("fashion-mnist")
    except DataError:
        return False
    return tuple(raw.x.shape[-2:]) == tuple(shape[-2:])


def unseen_available(shape: tuple[int, ...]) -> tuple[str, ...]:
    """The unseen sets this machine can make for examples of `shape` (Fashion-MNIST needs its files)."""
    return tuple(u for u in UNSEEN if unseen_fits(u, shape) and (u != "fashion-mnist" or fashion_available(shape)))


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
    return np.random.default_rng([seed, list(ALL_CORRUPTIONS).index(name), severity])


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
        if name in ALL_CORRUPTIONS:
            raise ConfigError(
                f"corruption {name!r} is not an image corruption; image corruptions: {', '.join(CORRUPTIONS)}"
            )
        raise ConfigError(f"corruption {name!r} is not known; known corruptions: {', '.join(ALL_CORRUPTIONS)}")
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
    """The first `n` test images of Fashion-MNIST (n, C, H, W) in unit intensity (C copies of the
    grayscale image)."""
    from harness.data.datasets import load_raw

    raw = load_raw("fashion-mnist")
    x = raw.x_test if raw.x_test is not None else raw.x
    x = np.asarray(x[:n], dtype=np.float64).reshape(-1, 1, *shape[-2:])
    x = np.repeat(x, shape[0], axis=1)  # grayscale in every channel of the run's images
    return x / max(float(x.max()), 1e-12)


def mnist1d_signals(labels: np.ndarray, seed: int, **overrides) -> np.ndarray:
    """Raw MNIST-1D signals (N, 40) float64, one for each of `labels` (N,), made by the mnist1d
    generator (`mnist1d.transform.transform` of the digit templates) with its published settings
    and `overrides`, before the dataset-wide standardization of `make_dataset`.

    The generator draws from numpy's global random state: it is seeded with `seed` (< 2**32) and
    restored afterwards, so the signals are a function of (labels, seed, overrides) alone and no
    other code sees its draws."""
    from mnist1d.data import get_dataset_args, get_templates
    from mnist1d.transform import transform
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    unknown = sorted(set(overrides) - set(args))
    if unknown:
        raise ConfigError(f"mnist1d has no setting {unknown[0]!r}; its settings: {', '.join(args)}")
    args = ObjectView(args | overrides)
    templates = get_templates()
    saved = np.random.get_state()
    try:
        np.random.seed(seed)
        return (
            np.stack([transform(templates["x"][int(y)], templates["t"], args)[0] for y in labels])
            if len(labels)
            else np.zeros((0, 40))
        )
    finally:
        np.random.set_state(saved)


@functools.lru_cache(maxsize=1)
def mnist1d_published_scale() -> tuple[float, float]:
    """(mean, std) by which `make_dataset` standardized the published MNIST-1D signals: those of
    its 5,000 raw signals (500 per digit, seed 42; its shuffle and split move no value). Mapping new
    raw signals by them puts them in the units of the cached data (data/mnist1d.npz)."""
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    labels = np.repeat(np.arange(10), args.num_samples // 10)
    raw = mnist1d_signals(labels, args.seed)
    return float(raw.mean()), float(raw.std())


def _mnist1d_seed(name: str, severity: int, seed: int) -> int:
    """A 32-bit seed for numpy's global generator (what mnist1d draws from), per set."""
    return int(np.random.SeedSequence([seed, list(ALL_CORRUPTIONS).index(name), severity]).generate_state(1)[0])


def mnist1d_shifted(data: Dataset, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """New MNIST-1D examples (N, 1, 40) with the test split's labels (N,), made by the generator
    with the settings of corruption `name` at `severity`, standardized like the run's data."""
    if name not in MNIST1D_CORRUPTIONS:
        raise ConfigError(
            f"corruption {name!r} is not an mnist1d corruption; mnist1d corruptions: {', '.join(MNIST1D_CORRUPTIONS)}"
        )
    labels = data.y_test.cpu().numpy()
    raw = mnist1d_signals(labels, _mnist1d_seed(name, severity, seed), **MNIST1D_CORRUPTIONS[name][severity - 1])
    mean, std = mnist1d_published_scale()
    cached = ((raw - mean) / std).astype(np.float32)  # exactly as the published arrays are stored
    x = (cached.astype(np.float64) - data.mean) / data.std
    return torch.from_numpy(x.astype(np.float32).reshape(len(labels), *data.input_shape)).to(data.x_test.device)


def gaussian_noise(x: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """Standardized examples x (N, *shape) plus iid Gaussian noise of sigma GENERIC_CORRUPTIONS
    ["gaussian_noise"][severity - 1] (standard deviations of the training data), seeded."""
    sigma = GENERIC_CORRUPTIONS["gaussian_noise"][severity - 1]
    noise = _generator("gaussian_noise", severity, seed).standard_normal(tuple(x.shape))
    return (x.detach().cpu().double() + sigma * torch.from_numpy(noise)).float().to(x.device)


def evaluation_sets(
    data: Dataset,
    angles=ANGLES,
    corruptions=tuple(CORRUPTIONS),
    severities=SEVERITIES,
    unseen=("permuted", "patches"),
    seed: int = 0,
) -> list[EvalSet]:
    """The in-distribution test split (`test`), its rotations and corruptions, and the unseen sets,
    standardized like the run's data. Every listed set must fit the data (`misfits`; the defaults
    are the image sets, `harness.inference.robustness.fit_robustness` chooses those of other data).

    The shifted examples are made once per process for the last dataset and settings asked for: a
    worker evaluates one study's runs in turn, and they share their test split and its statistics."""
    problems = misfits(tuple(data.input_shape), data.name, angles, corruptions, unseen)
    if problems:
        raise ConfigError(
            f"{data.name} holds {data.kind} data of shape {tuple(data.input_shape)}: "
            + "; ".join(problems)
            + "; harness.inference.robustness.fit_robustness chooses the sets that fit the data"
        )
    bad = [s for s in severities if s not in SEVERITIES]
    if bad:
        raise ConfigError(f"severity={bad[0]}: severities are {', '.join(map(str, SEVERITIES))}")
    from harness.data.datasets import fingerprint

    # what makes the sets: the data and their statistics, the lists, each corruption's parameters
    # (and the generator's version for mnist1d), the seed; the parameters as a copy in words: a later
    # edit of a table cannot alter the key
    params = repr([(c, _parameters(c)) for c in corruptions])
    generator = _mnist1d_version() if any(c in MNIST1D_CORRUPTIONS for c in corruptions) else None
    key = (
        data.name,
        fingerprint(data.name),
        data.mean,
        data.std,
        tuple(data.x_test.shape),
        str(data.x_test.device),
        tuple(angles),
        params,
        generator,
        tuple(severities),
        tuple(unseen),
        seed,
    )
    if _SETS.get("key") != key:
        _SETS.clear()
        _SETS.update(key=key, sets=_shifted(data, angles, corruptions, severities, unseen, seed))
    y = data.y_test
    return [EvalSet("test", "none", 0.0, data.x_test, y)] + [
        EvalSet(n, sh, i, x, y if labelled else None) for n, sh, i, x, labelled in _SETS["sets"]
    ]


_SETS: dict = {}  # the last evaluation sets made in this process, under their key


def _parameters(name: str):
    """A corruption's parameters at severities 1, 2, 3, from the table its maker reads."""
    for table in (CORRUPTIONS, MNIST1D_CORRUPTIONS, GENERIC_CORRUPTIONS):
        if name in table:
            return table[name]
    raise ConfigError(f"corruption {name!r} is not known; known corruptions: {', '.join(ALL_CORRUPTIONS)}")


def _mnist1d_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mnist1d")
    except PackageNotFoundError:
        return "unknown"


def _shifted(data: Dataset, angles, corruptions, severities, unseen, seed: int) -> list[tuple]:
    """(name, shift, intensity, standardized examples, labelled) of every set but the test split."""
    shape = tuple(data.input_shape)
    n = len(data.y_test)
    unit_cache: list = []

    def unit() -> tuple[np.ndarray, float]:  # images in unit intensity, made only when an image set needs them
        if not unit_cache:
            raw, peak = _unit(data)
            unit_cache.append((raw / peak, peak))
        return unit_cache[0]

    def corrupted(name: str, s: int) -> torch.Tensor:
        if name in MNIST1D_CORRUPTIONS:
            return mnist1d_shifted(data, name, s, seed)
        if name in GENERIC_CORRUPTIONS:
            return gaussian_noise(data.x_test, s, seed)
        u, peak = unit()
        return _standardize(corrupt(u, name, s, seed), data, peak)

    def unseen_set(name: str) -> torch.Tensor:
        if name == "permuted" and not data.is_image:
            # a permutation of positions commutes with the scalar standardization: permute as they are
            flat = data.x_test.flatten(1)
            order = torch.from_numpy(np.random.default_rng(seed).permutation(flat.shape[1])).to(flat.device)
            return flat[:, order].reshape(data.x_test.shape)
        u, peak = unit()
        makers = {
            "permuted": lambda: permuted(u, seed),
            "patches": lambda: patches(n, shape, seed),
            "fashion-mnist": lambda: fashion(n, shape),
        }
        return _standardize(makers[name](), data, peak)

    out = [
        (f"rotation_{a:g}", "rotation", float(a), _standardize(rotate(unit()[0], a), data, unit()[1]), True)
        for a in angles
        if a % 360
    ]
    out += [
        (f"{name}_{s}", "corruption", float(s), corrupted(name, s), True) for name in corruptions for s in severities
    ]
    return out + [(u, "unseen", 0.0, unseen_set(u), False) for u in unseen]
