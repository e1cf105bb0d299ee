"""Data: fixed digits split, planted teacher, byte-exact idx/CIFAR parsing, refused pickles."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from conftest import digits_tensors as conftest_digits

from phasetrans import data as D

# ----------------------------------------------------------------------------- digits


def test_digits_split_fixed_disjoint_and_standardised():
    Xtr, ytr, Xte, yte = D.digits_tensors()
    assert Xtr.shape == (1297, 64) and Xte.shape == (500, 64)
    assert ytr.dtype == torch.long and Xtr.dtype == torch.float32
    # identical to the shared test fixture
    assert all(torch.equal(a, b) for a, b in zip((Xtr, ytr, Xte, yte), conftest_digits()))
    # the split is a permutation of the 1797 samples: un-standardise and compare as multisets
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    assert torch.equal(torch.cat([ytr, yte]), torch.tensor(y[order]))
    raw_tr, _, raw_te, _ = D.digits_tensors(standardize=False, dtype=torch.float64)
    assert torch.equal(torch.cat([raw_tr, raw_te]), torch.tensor(X[order] / 16.0))
    assert len(set(order[:1297]) & set(order[1297:])) == 0
    X64 = D.digits_tensors(dtype=torch.float64)[0]
    assert torch.allclose(X64.mean(0), torch.zeros(64, dtype=torch.float64), atol=1e-10)
    raw_std = torch.tensor((X[order][:1297] / 16.0).std(0))
    assert torch.allclose(X64.std(0, unbiased=False), raw_std / (raw_std + 1e-6), atol=1e-12)
    images = D.digits_tensors(flatten=False)
    assert images[0].shape == (1297, 1, 8, 8) and images[2].shape == (500, 1, 8, 8)
    assert torch.equal(images[0].reshape(1297, 64), Xtr)


def test_digits_loaders_deterministic_shuffle_split_independent_of_seed():
    tr0, te0 = D.digits(batch_size=100, seed=0)
    tr0b, _ = D.digits(batch_size=100, seed=0)
    tr5, te5 = D.digits(batch_size=100, seed=5)
    order = [y for _, y in tr0]
    assert [len(y) for y in order] == [100] * 12 + [97]
    assert all(torch.equal(a, b) for a, b in zip(order, [y for _, y in tr0b]))
    assert not torch.equal(torch.cat(order), torch.cat([y for _, y in tr5]))
    assert len(te0) == 1 and torch.equal(te0.dataset.tensors[0], te5.dataset.tensors[0])
    assert torch.equal(next(iter(te0))[1], te0.dataset.tensors[1])  # test set in order
    with pytest.raises(ValueError, match="batch_size"):
        D.digits(batch_size=0)
    with pytest.raises(TypeError, match="dtype"):
        D.digits(dtype=torch.int64)
    with pytest.raises(TypeError, match="flatten"):
        D.digits(flatten="no")


def test_train_epoch_visits_every_sample_once():
    tr, _ = D.synthetic_images(37, shape=(2,), num_classes=3, batch_size=8, seed=1)
    seen = torch.cat([x for x, _ in tr])
    full = tr.dataset.tensors[0]
    assert seen.shape == full.shape
    key = lambda t: t[t[:, 0].argsort()]  # noqa: E731
    assert torch.equal(key(seen), key(full))


# ----------------------------------------------------------------------------- teacher-student


def test_teacher_student_classification():
    tr, te, teacher = D.teacher_student(num_samples=500, dim_in=10, hidden=(16, 8),
                                        num_classes=3, teacher_sparsity=0.75, seed=2,
                                        batch_size=64)
    Xtr, ytr = tr.dataset.tensors
    Xte, yte = te.dataset.tensors
    assert Xtr.shape == (400, 10) and Xte.shape == (100, 10)
    linears = [m for m in teacher if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(16, 10), (8, 16), (3, 8)]
    for m in linears:  # exactly round(0.75 * numel) zeros per layer
        assert int((m.weight == 0).sum()) == round(0.75 * m.weight.numel())
    with torch.no_grad():
        assert torch.equal(teacher(Xtr).argmax(1), ytr)
        assert torch.equal(teacher(Xte).argmax(1), yte)
    tr2, _, teacher2 = D.teacher_student(num_samples=500, dim_in=10, hidden=(16, 8),
                                         num_classes=3, teacher_sparsity=0.75, seed=2)
    assert torch.equal(tr2.dataset.tensors[0], Xtr)
    assert torch.equal(teacher2[0].weight, teacher[0].weight)
    # label noise: a fraction of labels replaced at random
    trn, _, _ = D.teacher_student(num_samples=500, dim_in=10, hidden=(16, 8), num_classes=3,
                                  teacher_sparsity=0.75, seed=2, noise=0.6)
    changed = (trn.dataset.tensors[1] != ytr).float().mean().item()
    assert 0.25 < changed < 0.55  # expected 0.6 * 2/3 = 0.4


def test_teacher_student_regression():
    tr, te, teacher = D.teacher_student(num_samples=50, dim_in=4, hidden=(), num_classes=None,
                                        teacher_sparsity=0.5, noise=0.0, seed=0,
                                        dtype=torch.float64)
    X, y = tr.dataset.tensors
    assert y.shape == (40, 1) and y.dtype == torch.float64
    with torch.no_grad():
        assert torch.equal(teacher(X), y)
    assert int((teacher[0].weight == 0).sum()) == 2
    _, _, _ = D.teacher_student(num_classes=None, noise=2.0)  # any std allowed for regression
    with pytest.raises(ValueError, match="teacher_sparsity"):
        D.teacher_student(teacher_sparsity=1.0)
    with pytest.raises(ValueError, match="noise"):
        D.teacher_student(noise=1.5)
    with pytest.raises(ValueError, match="num_classes"):
        D.teacher_student(num_classes=1)
    with pytest.raises(TypeError, match="hidden"):
        D.teacher_student(hidden=16)
    with pytest.raises(ValueError, match="test_fraction"):
        D.teacher_student(num_samples=4, test_fraction=0.01)


# ----------------------------------------------------------------------------- idx / MNIST


def idx_bytes(array: np.ndarray) -> bytes:
    assert array.dtype == np.uint8
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) \
        + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(folder, n_train=5, n_test=3, gz=False, size=28, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        if gz:
            with gzip.open(folder / (name + ".gz"), "wb") as f:
                f.write(idx_bytes(arr))
        else:
            (folder / name).write_bytes(idx_bytes(arr))
    return arrays


def test_read_idx_exact(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    out = D.read_idx(tmp_path / "a")
    assert out.dtype == np.uint8 and np.array_equal(out, arr)
    i32 = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "b").write_bytes(bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + i32.tobytes())
    assert D.read_idx(tmp_path / "b").tolist() == [1, -2, 70000]
    with gzip.open(tmp_path / "c.gz", "wb") as f:
        f.write(idx_bytes(arr))
    assert np.array_equal(D.read_idx(str(tmp_path / "c.gz")), arr)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "not an idx file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "not an idx file"),  # unknown type code
        (bytes([8, 0, 0x08, 1, 0, 0, 0, 1, 5]), "not an idx file"),  # bad leading bytes
        (bytes([0, 0, 0x08, 2, 0, 0, 0, 1]), "truncated"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2]), "says dims"),  # one byte short
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 1, 2]), "says dims"),  # one byte too many
    ],
)
def test_read_idx_corrupt(tmp_path, content, match):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        D.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_and_bad_gzip(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        D.read_idx(tmp_path / "nope")
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="x.gz"):
        D.read_idx(tmp_path / "x.gz")
    with pytest.raises(TypeError, match="path"):
        D.read_idx(3)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_exact_values(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    Xtr, ytr, Xte, yte = D.mnist_tensors(tmp_path, dtype=torch.float64)
    assert Xtr.shape == (5, 1, 28, 28) and Xte.shape == (3, 1, 28, 28)
    assert ytr.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert yte.dtype == torch.long
    pixels = torch.from_numpy(arrays["train-images-idx3-ubyte"]).double()[:, None] / 255
    assert torch.allclose(Xtr * 0.3081 + 0.1307, pixels, atol=1e-12)
    raw = D.mnist_tensors(tmp_path, normalize=False, flatten=True)[2]
    assert raw.shape == (3, 784)
    assert torch.equal(raw * 255, torch.from_numpy(arrays["t10k-images-idx3-ubyte"])
                       .reshape(3, 784).float())
    tr, te = D.mnist(tmp_path, batch_size=2)
    assert [len(y) for _, y in tr] == [2, 2, 1] and len(te.dataset) == 3


def test_fashion_mnist_torchvision_layout(tmp_path):
    arrays = write_mnist(tmp_path / "FashionMNIST" / "raw", gz=True, seed=1)
    tr, te = D.fashion_mnist(tmp_path, batch_size=4, normalize=False)
    assert torch.equal(tr.dataset.tensors[1], torch.from_numpy(
        arrays["train-labels-idx1-ubyte"].astype(np.int64)))
    assert torch.equal(te.dataset.tensors[0][:, 0] * 255, torch.from_numpy(
        arrays["t10k-images-idx3-ubyte"]).float())
    tr2, _ = D.load_dataset("fashion_mnist", root=tmp_path, batch_size=4)
    assert tr2.dataset.tensors[0].shape == (5, 1, 28, 28)


def test_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        D.mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="root"):
        D.mnist(tmp_path / "missing")
    write_mnist(tmp_path, n_train=5)
    labels = np.zeros(4, dtype=np.uint8)  # 4 labels for 5 images
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        D.mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(5, 10, np.uint8)))
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        D.mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((5, 1), np.uint8)))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        D.mnist(tmp_path)
    with pytest.raises(ValueError, match="variant"):
        D.mnist_tensors(tmp_path, variant="kmnist")


# ----------------------------------------------------------------------------- CIFAR


def write_cifar10(folder, per_batch=4, test=3, bytes_keys=True, protocol=2, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", test)]:
        d = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             "labels": rng.integers(0, 10, n).tolist(), "batch_label": f"{name}"}
        batches[name] = d
        stored = {k.encode() if bytes_keys else k: v for k, v in d.items()}
        (folder / name).write_bytes(pickle.dumps(stored, protocol=protocol))
    return batches


@pytest.mark.parametrize("bytes_keys,protocol,nested", [(True, 2, True), (False, 5, False)])
def test_cifar10_exact_values(tmp_path, bytes_keys, protocol, nested):
    folder = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    batches = write_cifar10(folder, bytes_keys=bytes_keys, protocol=protocol)
    Xtr, ytr, Xte, yte = D.cifar_tensors(tmp_path, dtype=torch.float64)
    assert Xtr.shape == (20, 3, 32, 32) and Xte.shape == (3, 3, 32, 32)
    assert ytr.tolist() == sum((batches[f"data_batch_{i}"]["labels"] for i in range(1, 6)), [])
    assert yte.tolist() == batches["test_batch"]["labels"]
    mean = torch.tensor(D.CIFAR10_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(D.CIFAR10_STD, dtype=torch.float64).view(1, 3, 1, 1)
    raw = torch.from_numpy(batches["data_batch_1"]["data"]).double().view(4, 3, 32, 32)
    assert torch.allclose(Xtr[:4] * std + mean, raw / 255, atol=1e-12)
    # channel c of image i is bytes [1024c, 1024(c+1)) of its row, row-major 32×32
    assert torch.equal(raw[1, 2, 3], torch.from_numpy(
        batches["data_batch_1"]["data"][1, 2048 + 96:2048 + 128]).double())
    tr, te = D.cifar10(tmp_path, batch_size=8, num_train=10, num_test=2)
    assert len(tr.dataset) == 10 and len(te.dataset) == 2
    assert tr.dataset.tensors[0].dtype == torch.float32


def py2_cifar_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled as Python 2 cPickle writes it (str keys/data as BINSTRING, numpy.core)."""
    raw = data.tobytes()
    dtype = (b"cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xff"
             b"J\xff\xff\xff\xffK\x00tb")
    shape = b"M" + struct.pack("<H", data.shape[0]) + b"M" + struct.pack("<H", data.shape[1])
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
             b"(K\x01" + shape + b"\x86" + dtype + b"\x89T" + struct.pack("<I", len(raw)) + raw
             + b"tb")
    label_ops = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return (b"\x80\x02}(U\x04data" + array + b"U\x06labels" + label_ops
            + b"U\x0bbatch_labelU\x03abcu.")


