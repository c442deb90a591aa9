"""In-memory image data sets.

Every loader returns `(train, test)` as `ArrayDataset`s: float32 images (N, C, H, W) normalised
per channel with the mean/std of the training images, and int64 labels. `test` is None when the
data set has no official test split (digits, a flat imagefolder); the caller then splits by seed
(see `engine.data.splits`).

Nothing is downloaded unless `download=True`. Notes on the file formats:

* MNIST / Fashion-MNIST are read by `torchvision.datasets.MNIST` / `FashionMNIST`, which (in
  torchvision 0.29) look for the *uncompressed* IDX files in `<data_dir>/MNIST/raw/` (or
  `<data_dir>/FashionMNIST/raw/`); no `processed/` folder is needed. When only the official
  `.gz` files are there we decompress them next to themselves first, as torchvision's own
  download step would.
* CIFAR-10 / CIFAR-100 are read here, not through torchvision's classes: torchvision insists on
  the md5 of every batch file and then calls a plain `pickle.load` on it. We read the official
  python batch files with a restricted unpickler that can only rebuild plain containers and
  numpy arrays (no other globals), so a tampered file cannot run code, and we validate shapes
  and labels. `download=True` fetches the official archive through torchvision's
  `download_and_extract_archive`, which checks the archive's md5.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.catalog import DATASET_NAMES
from engine.data import DataError

DATASETS = DATASET_NAMES  # engine/catalog.py: the data sets and their classes

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
    "cifar-100": "cifar100",
    "cifar_100": "cifar100",
    "image-folder": "imagefolder",
    "image_folder": "imagefolder",
}

_DOWNLOAD_HINT = "pass --download (or set data.download=true) to fetch it"


@dataclass
class ArrayDataset:
    """A whole data set held in memory.

    x: float32 (N, C, H, W), normalised per channel; y: int64 (N,); classes: class names, index =
    label. `mean` / `std` are the per-channel statistics used for the normalisation (None when
    unknown), so images can be shown again as `x * std + mean` in [0, 1].
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 4:
            raise ValueError(f"ArrayDataset.x must be (N, C, H, W), got shape {tuple(self.x.shape)}")
        if self.y.ndim != 1 or self.y.shape[0] != self.x.shape[0]:
            raise ValueError(
                f"ArrayDataset.y must be (N,) with N = {self.x.shape[0]}, got shape {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.x.shape[-1])

    def subset(self, idx) -> ArrayDataset:
        """The samples at `idx` (array of ints), same classes and statistics."""
        t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        return ArrayDataset(self.x[t], self.y[t], list(self.classes), self.mean, self.std)


def default_data_dir() -> Path:
    """$ECLAB_DATA, else ~/.cache/eclab/data."""
    env = os.environ.get("ECLAB_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/eclab/data").expanduser()


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    image_size: int | None = None,
    seed: int = 0,
) -> tuple[ArrayDataset, ArrayDataset | None]:
    """Load a data set into memory: returns (train, test); test is None without an official split.

    `image_size`: imagefolder images are resized to image_size x image_size (default 32). For the
    built-in data sets None keeps the native size (8, 28 or 32); another value resizes them
    (bilinear, antialiased). `seed` only matters for the generated `teach` data set.
    """
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise DataError(f"data.image_size must be a positive integer, got {image_size!r}: e.g. set it to 32")
        image_size = int(image_size)

    if key == "digits":
        return _load_digits(image_size), None
    if key == "teach":
        return _load_teach(seed, image_size)
    if key == "imagefolder":
        if data_dir is None or str(data_dir).strip() == "":
            raise DataError(
                "the imagefolder data set needs data.data_dir: point it at a folder of class subfolders "
                "(or one with train/ and test/ subfolders in that layout)"
            )
        from .imagefolder import load_imagefolder  # it reuses this module's helpers
        return load_imagefolder(Path(data_dir).expanduser(), image_size or 32)

    root = Path(data_dir).expanduser() if data_dir is not None and str(data_dir).strip() else default_data_dir()
    if key in ("mnist", "fashion-mnist"):
        return _load_mnist_like(key, root, download, image_size)
    return _load_cifar(key, root, download, image_size)


# ----------------------------------------------------------------------------- helpers


