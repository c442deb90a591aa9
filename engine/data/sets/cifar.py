"""CIFAR-10 and CIFAR-100 (GPU presets: ResNet-18 / ResNet-50 / a small ViT, OPTML-Group's recipes).

Read here, not through torchvision's classes: torchvision insists on the md5 of every batch file and
then calls a plain `pickle.load` on it. We read the official python batch files with a restricted
unpickler that can only rebuild plain containers and numpy arrays (no other globals), so a tampered
file cannot run code, and we validate shapes and labels. `download=True` fetches the official
archive through torchvision's `download_and_extract_archive`, which checks the archive's md5.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .. import DataError
from ..datasets import DOWNLOAD_HINT, finish, to_float
from .registry import register_dataset


@register_dataset("cifar10", num_classes=10, class_names=("airplane", "automobile", "bird", "cat", "deer", "dog",
                                                          "frog", "horse", "ship", "truck"),
                  channels=3, size=32, train_size=50000, test_size=10000, aliases=("cifar-10", "cifar_10"), order=50,
                  presets={"cifar10": {"note": "CIFAR-10, ResNet-18 (GPU)", "recipes": "optml",
                                       "model": {"arch": "resnet18"},
                                       "train": {"epochs": 182, "lr": 0.1, "batch_size": 256, "augment": True},
                                       "eval": {"max_samples": 2000}},
                           "cifar10-vit": {"note": "CIFAR-10, small ViT (GPU)", "recipes": "optml",
                                           "model": {"arch": "vit_tiny"},
                                           "train": {"epochs": 100, "lr": 0.05, "batch_size": 256, "augment": True}}})
def load_cifar10(req):
    return _load_cifar("cifar10", req.root, req.download, req.image_size)


@register_dataset("cifar100", num_classes=100, channels=3, size=32, train_size=50000, test_size=10000,
                  aliases=("cifar-100", "cifar_100"), order=60,
                  presets={"cifar100": {"note": "CIFAR-100, ResNet-50 (GPU)", "recipes": "optml",
                                        "model": {"arch": "resnet50"},
                                        "train": {"epochs": 182, "lr": 0.1, "batch_size": 256, "augment": True}}})
def load_cifar100(req):
    return _load_cifar("cifar100", req.root, req.download, req.image_size)


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
    hint = f"replace it with the file from the official {pretty} archive, or delete the folder and {DOWNLOAD_HINT}"
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
        hint = f"replace it with the file from the official {pretty} archive or {DOWNLOAD_HINT}"
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
    """The official python batches of CIFAR-10 / CIFAR-100 under `root`."""
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
            f"Either {DOWNLOAD_HINT}, or unpack the official python archive there, or point "
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
            f"official file or {DOWNLOAD_HINT}"
        )
    classes = [c.decode("latin1") if isinstance(c, bytes) else str(c) for c in classes]
    return finish(to_float(tr_x), tr_y, to_float(te_x), te_y, classes, image_size)
