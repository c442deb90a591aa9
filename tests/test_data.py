"""Tests for engine.data: loaders (on tiny files written in the real formats) and splits.

Nothing here touches the network: every loader call uses download=False.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct

import numpy as np
import pytest
import torch

from engine.data import (
    DATASETS,
    ArrayDataset,
    DataError,
    Splits,
    load_dataset,
    load_splits,
    make_pool,
    make_splits,
    save_splits,
    stratified_subsample,
)

# ----------------------------------------------------------------------------- file writers


def _write_idx_images(path, images: np.ndarray, gz: bool) -> None:
    """IDX3: big-endian magic 0x00000803, N, rows, cols, then uint8 pixels."""
    n, r, c = images.shape
    payload = struct.pack(">IIII", 0x00000803, n, r, c) + images.astype(np.uint8).tobytes()
    _write(path, payload, gz)


def _write_idx_labels(path, labels: np.ndarray, gz: bool) -> None:
    """IDX1: big-endian magic 0x00000801, N, then uint8 labels."""
    payload = struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes()
    _write(path, payload, gz)


def _write(path, payload: bytes, gz: bool) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        with open(path, "wb") as f:
            f.write(payload)


def _write_mnist(root, folder: str, gz: bool, n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    raw = os.path.join(root, folder, "raw")
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.arange(n) % 10
        _write_idx_images(os.path.join(raw, f"{prefix}-images-idx3-ubyte"), x, gz)
        _write_idx_labels(os.path.join(raw, f"{prefix}-labels-idx1-ubyte"), y, gz)
        data[prefix] = (x, y)
    return data


class _Py2Pickler(pickle._Pickler):
    """Writes pickles the way Python 2's cPickle wrote the official CIFAR files: protocol 2 with
    byte strings (and str) as BINSTRING opcodes, not Python 3's `_codecs.encode` wrapper."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        if isinstance(obj, str):
            obj = obj.encode("latin1")
        n = len(obj)
        head = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(head + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x (as in the official files) names the reconstruct helper numpy.core.multiarray
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")


def _write_cifar(root, kind: str, n_per_batch=6, n_test=8, seed=0):
    rng = np.random.default_rng(seed)
    if kind == "cifar10":
        folder, train_files, test_files, meta = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], [
            "test_batch"
        ], "batches.meta"
        label_key, n_cls = "labels", 10
        meta_obj = {"num_cases_per_batch": n_per_batch, "label_names": [f"c{i}" for i in range(10)], "num_vis": 3072}
    else:
        folder, train_files, test_files, meta = "cifar-100-python", ["train"], ["test"], "meta"
        label_key, n_cls = "fine_labels", 100
        meta_obj = {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"k{i}" for i in range(20)]}
    d = os.path.join(root, folder)
    os.makedirs(d, exist_ok=True)
    xs, ys = {}, {}
    for part, files in (("train", train_files), ("test", test_files)):
        px, py = [], []
        for fn in files:
            n = n_per_batch if part == "train" else n_test
            x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
            y = [int(v) for v in rng.integers(0, n_cls, size=n)]
            entry = {"batch_label": f"batch {fn}", "data": x, label_key: y, "filenames": [f"img{i}.png" for i in range(n)]}
            if kind == "cifar100":
                entry["coarse_labels"] = [v // 5 for v in y]
            with open(os.path.join(d, fn), "wb") as f:
                f.write(_py2_pickle(entry))
            px.append(x)
            py += y
        xs[part], ys[part] = np.concatenate(px), np.asarray(py)
    with open(os.path.join(d, meta), "wb") as f:
        f.write(_py2_pickle(meta_obj))
    return xs, ys


def _write_pngs(folder, classes, per_class=4, size=(10, 12), mode="RGB", seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in classes:
        os.makedirs(os.path.join(folder, c), exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).convert(mode).save(
                os.path.join(folder, c, f"img{i}.png")
            )


def _denorm(ds: ArrayDataset) -> torch.Tensor:
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1)
    std = torch.tensor(ds.std).view(1, -1, 1, 1)
    return ds.x * std + mean


# ----------------------------------------------------------------------------- loaders


def test_dataset_names():
    assert DATASETS == ("digits", "teach", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder")


def test_digits_loads_normalised():
    train, test = load_dataset("digits")
    assert test is None
    assert tuple(train.x.shape) == (1797, 1, 8, 8)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert sorted(torch.unique(train.y).tolist()) == list(range(10))
    assert train.classes == [str(i) for i in range(10)]
    assert (train.num_classes, train.in_channels, train.image_size, len(train)) == (10, 1, 8, 1797)
    assert abs(float(train.x.mean())) < 1e-4
    assert abs(float(train.x.std()) - 1.0) < 1e-3
    # de-normalising gives back the [0, 1] scaled pixels (0..16 / 16)
    pix = _denorm(train) * 16
    assert torch.allclose(pix, pix.round(), atol=1e-3) and float(pix.min()) > -1e-3 and float(pix.max()) < 16 + 1e-3


def test_digits_resize_and_unknown_name():
    train, _ = load_dataset("digits", image_size=16)
    assert tuple(train.x.shape) == (1797, 1, 16, 16)
    with pytest.raises(DataError, match="unknown data set 'svhn'.*choose one of digits"):
        load_dataset("svhn")
    with pytest.raises(DataError, match="image_size"):
        load_dataset("digits", image_size=0)


@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", True), ("fashion-mnist", "FashionMNIST", False)])
def test_mnist_family_reads_idx_files(tmp_path, name, folder, gz):
    written = _write_mnist(tmp_path, folder, gz=gz)
    train, test = load_dataset(name, data_dir=tmp_path, download=False)
    assert tuple(train.x.shape) == (20, 1, 28, 28) and tuple(test.x.shape) == (10, 1, 28, 28)
    assert train.y.tolist() == written["train"][1].tolist() and test.y.tolist() == written["t10k"][1].tolist()
    assert train.num_classes == 10 and train.in_channels == 1 and train.image_size == 28
    if name == "mnist":
        assert train.classes == [str(i) for i in range(10)]
    else:
        assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert abs(float(train.x.mean())) < 1e-4  # train statistics ...
    assert test.mean == train.mean and test.std == train.std  # ... applied to test too
    for ds, key in ((train, "train"), (test, "t10k")):
        back = (_denorm(ds)[:, 0] * 255).round().to(torch.uint8).numpy()
        np.testing.assert_array_equal(back, written[key][0])
    if gz:  # the .gz files were unpacked next to themselves for torchvision
        assert (tmp_path / folder / "raw" / "train-images-idx3-ubyte").is_file()


def test_mnist_corrupt_gz_is_data_error(tmp_path):
    _write_mnist(tmp_path, "MNIST", gz=True)
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="could not decompress .*train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=tmp_path)


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_reads_official_batch_format(tmp_path, kind):
    xs, ys = _write_cifar(tmp_path, kind)
    train, test = load_dataset(kind, data_dir=str(tmp_path))
    n_train = 30 if kind == "cifar10" else 6
    assert tuple(train.x.shape) == (n_train, 3, 32, 32) and tuple(test.x.shape) == (8, 3, 32, 32)
    assert train.y.dtype == torch.int64 and train.y.tolist() == ys["train"].tolist()
    assert test.y.tolist() == ys["test"].tolist()
    assert train.num_classes == (10 if kind == "cifar10" else 100)
    assert train.classes[1] == ("c1" if kind == "cifar10" else "f1")
    assert train.in_channels == 3 and train.image_size == 32
    m = train.x.mean(dim=(0, 2, 3))
    assert torch.allclose(m, torch.zeros(3), atol=1e-4)
    # row-major 3072 = 3 x 32 x 32 (channel planes R, G, B)
    back = (_denorm(test) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(back, xs["test"].reshape(-1, 3, 32, 32))


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_cifar_unpickler_refuses_foreign_globals(tmp_path):
    _write_cifar(tmp_path, "cifar10")
    target = str(tmp_path / "pwned")
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({"data": _Evil(target), "labels": []}, f, protocol=2)
    with pytest.raises(DataError, match="data_batch_3 is not an official CIFAR-10 batch file"):
        load_dataset("cifar10", data_dir=tmp_path)
    assert not os.path.exists(target)


def test_cifar_bad_shape_and_truncated(tmp_path):
    _write_cifar(tmp_path, "cifar100")
    d = tmp_path / "cifar-100-python"
    (d / "test").write_bytes(_py2_pickle({"data": np.zeros((2, 100), np.uint8), "fine_labels": [0, 1]}))
    with pytest.raises(DataError, match=r"'data' should be a uint8 array of shape \(N, 3072\)"):
        load_dataset("cifar100", data_dir=tmp_path)
    (d / "test").write_bytes((d / "train").read_bytes()[:50])
    with pytest.raises(DataError, match=r"cifar-100-python.test .*official CIFAR-100 archive"):
        load_dataset("cifar100", data_dir=tmp_path)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mnist", os.path.join("MNIST", "raw", "train-images-idx3-ubyte")),
        ("fashion-mnist", os.path.join("FashionMNIST", "raw", "t10k-labels-idx1-ubyte")),
        ("cifar10", os.path.join("cifar-10-batches-py", "data_batch_1")),
        ("cifar100", os.path.join("cifar-100-python", "train")),
    ],
)
def test_missing_files_without_download(tmp_path, name, expected):
    with pytest.raises(DataError) as e:
        load_dataset(name, data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert str(tmp_path / expected) in msg
    assert "--download" in msg and "data.download=true" in msg


def test_default_data_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ECLAB_DATA", str(tmp_path / "store"))
    with pytest.raises(DataError, match="--download") as e:
        load_dataset("cifar10")
    assert str(tmp_path / "store" / "cifar-10-batches-py" / "test_batch") in str(e.value)
    _write_mnist(tmp_path / "store", "MNIST", gz=False)
    train, test = load_dataset("mnist")
    assert len(train) == 20 and len(test) == 10


def test_imagefolder_flat(tmp_path):
    _write_pngs(tmp_path / "imgs", ["cat", "ant", "bee"], per_class=4)
    (tmp_path / "imgs" / "ant" / "notes.txt").write_text("ignored")
    train, test = load_dataset("imagefolder", data_dir=tmp_path / "imgs")
    assert test is None
    assert tuple(train.x.shape) == (12, 3, 32, 32)  # default 32, RGB
    assert train.classes == ["ant", "bee", "cat"]  # sorted like torchvision's ImageFolder
    assert train.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert torch.allclose(train.x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    small, _ = load_dataset("imagefolder", data_dir=tmp_path / "imgs", image_size=8)
    assert tuple(small.x.shape) == (12, 3, 8, 8)


def test_imagefolder_train_test_and_grayscale(tmp_path):
    root = tmp_path / "split"
    _write_pngs(root / "train", ["a", "b", "c"], per_class=4, mode="L")
    _write_pngs(root / "test", ["b", "c"], per_class=2, seed=1)
    train, test = load_dataset("imagefolder", data_dir=root, image_size=16)
    assert tuple(train.x.shape) == (12, 3, 16, 16) and tuple(test.x.shape) == (4, 3, 16, 16)
    assert train.classes == test.classes == ["a", "b", "c"]
    assert test.y.tolist() == [1, 1, 2, 2]  # labels follow the train class list
    assert test.mean == train.mean


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("imagefolder", data_dir=tmp_path / "nope")
    with pytest.raises(DataError, match="needs data.data_dir"):
        load_dataset("imagefolder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        load_dataset("imagefolder", data_dir=tmp_path / "empty")
    _write_pngs(tmp_path / "one_empty", ["a", "b"], per_class=2)
    (tmp_path / "one_empty" / "c").mkdir()
    with pytest.raises(DataError, match=r"class folder .*c has no images"):
        load_dataset("imagefolder", data_dir=tmp_path / "one_empty")
    _write_pngs(tmp_path / "bad" / "train", ["a"], per_class=2)
    _write_pngs(tmp_path / "bad" / "test", ["a", "z"], per_class=1)
    with pytest.raises(DataError, match=r"class folders \['z'\]"):
        load_dataset("imagefolder", data_dir=tmp_path / "bad")
    _write_pngs(tmp_path / "half" / "train", ["a"], per_class=1)
    with pytest.raises(DataError, match="no test/ folder"):
        load_dataset("imagefolder", data_dir=tmp_path / "half")
    _write_pngs(tmp_path / "broken", ["a"], per_class=1)
    (tmp_path / "broken" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"could not read image .*x.png"):
        load_dataset("imagefolder", data_dir=tmp_path / "broken")


# ----------------------------------------------------------------------------- splits


def _labels(n_per_class=20, k=10):
    return np.repeat(np.arange(k), n_per_class)


def _check_invariants(s: Splits, labels, n_pool):
    for name in ("train_idx", "test_idx", "forget_idx", "retain_idx", "forget_test_idx", "retain_test_idx"):
        a = getattr(s, name)
        assert a.dtype == np.int64 and a.ndim == 1, name
        assert np.all(np.diff(a) > 0), f"{name} not sorted/distinct"
    assert len(np.intersect1d(s.train_idx, s.test_idx)) == 0
    assert np.array_equal(np.union1d(s.train_idx, s.test_idx), np.arange(n_pool))
    assert len(np.intersect1d(s.forget_idx, s.retain_idx)) == 0
    assert np.array_equal(np.union1d(s.forget_idx, s.retain_idx), s.train_idx)
    assert np.array_equal(np.union1d(s.forget_test_idx, s.retain_test_idx), s.test_idx)
    assert len(np.intersect1d(s.forget_test_idx, s.retain_test_idx)) == 0


def test_make_pool_concatenates():
    tr = ArrayDataset(torch.zeros(5, 1, 4, 4), torch.arange(5) % 2, ["a", "b"])
    te = ArrayDataset(torch.ones(3, 1, 4, 4), torch.tensor([1, 0, 1]), ["a", "b"])
    pool = make_pool(tr, te)
    assert len(pool) == 8 and pool.y.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert float(pool.x[5:].min()) == 1.0 and float(pool.x[:5].max()) == 0.0
    assert make_pool(tr, None) is tr
    with pytest.raises(DataError, match="different class lists"):
        make_pool(tr, ArrayDataset(torch.ones(3, 1, 4, 4), torch.tensor([1, 0, 1]), ["a", "c"]))


def test_classwise_official_split():
    y_train, y_test = _labels(20), _labels(5)
    pool = np.concatenate([y_train, y_test])
    s = make_splits(pool, len(y_train), 10, [3, 7], None, seed=0)
    _check_invariants(s, pool, len(pool))
    assert np.array_equal(s.train_idx, np.arange(200)) and np.array_equal(s.test_idx, np.arange(200, 250))
    assert set(pool[s.forget_idx]) == {3, 7} and len(s.forget_idx) == 40
    assert not np.isin(pool[s.retain_idx], [3, 7]).any()
    assert set(pool[s.forget_test_idx]) == {3, 7} and len(s.forget_test_idx) == 10
    assert np.all(s.forget_test_idx >= 200)
    assert not np.isin(pool[s.retain_test_idx], [3, 7]).any()


def test_split_by_seed_is_stratified_and_deterministic():
    pool = _labels(20)
    a = make_splits(pool, None, 10, [1], None, seed=5, test_fraction=0.25)
    b = make_splits(pool, None, 10, [1], None, seed=5, test_fraction=0.25)
    _check_invariants(a, pool, len(pool))
    for f in ("train_idx", "test_idx", "forget_idx", "retain_idx", "forget_test_idx", "retain_test_idx"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert np.array_equal(np.bincount(pool[a.test_idx], minlength=10), np.full(10, 5))  # 25% of 20 per class
    c = make_splits(pool, None, 10, [1], None, seed=6)
    assert not np.array_equal(a.test_idx, c.test_idx)


def test_train_test_split_independent_of_forget_request():
    pool = np.random.default_rng(0).integers(0, 10, size=300)
    requests = [([1], None), ([2, 3], None), ([0, 4, 9], None), (None, 0.1), (None, 0.3)]
    splits = [make_splits(pool, None, 10, fc, fr, seed=3) for fc, fr in requests]
    for s in splits:
        _check_invariants(s, pool, len(pool))
        assert np.array_equal(s.train_idx, splits[0].train_idx)
        assert np.array_equal(s.test_idx, splits[0].test_idx)


def test_random_mode():
    pool = np.concatenate([_labels(20), _labels(4)])
    s = make_splits(pool, 200, 10, None, 0.1, seed=0)
    _check_invariants(s, pool, len(pool))
    assert len(s.forget_idx) == 20 and len(s.retain_idx) == 180
    assert len(s.forget_test_idx) == 0 and np.array_equal(s.retain_test_idx, s.test_idx)
    again = make_splits(pool, 200, 10, None, 0.1, seed=0)
    assert np.array_equal(s.forget_idx, again.forget_idx)
    other = make_splits(pool, 200, 10, None, 0.1, seed=1)
    assert not np.array_equal(s.forget_idx, other.forget_idx)
    assert len(np.unique(pool[s.forget_idx])) > 1  # spread over classes, not class-wise


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(forget_classes=[12], forget_random=None), r"forget.classes \[12\] do not exist: this data set has classes 0\.\.9"),
        (dict(forget_classes=[-1, 3], forget_random=None), r"forget.classes \[-1\] do not exist"),
        (dict(forget_classes=[2, 2], forget_random=None), r"forget.classes lists \[2\] more than once"),
        (dict(forget_classes=list(range(10)), forget_random=None), "forget every class.*keep at least one"),
        (dict(forget_classes=[], forget_random=None), "forget.classes is empty"),
        (dict(forget_classes=[1.5], forget_random=None), "not integer class ids"),
        (dict(forget_classes=None, forget_random=None), "give exactly one of forget.classes .* or forget.random"),
        (dict(forget_classes=[1], forget_random=0.1), "give exactly one of"),
        (dict(forget_classes=None, forget_random=0.0), r"forget.random must be a share strictly between 0 and 1"),
        (dict(forget_classes=None, forget_random=1.0), r"forget.random must be a share strictly between 0 and 1"),
        (dict(forget_classes=None, forget_random=1.2), r"forget.random must be a share strictly between 0 and 1"),
        (dict(forget_classes=None, forget_random=0.001), r"selects 0 of \d+ training samples.*raise forget.random"),
        (dict(forget_classes=[1], forget_random=None, test_fraction=0.0), "data.test_fraction must be strictly between"),
        (dict(forget_classes=[1], forget_random=None, test_fraction=1.0), "data.test_fraction must be strictly between"),
        (dict(forget_classes=[1], forget_random=None, seed=-1), "seed must be an integer >= 0"),
    ],
)
def test_make_splits_validation(kwargs, pattern):
    args = dict(labels_pool=_labels(20), n_train_official=None, num_classes=10, seed=0)
    args.update(kwargs)
    with pytest.raises(DataError, match=pattern):
        make_splits(**args)


def test_empty_forget_set_is_error():
    pool = np.concatenate([np.repeat([0, 1, 2], 10), [3, 3]])  # class 3 only in the official test set
    with pytest.raises(DataError, match=r"forget.classes \[3\] have no training samples.*forget set is empty"):
        make_splits(pool, 30, 4, [3], None, seed=0)
    with pytest.raises(DataError, match="labels in the pool lie outside 0..2"):
        make_splits(pool, 30, 3, [1], None, seed=0)
    assert issubclass(DataError, ValueError)


def test_save_load_roundtrip(tmp_path):
    pool = _labels(20)
    s = make_splits(pool, None, 10, [4], None, seed=2)
    p = tmp_path / "sub" / "splits.npz"
    save_splits(s, p)
    back = load_splits(p)
    for f in ("train_idx", "test_idx", "forget_idx", "retain_idx", "forget_test_idx", "retain_test_idx"):
        assert np.array_equal(getattr(back, f), getattr(s, f)) and getattr(back, f).dtype == np.int64
    q = tmp_path / "splits_no_suffix"  # the name is kept as given (np.savez would append .npz)
    save_splits(s, q)
    assert q.is_file() and np.array_equal(load_splits(q).forget_idx, s.forget_idx)


def test_load_splits_errors(tmp_path):
    with pytest.raises(DataError, match=r"split file .*missing.npz does not exist"):
        load_splits(tmp_path / "missing.npz")
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError, match=r"split file .*garbage.npz is corrupt"):
        load_splits(bad)
    wrong_keys = tmp_path / "keys.npz"
    np.savez(wrong_keys, train_idx=np.arange(3))
    with pytest.raises(DataError, match=r"split file .*keys.npz has entries"):
        load_splits(wrong_keys)
    s = make_splits(_labels(4), None, 10, [4], None, seed=2)
    arrays = {k: getattr(s, k) for k in ("train_idx", "test_idx", "forget_idx", "retain_idx", "forget_test_idx", "retain_test_idx")}
    floats = tmp_path / "floats.npz"
    np.savez(floats, **{**arrays, "forget_idx": arrays["forget_idx"].astype(np.float64)})
    with pytest.raises(DataError, match=r"floats.npz: 'forget_idx' is float64"):
        load_splits(floats)
    objs = tmp_path / "objects.npz"
    np.savez(objs, **{**arrays, "test_idx": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(DataError, match=r"split file .*objects.npz is corrupt"):
        load_splits(objs)
    single = tmp_path / "single.npz"
    with open(single, "wb") as f:
        np.save(f, np.arange(3))
    with pytest.raises(DataError, match=r"split file .*single.npz is a single array"):
        load_splits(single)
    unsorted = tmp_path / "unsorted.npz"
    np.savez(unsorted, **{**arrays, "retain_idx": arrays["retain_idx"][::-1].copy()})
    with pytest.raises(DataError, match=r"unsorted.npz: 'retain_idx' is not a sorted list"):
        load_splits(unsorted)
    truncated = tmp_path / "trunc.npz"
    save_splits(s, truncated)
    truncated.write_bytes(truncated.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"trunc.npz"):
        load_splits(truncated)


def test_stratified_subsample():
    labels = np.concatenate([np.zeros(100), np.ones(100), np.full(3, 2)]).astype(np.int64)
    idx = np.arange(len(labels))
    sub = stratified_subsample(idx, labels, 23, seed=0)
    assert len(sub) == 23 and np.all(np.diff(sub) > 0) and sub.dtype == np.int64
    counts = np.bincount(labels[sub], minlength=3)
    assert counts[2] == 3 and sorted(counts[:2].tolist()) == [10, 10]  # small class gives its surplus away
    assert np.array_equal(sub, stratified_subsample(idx, labels, 23, seed=0))
    assert not np.array_equal(sub, stratified_subsample(idx, labels, 23, seed=1))
    part = idx[::2]
    sub2 = stratified_subsample(part, labels, 10, seed=0)
    assert np.isin(sub2, part).all() and len(sub2) == 10
    assert np.array_equal(stratified_subsample(part[::-1], labels, 1000, seed=0), part)  # all, sorted
    assert len(stratified_subsample(idx, labels, 0, seed=0)) == 0