def _to_float(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 in [0, 1]."""
    t = torch.as_tensor(images_uint8)
    return t.to(torch.float32).div_(255.0)


def _resize(x: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or (x.shape[-1] == size and x.shape[-2] == size):
        return x
    out = []
    for chunk in torch.split(x, 4096):
        out.append(
            torch.nn.functional.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        )
    return torch.cat(out) if out else x.new_zeros((0, x.shape[1], size, size))


def _normalise(train_x: torch.Tensor, *others: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalise train_x (and others) in place with train_x's per-channel mean/std."""
    var, mean = torch.var_mean(train_x, dim=(0, 2, 3), correction=0)
    std = var.sqrt().clamp_min(1e-6)
    shape = (1, -1, 1, 1)
    for t in (train_x, *others):
        t.sub_(mean.view(shape)).div_(std.view(shape))
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _finish(train_x, train_y, test_x, test_y, classes, image_size):
    """float images in [0, 1] -> normalised ArrayDatasets."""
    train_x = _resize(train_x, image_size)
    others = ()
    if test_x is not None:
        test_x = _resize(test_x, image_size)
        others = (test_x,)
    mean, std = _normalise(train_x, *others)
    train = ArrayDataset(train_x.contiguous(), torch.as_tensor(train_y, dtype=torch.int64), list(classes), mean, std)
    test = None
    if test_x is not None:
        test = ArrayDataset(test_x.contiguous(), torch.as_tensor(test_y, dtype=torch.int64), list(classes), mean, std)
    return train, test


# ----------------------------------------------------------------------------- digits


def _load_digits(image_size):
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.asarray(d.images, dtype=np.float32) / 16.0  # values 0..16
    x = torch.from_numpy(images).unsqueeze(1).contiguous()
    y = np.asarray(d.target, dtype=np.int64)
    train, _ = _finish(x, y, None, None, [str(i) for i in range(10)], image_size)
    return train


def _load_teach(seed: int, image_size):
    from engine.data.synthetic import TeachSpec, class_names

    spec = TeachSpec()
    train_x, train_y, test_x, test_y = _generate_cached(spec, seed)
    # copies: _finish normalises in place, the cached arrays must stay as generated
    return _finish(torch.tensor(train_x), train_y, torch.tensor(test_x), test_y, class_names(spec), image_size)


@functools.lru_cache(maxsize=4)
def _generate_cached(spec, seed: int):
    from engine.data.synthetic import generate  # a few seconds per seed: once per process
    return generate(spec, seed)


# ----------------------------------------------------------------------------- MNIST family

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _load_mnist_like(key, root: Path, download: bool, image_size):
    from torchvision import datasets as tvd

    cls = tvd.MNIST if key == "mnist" else tvd.FashionMNIST
    raw = root / cls.__name__ / "raw"
    pretty = "MNIST" if key == "mnist" else "Fashion-MNIST"

    # torchvision reads the uncompressed files; unpack official .gz files that sit alone.
    for fname in _MNIST_FILES:
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
                    f"yourself to {plain}), or delete it and {_DOWNLOAD_HINT}"
                ) from e

    missing = [f for f in _MNIST_FILES if not (raw / f).is_file()]
    if missing and not download:
        expected = ", ".join(str(raw / f) + "(.gz)" for f in _MNIST_FILES)
        raise DataError(
            f"{pretty} files not found under {root}: expected {expected} "
            f"(missing: {', '.join(missing)}). Either {_DOWNLOAD_HINT}, or put the files there, or "
            f"point data.data_dir / $ECLAB_DATA at the folder that contains {cls.__name__}/"
        )
    try:
        tr = cls(str(root), train=True, download=download)
        te = cls(str(root), train=False, download=False)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - torchvision raises RuntimeError/URLError/AssertionError/...
        what = "download or read" if download else "read"
        raise DataError(
            f"could not {what} {pretty} in {raw}: {e}. Check the network (for --download) or replace the "
            f"files {', '.join(_MNIST_FILES)} in {raw} with intact copies"
        ) from e

    tr_x, te_x = _mnist_images(tr.data, raw, pretty), _mnist_images(te.data, raw, pretty)
    tr_y, te_y = tr.targets.to(torch.int64), te.targets.to(torch.int64)
    classes = [str(i) for i in range(10)] if key == "mnist" else list(cls.classes)
    for y, part in ((tr_y, "train"), (te_y, "test")):
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(classes)):
            raise DataError(
                f"{pretty} {part} labels in {raw} are outside 0..{len(classes) - 1}: the label file is corrupt; "
                f"replace it with the official file or {_DOWNLOAD_HINT}"
            )
    if len(tr_x) != len(tr_y) or len(te_x) != len(te_y):
        raise DataError(
            f"{pretty} in {raw}: image and label files disagree on the number of samples; replace them with "
            f"the official files or {_DOWNLOAD_HINT}"
        )
    return _finish(_to_float(tr_x), tr_y, _to_float(te_x), te_y, classes, image_size)


