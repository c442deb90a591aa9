"""The data-set registry: `@register_dataset(name, **facts)` on a family's loader, and `loader(name)`.

A family's facts (classes, names, channels, native size, official split sizes, aliases, CPU-cheap or
not, built in or not, its presets) are declared where its loader registers, as literal values:
engine/catalog.py reads the same declarations from the source (torch-free) and everything else (the
config's choices and presets, checkpoint input shapes, calibration's CPU presets, the form's notes,
split sizes at submit) derives from that reading. A loader is called as

    loader(request: LoadRequest) -> (train, test)       ArrayDatasets, normalised; test None without
                                                         an official test split (split by seed then)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

_LOADERS: dict[str, Callable] = {}


@dataclass(frozen=True)
class LoadRequest:
    name: str  # the registered name
    root: Path  # data folder: data.data_dir, else $ECLAB_DATA, else ~/.cache/eclab/data
    data_dir: str | None  # data.data_dir as given (None: not set)
    download: bool  # fetch missing files (only when asked)
    image_size: int | None  # None: native size
    seed: int  # generated data sets draw from it


def register_dataset(name: str, **facts):
    """Register `fn` as the loader of data set `name`; `facts` are read by engine/catalog.py."""
    def deco(fn):
        _LOADERS[name] = fn
        return fn
    return deco


def loader(name: str) -> Callable:
    return _LOADERS[name]


def loader_names() -> list[str]:
    return list(_LOADERS)
