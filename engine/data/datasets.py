"""In-memory image data sets.

Every loader returns `(train, test)` as `ArrayDataset`s: float32 images (N, C, H, W) normalised
per channel with the mean/std of the training images, and int64 labels. `test` is None when the
data set has no official test split (digits, a flat imagefolder); the caller then splits by seed
(see `engine.data.splits`).

Each data-set family is one file in engine/data/sets, which registers its loader with its facts
(`@register_dataset`); `load_dataset` finds the loader there. Nothing is downloaded unless
`download=True`. The helpers below (float conversion, resizing, normalisation) are the loaders'.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.catalog import DATASET_NAMES, canonical_dataset
from engine.data import DataError

DATASETS = DATASET_NAMES  # engine/catalog.py: the registered families (engine/data/sets)

DOWNLOAD_HINT = "pass --download (or set data.download=true) to fetch it"


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
    other data sets None keeps the native size (the family's `size`); another value resizes them
    (bilinear, antialiased). `seed` only matters for generated data sets (`teach`).
    """
    key = canonical_dataset(name)
    if key not in DATASETS:
        raise DataError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    if image_size is not None:
        if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise DataError(f"data.image_size must be a positive integer, got {image_size!r}: e.g. set it to 32")
        image_size = int(image_size)
    from engine.data.sets import LoadRequest, loader  # the families' files (engine/data/sets)

    given = str(data_dir).strip() if data_dir is not None and str(data_dir).strip() else None
    root = Path(given).expanduser() if given else default_data_dir()
    return loader(key)(LoadRequest(key, root, given, bool(download), image_size, int(seed)))


# ----------------------------------------------------------------------------- helpers


def to_float(images_uint8: np.ndarray | torch.Tensor) -> torch.Tensor:
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


def finish(train_x, train_y, test_x, test_y, classes, image_size):
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