def _mnist_images(data: torch.Tensor, raw: Path, pretty: str) -> torch.Tensor:
    if data.ndim != 3 or data.dtype != torch.uint8:
        raise DataError(
            f"{pretty} images in {raw} have shape {tuple(data.shape)} / dtype {data.dtype}, expected (N, 28, 28) "
            f"uint8: replace the files with the official ones or {_DOWNLOAD_HINT}"
        )
    return data.unsqueeze(1)


# ----------------------------------------------------------------------------- CIFAR

_CIFAR = {
    "cifar10": {
        "pretty": "CIFAR-10",
        "folder": "cifar-10-batches-py",
        "train": ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "meta_key": "label_names",
        "label_key": "labels",
        "num_classes": 10,
    },
    "cifar100": {
        "pretty": "CIFAR-100",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "meta_key": "fine_label_names",
        "label_key": "fine_labels",
        "num_classes": 100,
    },
}


def _numpy_globals() -> dict[tuple[str, str], object]:
    core = getattr(np, "_core", None)
    multiarray = core.multiarray if core is not None else np.core.multiarray  # numpy < 2
    reconstruct = multiarray._reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the official CIFAR python batches: plain containers and numpy arrays only.

    Builtin dict/list/str/bytes/int/float come from pickle opcodes and need no globals; the only
    globals allowed are numpy's array reconstruction helpers. Anything else is refused, so a
    crafted file cannot call arbitrary code.
    """

    _allowed: dict[tuple[str, str], object] | None = None

    def find_class(self, module, name):
        if _RestrictedUnpickler._allowed is None:
            _RestrictedUnpickler._allowed = _numpy_globals()
        try:
            return _RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _read_cifar_file(path: Path, pretty: str) -> dict:
    hint = f"replace it with the file from the official {pretty} archive, or delete the folder and {_DOWNLOAD_HINT}"
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{path} is not an official {pretty} batch file ({e}): {hint}") from e
    except Exception as e:  # noqa: BLE001 - truncated/garbage files raise many kinds of errors
        raise DataError(f"could not read {path} ({type(e).__name__}: {e}): {hint}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} does not hold a dict as the {pretty} batch files do: {hint}")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _read_cifar_batches(files: list[Path], label_key: str, num_classes: int, pretty: str):
    xs, ys = [], []
    for path in files:
        d = _read_cifar_file(path, pretty)
        hint = f"replace it with the file from the official {pretty} archive or {_DOWNLOAD_HINT}"
        if "data" not in d or label_key not in d:
            raise DataError(f"{path} lacks the 'data' / '{label_key}' entries of a {pretty} batch: {hint}")
        data = d["data"]
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            shape = getattr(data, "shape", None)
            raise DataError(f"{path}: 'data' should be a uint8 array of shape (N, 3072), got {shape}: {hint}")
        labels = np.asarray(d[label_key])
        if labels.ndim != 1 or labels.shape[0] != data.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{path}: '{label_key}' should list one integer label per image: {hint}")
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(f"{path}: labels outside 0..{num_classes - 1}: {hint}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _load_cifar(key, root: Path, download: bool, image_size):
    spec = _CIFAR[key]
    pretty, folder = spec["pretty"], root / spec["folder"]
    names = spec["train"] + spec["test"] + [spec["meta"]]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing and download:
        from torchvision import datasets as tvd
        from torchvision.datasets.utils import download_and_extract_archive

        cls = tvd.CIFAR10 if key == "cifar10" else tvd.CIFAR100
        try:  # the archive's md5 is checked by torchvision
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
        except Exception as e:  # noqa: BLE001
            raise DataError(
                f"could not download {pretty} to {root}: {e}. Check the network, or fetch {cls.url} yourself "
                f"and unpack it into {root}"
            ) from e
        missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        expected = ", ".join(str(folder / n) for n in names)
        raise DataError(
            f"{pretty} files not found under {root}: expected {expected} (missing: {', '.join(missing)}). "
            f"Either {_DOWNLOAD_HINT}, or unpack the official python archive there, or point "
            f"data.data_dir / $ECLAB_DATA at the folder that contains {spec['folder']}/"
        )

    n = spec["num_classes"]
    tr_x, tr_y = _read_cifar_batches([folder / f for f in spec["train"]], spec["label_key"], n, pretty)
    te_x, te_y = _read_cifar_batches([folder / f for f in spec["test"]], spec["label_key"], n, pretty)
    meta = _read_cifar_file(folder / spec["meta"], pretty)
    classes = meta.get(spec["meta_key"])
    if not isinstance(classes, list) or len(classes) != n:
        raise DataError(
            f"{folder / spec['meta']} should list {n} names under '{spec['meta_key']}': replace it with the "
            f"official file or {_DOWNLOAD_HINT}"
        )
    classes = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in classes]
    return _finish(_to_float(tr_x), tr_y, _to_float(te_x), te_y, classes, image_size)
