"""The architecture registry: `@register_model(name)` and `create_model`.

An architecture's supervision points are declared in engine/catalog.py (torch-free, so the config
and the dashboard can read them); registering a model without an entry there fails at import,
and `create_model` checks that every declared point is a module of the built model.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..catalog import SUPERVISION_POINTS

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    if name not in SUPERVISION_POINTS:
        raise ValueError(f"architecture {name!r} has no supervision points in engine/catalog.py")

    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco


def model_names() -> list[str]:
    return list(_REGISTRY)


def create_model(arch: str, num_classes: int, in_channels: int, image_size: int, width: int = 32) -> nn.Module:
    if arch not in _REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(_REGISTRY)}")
    model = _REGISTRY[arch](num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
    model.supervision_points = list(SUPERVISION_POINTS[arch])
    model.arch = arch
    names = dict(model.named_modules())
    missing = [p for p in model.supervision_points if p not in names]
    assert not missing, f"{arch} lacks supervision modules {missing}"
    return model