def test_cifar10_python2_pickles(tmp_path):
    rng = np.random.default_rng(5)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, 2).tolist()
        batches[name] = (data, labels)
        (tmp_path / name).write_bytes(py2_cifar_pickle(data, labels))
    loaded = D.safe_load_pickle(tmp_path / "test_batch")
    assert set(loaded) == {"data", "labels", "batch_label"}
    assert np.array_equal(loaded["data"], batches["test_batch"][0])
    Xtr, ytr, Xte, yte = D.cifar_tensors(tmp_path, normalize=False)
    assert ytr.tolist() == sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert torch.equal(Xte.reshape(2, 3072) * 255,
                       torch.from_numpy(batches["test_batch"][0]).float())


def test_cifar100_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    content = {}
    for name, n in (("train", 6), ("test", 2)):
        content[name] = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                         b"fine_labels": rng.integers(0, 100, n).tolist(),
                         b"coarse_labels": rng.integers(0, 20, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(content[name], protocol=2))
    Xtr, ytr, _, yte = D.cifar_tensors(tmp_path, variant="cifar100")
    assert Xtr.shape == (6, 3, 32, 32)
    assert ytr.tolist() == content["train"][b"fine_labels"]
    assert yte.tolist() == content["test"][b"fine_labels"]
    tr, _ = D.cifar100(folder, label_mode="coarse")
    assert tr.dataset.tensors[1].tolist() == content["train"][b"coarse_labels"]
    tr2, _ = D.load_dataset("cifar100", root=tmp_path)
    assert torch.equal(tr2.dataset.tensors[0], Xtr)


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        D.cifar10(tmp_path)
    write_cifar10(tmp_path)
    os.remove(tmp_path / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        D.cifar10(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="data_batch_3"):
        D.cifar10(tmp_path)
    bad = {"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(bad))
    with pytest.raises(ValueError, match=r"\(N, 3072\)"):
        D.cifar10(tmp_path)
    bad = {"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(bad))
    with pytest.raises(ValueError, match="labels must be in 0..9"):
        D.cifar10(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8)}))
    with pytest.raises(ValueError, match="'labels'"):
        D.cifar10(tmp_path)
    with pytest.raises(ValueError, match="label_mode"):
        D.cifar100(tmp_path, label_mode="medium")


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_malicious_pickle_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0],
               b"x": _Evil(f"touch {marker}")}
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="data_batch_2.*(posix|nt).system.*run code"):
        D.cifar10(tmp_path)
    assert not marker.exists()
    (tmp_path / "e.pkl").write_bytes(pickle.dumps([_EvilEval()]))
    with pytest.raises(D.UnsafePickleError, match="builtins.eval"):
        D.safe_load_pickle(tmp_path / "e.pkl")
    # allowed content round-trips exactly
    ok = {"a": np.arange(6, dtype=np.int16).reshape(2, 3), "b": [1, 2.5, "s", b"by", (3,)]}
    for protocol in (2, 4, 5):
        (tmp_path / "ok.pkl").write_bytes(pickle.dumps(ok, protocol=protocol))
        back = D.safe_load_pickle(tmp_path / "ok.pkl")
        assert np.array_equal(back["a"], ok["a"]) and back["a"].dtype == np.int16
        assert back["b"] == ok["b"]
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        D.safe_load_pickle(tmp_path / "missing.pkl")


