"""The architecture registry: `@register_model(name, points=(...))` and `create_model`.

An architecture declares its supervision points where it registers (as timm declares feature_info):
the module names, in forward order, whose outputs EC supervises; the last is the penultimate
feature where the model's real head sits. engine/catalog.py reads the same declarations from the
source (torch-free), so they must be a literal tuple; `create_model` checks that every declared
point is a module of the built model.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...]]] = {}


def register_model(name: str, points: tuple[str, ...]):
    if not points:
        raise ValueError(f"architecture {name!r} declares no supervision points")

    def deco(fn):
        _REGISTRY[name] = (fn, tuple(points))
        return fn
    return deco


def model_names() -> list[str]:
    return list(_REGISTRY)


def model_points(arch: str) -> tuple[str, ...]:
    return _REGISTRY[arch][1]


def create_model(arch: str, num_classes: int, in_channels: int, image_size: int, width: int = 32) -> nn.Module:
    if arch not in _REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(_REGISTRY)}")
    build, points = _REGISTRY[arch]
    model = build(num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width)
    model.supervision_points = list(points)
    model.arch = arch
    names = dict(model.named_modules())
    missing = [p for p in model.supervision_points if p not in names]
    assert not missing, f"{arch} lacks supervision modules {missing}"
    return model
