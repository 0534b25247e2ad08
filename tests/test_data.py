import functools
import gzip
import hashlib
import http.server
import os
import pickle
import struct
import tarfile
import threading

import numpy as np
import pytest
import torch

from harness.config import DataConfig
from harness.data import Source, fetch, load_dataset, read_idx, safe_unpickle, stratified_split, stratified_subsample
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
    assert d.x_train.shape == (3600, 1, 28, 28) and d.x_val.shape == (400, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
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


def test_mnist1d_uses_its_published_split():
    d = load_dataset(DataConfig(name="mnist1d", val_fraction=0.1))
    assert d.input_shape == (40,) and len(d.y_test) == 1000 and len(d.y_train) + len(d.y_val) == 4000


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


def test_unknown_dataset_lists_the_known_ones():
    from harness.data import load_raw

    with pytest.raises(DataError, match="known datasets: mnist5k, mnist1d, digits"):
        load_raw("svhn")