# ----------------------------------------------------------------------------- synthetic / dispatch


def test_synthetic_images():
    tr, te = D.synthetic_images(40, num_classes=10, seed=3, batch_size=16)
    X, y = tr.dataset.tensors
    assert X.shape == (40, 3, 32, 32) and X.dtype == torch.float32 and len(te.dataset) == 8
    assert int(y.min()) >= 0 and int(y.max()) <= 9
    tr2, _ = D.synthetic_images(40, num_classes=10, seed=3)
    assert torch.equal(tr2.dataset.tensors[0], X)
    tr3, _ = D.synthetic_images(40, num_classes=10, seed=4)
    assert not torch.equal(tr3.dataset.tensors[0], X)
    tr4, te4 = D.synthetic_images(6, shape=(5,), num_test=2)
    assert tr4.dataset.tensors[0].shape == (6, 5) and len(te4.dataset) == 2
    with pytest.raises(TypeError, match="shape"):
        D.synthetic_images(4, shape=32)
    with pytest.raises(ValueError, match=r"shape\[0\]"):
        D.synthetic_images(4, shape=(0, 3))


def test_load_dataset_dispatch():
    tr, te = D.load_dataset("digits", batch_size=64, flatten=False)
    assert tr.batch_size == 64 and tr.dataset.tensors[0].shape == (1297, 1, 8, 8)
    tr, te = D.load_dataset("teacher_student", num_samples=100, dim_in=3)
    assert tr.dataset.tensors[0].shape == (80, 3)
    tr, te = D.load_dataset("synthetic_cifar", num_samples=10)
    assert tr.dataset.tensors[0].shape == (10, 3, 32, 32)
    assert set(D.DATASET_NAMES) == {"digits", "teacher_student", "mnist", "fashion_mnist",
                                    "cifar10", "cifar100", "synthetic_cifar"}
    with pytest.raises(ValueError, match="name"):
        D.load_dataset("imagenet")
    with pytest.raises(ValueError, match="root is required"):
        D.load_dataset("cifar10")
    with pytest.raises(ValueError, match="root must be None"):
        D.load_dataset("digits", root="/tmp")
    with pytest.raises(TypeError, match="variant"):
        D.fashion_mnist("/tmp", variant="mnist")


def test_the_package_offers_every_name_of_the_old_module():
    import typing

    from phasetrans.data import registry

    old = {
        "DATASET_NAMES", "DATASET_INFO", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN",
        "CIFAR100_STD", "MNIST_MEAN", "MNIST_STD", "FASHION_MNIST_MEAN", "FASHION_MNIST_STD",
        "make_loaders", "digits_tensors", "digits", "teacher_student", "read_idx",
        "mnist_tensors", "mnist", "fashion_mnist", "safe_load_pickle", "UnsafePickleError",
        "cifar_tensors", "cifar10", "cifar100", "synthetic_images", "load_dataset",
    }
    assert set(D.__all__) == old
    for name in old:
        value = getattr(D, name)
        assert not isinstance(value, type(D)), name  # a function, not a submodule shadowing it
        if callable(value):
            assert value.__module__.startswith("phasetrans.data."), name
    assert typing.get_args(registry.DatasetName) == D.DATASET_NAMES
    assert issubclass(D.UnsafePickleError, pickle.UnpicklingError)
