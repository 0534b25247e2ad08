import functools
import gzip
import hashlib
import http.server
import math
import os
import pickle
import struct
import tarfile
import threading

import numpy as np
import pytest
import torch

from harness.config import DATASETS, DataConfig
from harness.data.datasets import describe, fingerprint, load_dataset, load_raw, missing_files
from harness.data.fetch import fetch
from harness.data.formats import read_idx, safe_unpickle
from harness.data.registry import SPECS, DataInfo, Source, data_dir
from harness.data.splits import stratified_split, stratified_subsample
from harness.errors import DataError


def idx_bytes(a: np.ndarray) -> bytes:
    a = np.asarray(a, dtype=np.uint8)
    return struct.pack(">BBBB", 0, 0, 0x08, a.ndim) + struct.pack(">" + "I" * a.ndim, *a.shape) + a.tobytes()


def write_mnist_like(folder, n_train=60, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, a in arrays.items():
        blob = idx_bytes(a)
        (folder / (name + (".gz" if gz else ""))).write_bytes(gzip.compress(blob) if gz else blob)
    return arrays


def test_stratified_split_is_exact_disjoint_and_seeded():
    y = np.repeat(np.arange(10), 50)
    rest, held = stratified_split(y, 0.2, seed=3)
    assert len(held) == 100 and len(rest) == 400
    assert np.array_equal(np.bincount(y[held]), np.full(10, 10))
    assert not set(rest) & set(held)
    assert np.array_equal(held, stratified_split(y, 0.2, seed=3)[1])
    assert not np.array_equal(held, stratified_split(y, 0.2, seed=4)[1])


def test_stratified_subsample_keeps_class_proportions():
    y = np.array([0] * 60 + [1] * 30 + [2] * 10)
    idx = stratified_subsample(y, 10, seed=0)
    assert len(idx) == 10 and np.array_equal(np.bincount(y[idx]), [6, 3, 1])


def test_mnist5k_splits_and_standardization():
    d = load_dataset(DataConfig())
    assert (
        d.x_train.shape == (3600, 1, 28, 28)
        and d.x_val.shape == (400, 1, 28, 28)
        and d.x_test.shape == (1000, 1, 28, 28)
    )
    assert d.n_classes == 10 and d.x_train.dtype == torch.float32
    # statistics come from the training split only: it is standardized exactly, the others nearly
    assert abs(d.x_train.double().mean().item()) < 1e-5 and abs(d.x_train.double().std().item() - 1) < 1e-3
    assert torch.equal(torch.bincount(d.y_test), torch.full((10,), 100))
    other = load_dataset(DataConfig(split_seed=1))
    assert torch.equal(other.y_test, d.y_test)  # the test split never moves
    assert not torch.equal(other.x_val * other.std + other.mean, d.x_val * d.std + d.mean)


def test_train_size_subsamples_and_too_large_is_an_error():
    d = load_dataset(DataConfig(name="digits", train_size=100))
    assert len(d.y_train) == 100 and torch.bincount(d.y_train).min() >= 9
    with pytest.raises(DataError, match=r"data.train_size=5000 is larger than the 1295 training examples of digits"):
        load_dataset(DataConfig(name="digits", train_size=5000))


def test_mnist1d_is_a_one_channel_signal_with_its_published_split():
    d = load_dataset(DataConfig(name="mnist1d", val_fraction=0.1))
    assert (
        d.input_shape == (1, 40)
        and d.kind == "signal"
        and len(d.y_test) == 1000
        and len(d.y_train) + len(d.y_val) == 4000
    )
    with np.load(
        data_dir() / "mnist1d.npz"
    ) as z:  # the cache keeps the generator's (N, 40): the loader adds the channel
        assert z["x"].shape == (4000, 40) and np.array_equal(load_raw("mnist1d").x[:, 0], z["x"])


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip_and_full_loader(tmp_path, monkeypatch, gz):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    arrays = write_mnist_like(tmp_path / "mnist", gz=gz)
    suffix = ".gz" if gz else ""
    got = read_idx(tmp_path / "mnist" / f"train-images-idx3-ubyte{suffix}")
    assert np.array_equal(got, arrays["train-images-idx3-ubyte"])
    d = load_dataset(DataConfig(name="mnist", val_fraction=0.5))
    assert len(d.y_test) == 20 and len(d.y_train) == 30 and d.input_shape == (1, 28, 28)


def test_corrupt_idx_files_are_named(tmp_path):
    a = np.zeros((3, 4, 4), dtype=np.uint8)
    (tmp_path / "bad_magic").write_bytes(b"\x12\x34" + idx_bytes(a)[2:])
    with pytest.raises(DataError, match="wrong magic number"):
        read_idx(tmp_path / "bad_magic")
    (tmp_path / "short").write_bytes(idx_bytes(a)[:-5])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(idx_bytes(a))[:-12])
    with pytest.raises(DataError, match="not a valid gzip file"):
        read_idx(tmp_path / "bad.gz")
    (tmp_path / "labels").write_bytes(idx_bytes(np.zeros(3)))
    with pytest.raises(DataError, match="expected 00000803"):
        read_idx(tmp_path / "labels", expect_ndim=3)


