"""The `imagefolder` data set: a folder of class subfolders (or train/ and test/ folders in that
layout) read into memory at a fixed size, as engine/data/datasets.py loads the built-in ones."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.data import DataError

from .datasets import finish, to_float

# Same list as torchvision.datasets.folder.IMG_EXTENSIONS.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _subdirs(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _image_files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fn in sorted(filenames):
            if not fn.startswith(".") and fn.lower().endswith(IMG_EXTENSIONS):
                out.append(Path(dirpath) / fn)
    return out


def _scan_classes(folder: Path) -> dict[str, list[Path]]:
    classes = _subdirs(folder)
    if not classes:
        raise DataError(
            f"{folder} has no class folders: the imagefolder layout is <folder>/<class name>/<image>.png "
            f"(or <folder>/train/<class>/... and <folder>/test/<class>/...); create one subfolder per class"
        )
    out = {}
    for c in classes:
        files = _image_files(c)
        if not files:
            raise DataError(
                f"class folder {c} has no images (looked for {', '.join(IMG_EXTENSIONS)}): add images or remove "
                f"the folder"
            )
        out[c.name] = files
    return out


def _read_images(files: list[Path], size: int) -> np.ndarray:
    from PIL import Image

    arr = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(files):
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.BILINEAR)
                arr[i] = np.asarray(im, dtype=np.uint8)
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, ValueError, DecompressionBombError...
            raise DataError(f"could not read image {p} ({type(e).__name__}: {e}): replace or delete the file") from e
    return arr.transpose(0, 3, 1, 2)


def load_imagefolder(folder: Path, size: int):
    if not folder.is_dir():
        raise DataError(
            f"imagefolder data folder {folder} does not exist: set data.data_dir to a folder of class subfolders "
            f"(<folder>/<class name>/<image>.png)"
        )
    sub = {p.name for p in _subdirs(folder)}
    split_layout = {"train", "test"} <= sub
    if not split_layout and sub in ({"train"}, {"test"}):
        other = "test" if sub == {"train"} else "train"
        raise DataError(
            f"{folder} has a {next(iter(sub))}/ folder but no {other}/ folder: add {folder / other}/ with the same "
            f"class folders, or point data.data_dir at a folder of class subfolders"
        )
    if not split_layout:
        by_class = _scan_classes(folder)
        classes = list(by_class)
        files = [f for c in classes for f in by_class[c]]
        y = np.concatenate([np.full(len(by_class[c]), i, dtype=np.int64) for i, c in enumerate(classes)])
        x = to_float(_read_images(files, size))
        train, _ = finish(x, y, None, None, classes, None)
        return train, None

    tr_by, te_by = _scan_classes(folder / "train"), _scan_classes(folder / "test")
    classes = list(tr_by)
    unknown = sorted(set(te_by) - set(tr_by))
    if unknown:
        raise DataError(
            f"{folder / 'test'} has class folders {unknown} that {folder / 'train'} lacks: every test class must "
            f"also have training images; add them to train/ or remove them from test/"
        )
    index = {c: i for i, c in enumerate(classes)}
    tr_files = [f for c in classes for f in tr_by[c]]
    tr_y = np.concatenate([np.full(len(tr_by[c]), index[c], dtype=np.int64) for c in classes])
    te_classes = list(te_by)
    te_files = [f for c in te_classes for f in te_by[c]]
    te_y = np.concatenate([np.full(len(te_by[c]), index[c], dtype=np.int64) for c in te_classes])
    tr_x = to_float(_read_images(tr_files, size))
    te_x = to_float(_read_images(te_files, size))
    return finish(tr_x, tr_y, te_x, te_y, classes, None)
