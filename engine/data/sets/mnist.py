"""MNIST and Fashion-MNIST: 28x28 grey images in the official IDX files, read from
`<data dir>/MNIST/raw/` and `<data dir>/FashionMNIST/raw/` (uncompressed, or the official `.gz`,
which are unpacked next to themselves on first use: the layout torchvision uses).

`--download` fetches missing files through engine/data/fetch.py: the official source (short timeout),
else Debian's `dataset-fashion-mnist` package (Fashion-MNIST only), every file checked. The digests:
the `.gz` MD5s are the published ones (zalandoresearch/fashion-mnist's README, torchvision's MNIST
resources); the content SHA-256s of Fashion-MNIST were measured on Debian's files
(dataset-fashion-mnist 0.0~git20200523.55506a9-1), whose `.gz` are recompressed copies of the official ones.
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np

from .. import DataError
from ..datasets import DOWNLOAD_HINT, finish, to_float
from ..fetch import Source, fetch
from .registry import register_dataset

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

MNIST = Source("MNIST", FILES, ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
               gz_md5={"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                       "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
                       "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
                       "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"})
FASHION = Source(
    "Fashion-MNIST", FILES, ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    gz_md5={"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
    sha256={"train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"},
    deb_package="dataset-fashion-mnist", deb_dir="usr/share/datasets/fashion-mnist")


@register_dataset("mnist", num_classes=10, channels=1, size=28, train_size=60000, test_size=10000, cpu=True, order=30,
                  presets={"mnist": {"note": "MNIST 28×28 (needs the files on disk, or --download)",
                                     "train": {"epochs": 8, "batch_size": 128}}})
def load_mnist(req):
    return load_idx(req, MNIST, "MNIST")


@register_dataset("fashion-mnist", num_classes=10,
                  class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                               "Bag", "Ankle boot"),
                  channels=1, size=28, train_size=60000, test_size=10000, aliases=("fashion_mnist", "fashionmnist"),
                  cpu=True, order=40,
                  presets={"fashion-mnist": {"note": "Fashion-MNIST 28×28, a stratified subset (CPU, --download "
                                                     "fetches it)",
                                             "recipes": "fashion", "data": {"per_class": 200, "test_per_class": 100},
                                             "train": {"epochs": 12}}})
def load_fashion(req):
    return load_idx(req, FASHION, "FashionMNIST")


def read_idx(path: Path, ndim: int, pretty: str) -> np.ndarray:
    """An IDX file of unsigned bytes (magic 0x0000 08 NDIM, big-endian sizes, then the data)."""
    fix = f"replace it with the official file or delete it and {DOWNLOAD_HINT}"
    data = path.read_bytes()
    head = 4 + 4 * ndim
    if len(data) < head or data[:4] != bytes((0, 0, 8, ndim)):
        raise DataError(f"{pretty}: {path} is not an IDX file of {ndim}-d unsigned bytes: {fix}")
    dims = struct.unpack(f">{ndim}I", data[4:head])
    if len(data) != head + int(np.prod(dims)):
        raise DataError(f"{pretty}: {path} holds {len(data) - head} bytes of data where its header says "
                        f"{int(np.prod(dims))} (shape {dims}): {fix}")
    return np.frombuffer(data, np.uint8, offset=head).reshape(dims)


def load_idx(req, src: Source, folder: str):
    """The four IDX files under `<root>/<folder>/raw/`, fetched first when asked and missing."""
    from engine.catalog import ALL_DATASETS

    raw = req.root / folder / "raw"
    _unpack_lone_gz(raw)
    missing = [f for f in FILES if not (raw / f).is_file()]
    if missing and req.download:
        fetch(src, raw)
        missing = [f for f in FILES if not (raw / f).is_file()]
    if missing:
        expected = ", ".join(str(raw / f) + "(.gz)" for f in FILES)
        raise DataError(
            f"{src.pretty} files not found under {req.root}: expected {expected} "
            f"(missing: {', '.join(missing)}). Either {DOWNLOAD_HINT}, or put the files there, or "
            f"point data.data_dir / $ECLAB_DATA at the folder that contains {folder}/"
        )
    tr_x, tr_y, te_x, te_y = (read_idx(raw / f, 3 if "images" in f else 1, src.pretty) for f in FILES)
    names = ALL_DATASETS[req.name].class_names or tuple(str(i) for i in range(10))
    for x, y, part in ((tr_x, tr_y, "train"), (te_x, te_y, "test")):
        if x.shape[1:] != (28, 28):
            raise DataError(f"{src.pretty} {part} images in {raw} are {x.shape[1:]}, expected 28x28: replace the "
                            f"files with the official ones or {DOWNLOAD_HINT}")
        if len(x) != len(y):
            raise DataError(f"{src.pretty} in {raw}: image and label files disagree on the number of samples; "
                            f"replace them with the official files or {DOWNLOAD_HINT}")
        if len(y) and int(y.max()) >= len(names):
            raise DataError(f"{src.pretty} {part} labels in {raw} are outside 0..{len(names) - 1}: the label file is "
                            f"corrupt; replace it with the official file or {DOWNLOAD_HINT}")
    return finish(to_float(tr_x[:, None].copy()), tr_y.astype(np.int64), to_float(te_x[:, None].copy()),
                  te_y.astype(np.int64), list(names), req.image_size)


def _unpack_lone_gz(raw: Path) -> None:
    """Official .gz files that sit alone are decompressed next to themselves."""
    for fname in FILES:
        plain, gz = raw / fname, raw / (fname + ".gz")
        if not plain.is_file() and gz.is_file():
            tmp = raw / (fname + ".partial")
            try:
                with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(tmp, plain)
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                tmp.unlink(missing_ok=True)
                raise DataError(
                    f"could not decompress {gz}: {e}. Replace it with an intact copy (or decompress it "
                    f"yourself to {plain}), or delete it and {DOWNLOAD_HINT}"
                ) from e