def test_missing_files_say_where_and_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as exc:
        load_dataset(DataConfig(name="fashion-mnist"))
    msg = str(exc.value)
    assert str(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz") in msg
    assert "python -m harness data fetch fashion-mnist" in msg


def cifar_batch(n, seed, protocol=2):
    rng = np.random.default_rng(seed)
    d = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(np.arange(n) % 10)}
    d[b"labels"] = [int(v) for v in d[b"labels"]]
    return pickle.dumps(d, protocol=protocol)


def write_cifar(folder, n=20):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(cifar_batch(n, i))
    (folder / "test_batch").write_bytes(cifar_batch(n, 9, protocol=5))


def test_cifar_batches_load_through_the_safe_unpickler(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py")
    d = load_dataset(DataConfig(name="cifar10", val_fraction=0.2))
    assert d.input_shape == (3, 32, 32) and len(d.y_test) == 20 and len(d.y_train) == 80


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/harness-pwned",))


def test_unpickler_refuses_code(tmp_path):
    p = tmp_path / "evil"
    p.write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DataError, match="refusing to unpickle"):
        safe_unpickle(p)
    assert not os.path.exists("/tmp/harness-pwned")


@pytest.fixture
def http_root(tmp_path):
    """A file server on 127.0.0.1 serving tmp_path/www; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_fetch_verifies_checksums(tmp_path, monkeypatch, http_root):
    www, url = http_root
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    arrays = write_mnist_like(www)
    files = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in www.iterdir()}
    got = fetch("mnist", sources={"mnist": Source("mnist", url, files)})
    assert sorted(p.name for p in got) == sorted(files)
    d = load_dataset(DataConfig(name="mnist", val_fraction=0.5))
    assert len(d.y_test) == len(arrays["t10k-labels-idx1-ubyte"])

    bad = dict(files, **{"t10k-labels-idx1-ubyte.gz": "0" * 32})
    dest = tmp_path / "data" / "other"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch("other", sources={"other": Source("other", url, bad)})
    leftovers = sorted(p.name for p in dest.iterdir())
    assert "t10k-labels-idx1-ubyte.gz" not in leftovers and not any(n.endswith(".part") for n in leftovers)


def test_fetch_unpacks_archives(tmp_path, monkeypatch, http_root):
    www, url = http_root
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(www / "cifar.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5((www / "cifar.tar.gz").read_bytes()).hexdigest()
    fetch("cifar10", sources={"cifar10": Source("cifar10", url, {"cifar.tar.gz": md5}, extract=True)})
    assert len(load_dataset(DataConfig(name="cifar10")).y_test) == 20


def test_cli_fetch_with_a_bad_mirror_exits_2_and_leaves_nothing(tmp_path, monkeypatch, http_root, capsys):
    from harness.cli import main

    www, url = http_root
    write_mnist_like(www)  # real file names, but not the real bytes: checksums cannot match
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    assert main(["data", "fetch", "mnist", "--mirror", url]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert list((tmp_path / "data" / "mnist").iterdir()) == []


def test_the_registry_names_the_datasets_config_accepts():
    """config sits below the data package and keeps its own tuple of names: it must be the registry's, in order."""
    assert tuple(SPECS) == DATASETS
    for name, spec in SPECS.items():
        assert spec.name == name and spec.info.name == name and spec.kind == spec.info.kind
        assert spec.embedded == (spec.source is None) == (name in ("mnist5k", "mnist1d", "digits"))


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DataError, match="known datasets: mnist5k, mnist1d, digits"):
        load_raw("svhn")


# ---------------------------------------------------------------------------------------------------
# What a dataset is: describe, missing_files


@pytest.mark.parametrize("name", ["mnist5k", "mnist1d", "digits"])
def test_metadata_of_embedded_datasets_equals_what_loading_gives(name):
    info = describe(name)
    assert info == SPECS[name].info == describe(name, files=False)
    d = load_dataset(DataConfig(name=name, val_fraction=0.0))
    assert (info.input_shape, info.n_examples, info.n_test, info.n_classes) == (
        d.input_shape,
        len(d.y_train),
        len(d.y_test),
        d.n_classes,
    )
    assert info.kind == d.kind and missing_files(name) == []


def test_standard_datasets_are_described_without_their_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))
    assert describe("mnist") == DataInfo("mnist", (1, 28, 28), "image", 60000, 10000, 10)
    assert describe("fashion-mnist", files=False) == DataInfo("fashion-mnist", (1, 28, 28), "image", 60000, 10000, 10)
    assert describe("cifar10") == DataInfo("cifar10", (3, 32, 32), "image", 50000, 10000, 10)
    assert missing_files("mnist") == [
        tmp_path / "mnist" / f"{stem}.gz"
        for stem in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ]
    assert [p.name for p in missing_files("cifar10")] == [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    assert list(tmp_path.iterdir()) == []  # nothing written
    write_mnist_like(tmp_path / "mnist", gz=False)  # 60 + 20 examples, unzipped: they count
    assert missing_files("mnist") == [] and describe("mnist") == DataInfo("mnist", (1, 28, 28), "image", 60, 20, 10)
    assert describe("mnist", files=False) == SPECS["mnist"].info  # metadata whenever asked
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").unlink()
    assert [p.name for p in missing_files("mnist")] == ["t10k-labels-idx1-ubyte.gz"]
    assert describe("mnist") == SPECS["mnist"].info
    with pytest.raises(DataError, match="unknown dataset 'svhn'"):
        describe("svhn")


# ---------------------------------------------------------------------------------------------------
# A user's .npz file


def _npz(path, **arrays):
    np.savez_compressed(path, **arrays)
    return str(path)


def test_npz_images_with_and_without_a_channel_axis_and_flat_features(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(50) % 5
    hw = _npz(tmp_path / "hw.npz", x=rng.integers(0, 256, (50, 6, 6)).astype(np.uint8), y=y)
    raw = load_raw(hw)
    assert raw.x.shape == (50, 1, 6, 6) and raw.x_test is None and raw.y.dtype == np.int64
    # no official test split: the fixed stratified 20%, 2 of each class's 10
    assert describe(hw) == DataInfo(hw, (1, 6, 6), "image", 40, 10, 5)
    chw = _npz(
        tmp_path / "chw.npz",
        x=rng.random((30, 3, 4, 4)),
        y=np.arange(30) % 3,
        x_test=rng.random((9, 3, 4, 4)),
        y_test=np.arange(9) % 3,
    )
    assert describe(chw) == DataInfo(chw, (3, 4, 4), "image", 30, 9, 3)
    flat = _npz(tmp_path / "flat.npz", x=rng.random((40, 7)).astype(np.float32), y=np.arange(40) % 4)
    d = load_dataset(DataConfig(name=flat, val_fraction=0.25))
    assert (
        d.input_shape == (7,) and d.kind == "features" and (len(d.y_train), len(d.y_val), len(d.y_test)) == (24, 8, 8)
    )
    assert describe(flat) == DataInfo(flat, (7,), "features", 32, 8, 4) and missing_files(flat) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chw.npz",
        "flat.npz",
        "hw.npz",
    ]  # nothing written beside them, no cache


def test_an_edited_npz_gets_a_new_fingerprint(tmp_path):
    x, y = np.random.default_rng(0).random((20, 3)), np.arange(20) % 2
    path = _npz(tmp_path / "d.npz", x=x, y=y)
    before = fingerprint(path)
    assert before.startswith("20+0:") and fingerprint(path) == before
    x[0, 0] += 1.0
    _npz(tmp_path / "d.npz", x=x, y=y)
    os.utime(path, ns=(1, 1))  # even with an older time stamp: the key is the file's size and time, and both changed
    assert fingerprint(path) != before
    assert describe(path).n_examples == 16


BROKEN_NPZ = {  # case: (arrays or bytes, words the message must hold)
    "missing": (None, ["does not exist", "numpy.savez_compressed"]),
    "not a zip": (b"x,y\n1,2\n", ["not a valid .npz file", "zip archive"]),
    "a .npy": ("npy", ["not a valid .npz file"]),
    "truncated": ("truncated", ["not a valid .npz file", "truncated"]),
    "pickle": (
        {"x": np.array([[1.0], [2.0]], dtype=object), "y": np.arange(2)},
        ["array 'x' holds Python objects", "never loads"],
    ),
    "no x": ({"X": np.zeros((4, 2)), "y": np.arange(4) % 2}, ["has no array 'x'", "arrays: X, y"]),
    "misspelt x_test": (
        {"x": np.random.rand(4, 2), "y": np.arange(4) % 2, "xtest": np.zeros((2, 2))},
        ["array named 'xtest'", "only x, y, x_test"],
    ),
    "no y": ({"x": np.zeros((4, 2))}, ["has no array 'y'", "arrays: x"]),
    "x_test alone": (
        {"x": np.random.rand(4, 2), "y": np.arange(4) % 2, "x_test": np.zeros((2, 2))},
        ["holds x_test but no y_test", "give both"],
    ),
    "y_test alone": (
        {"x": np.random.rand(4, 2), "y": np.arange(4) % 2, "y_test": np.arange(2)},
        ["holds y_test but no x_test"],
    ),
    "lengths": ({"x": np.random.rand(5, 2), "y": np.arange(4) % 2}, ["x holds 5 examples but y 4 labels"]),
    "nan": (
        {"x": np.where(np.eye(4, 3) > 0, np.nan, 1.0), "y": np.arange(4) % 2},
        ["x holds 3 NaN or infinite values"],
    ),
    "float labels": (
        {"x": np.random.rand(4, 2), "y": np.array([0.0, 1.0, 0.5, 1.0])},
        ["y holds float64 labels", "astype(np.int64)"],
    ),
    "negative labels": (
        {"x": np.random.rand(4, 2), "y": np.array([0, 1, -1, 1])},
        ["labels include -1", "never negative"],
    ),
    "labels from 1": (
        {"x": np.random.rand(4, 2), "y": np.array([1, 2, 1, 2])},
        ["smallest label of y is 1", "subtract 1"],
    ),
    "label gap": ({"x": np.random.rand(4, 2), "y": np.array([0, 3, 0, 3])}, ["no example of 1, 2", "renumber"]),
    "one-hot labels": (
        {"x": np.random.rand(4, 2), "y": np.eye(4, 2, dtype=np.int64)},
        ["y has shape (4, 2)", "argmax(1)"],
    ),
    "1-d x": ({"x": np.random.rand(4), "y": np.arange(4) % 2}, ["x has shape (4,)", "x[:, None]"]),
    "5-d x": (
        {"x": np.random.rand(4, 1, 2, 2, 2), "y": np.arange(4) % 2},
        ["x has shape (4, 1, 2, 2, 2)", "(N, C, H, W)"],
    ),
    "test shape": (
        {"x": np.random.rand(4, 3), "y": np.arange(4) % 2, "x_test": np.random.rand(2, 4), "y_test": np.arange(2)},
        ["x holds examples of shape (3,) but x_test of shape (4,)"],
    ),
    "unseen test label": (
        {"x": np.random.rand(4, 3), "y": np.arange(4) % 2, "x_test": np.random.rand(2, 3), "y_test": np.array([0, 2])},
        ["test labels include 2"],
    ),
    "strings": ({"x": np.array([["a"], ["b"]]), "y": np.arange(2)}, ["x holds <U1 values", "real numbers"]),
}


@pytest.mark.parametrize("case", list(BROKEN_NPZ))
def test_broken_npz_files_are_refused_naming_file_problem_and_fix(tmp_path, case):
    content, needles = BROKEN_NPZ[case]
    path = tmp_path / f"{case.replace(' ', '_')}.npz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "npy":
        np.save(tmp_path / "a.npy", np.arange(3))
        (tmp_path / "a.npy").rename(path)
    elif content == "truncated":
        _npz(path, x=np.random.rand(200, 20), y=np.arange(200) % 2)
        path.write_bytes(path.read_bytes()[:-100])
    elif content is not None:
        np.savez(path, **content)
    with pytest.raises(DataError) as exc:
        load_dataset(DataConfig(name=str(path)))
    msg = str(exc.value)
    assert str(path) in msg, msg
    for needle in needles:
        assert needle in msg, msg


@pytest.mark.parametrize("layout", ["hw", "chw", "flat"])
def test_a_users_npz_trains_and_evaluates_end_to_end(tmp_path, layout, store):
    from harness.config import RunConfig
    from harness.inference.coadaptation import CoadaptSettings
    from harness.inference.evaluation import MCSettings
    from harness.inference.robustness import RobustnessSettings, fit_robustness
    from harness.sweep.evaluations import Evaluations
    from harness.sweep.run import execute

    rng = np.random.default_rng(0)
    y = np.arange(120) % 3
    shape = {"hw": (8, 8), "chw": (2, 8, 8), "flat": (12,)}[layout]
    x = rng.normal(size=(120, *shape)) + y.reshape(-1, *[1] * len(shape))  # the class shifts every input: learnable
    path = _npz(tmp_path / f"{layout}.npz", x=x.astype(np.float32), y=y)
    info = describe(path)
    settings, notes = fit_robustness(
        RobustnessSettings(T=4, members=2, angles=(0, 90), corruptions=("shot_noise",), severities=(1,)), info
    )
    assert bool(notes) == (layout == "flat")
    cfg = RunConfig(experiment="npz").replace(
        **{
            "data.name": path,
            "data.val_fraction": 0.25,
            "model.widths": [16],
            "train.epochs": 3,
            "train.batch_size": 12,
        }
    )
    wanted = Evaluations(
        mc=MCSettings(T=4, streams=1, per_example=False), coadapt=CoadaptSettings(n_pairs=3), robustness=settings
    )
    rec = execute(cfg, store, evaluations=wanted)
    assert rec.row["status"] == "ok" and rec.row["dataset"] == path and rec.row["train_size"] == 72
    assert (
        rec.row["test_error"] < 0.5
    )  # three classes apart by one standard deviation per input: far better than chance (2/3)
    sh = store.read_table("shift", [rec.run_id])
    expected = {
        "hw": {"test", "rotation_90", "shot_noise_1", "permuted", "patches"},
        "chw": {"test", "rotation_90", "shot_noise_1", "permuted", "patches"},
        "flat": {"test", "gaussian_noise_1", "permuted"},
    }[layout]
    assert set(sh["set"]) - {"val"} == expected
    feats = store.read_table("features", [rec.run_id])
    assert len(feats) == 16 * math.prod(shape[-2:] if layout != "flat" else shape) and (
        layout != "flat" or feats.y.max() == 0
    )
    assert execute(cfg, store, evaluations=wanted).cached  # the same file: the same run


def test_a_replicate_is_a_seed_of_its_data_split_too():
    """Two seeds train on different subsamples of the same training pool and stop on different
    validation splits; the test set is the same examples for both; a fixed split_seed fixes it."""
    from harness.config import RunConfig

    def raw(d, split):  # the examples as stored, before standardization (up to float rounding)
        return (getattr(d, f"x_{split}").double() * d.std + d.mean).flatten(1).round(decimals=3)

    cfgs = [RunConfig(seed=s, data=DataConfig(name="digits", train_size=300)) for s in (0, 1)]
    a, b = (load_dataset(c.resolved_data()) for c in cfgs)
    assert cfgs[0].resolved_data().split_seed == 0 and cfgs[1].resolved_data().split_seed == 1
    assert torch.equal(raw(a, "test"), raw(b, "test")) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(raw(a, "val"), raw(b, "val")) and not torch.equal(raw(a, "train"), raw(b, "train"))
    pool = {tuple(r.tolist()) for d in (a, b) for part in ("train", "val") for r in raw(d, part)}
    full = load_dataset(DataConfig(name="digits", split_seed=0))
    assert pool <= {tuple(r.tolist()) for part in ("train", "val") for r in raw(full, part)}  # one pool, other draws
    assert not pool & {tuple(r.tolist()) for r in raw(full, "test")}
    fixed = [c.replace(**{"data.split_seed": 7}).resolved_data() for c in cfgs]
    assert fixed[0] == fixed[1] and fixed[0].split_seed == 7
