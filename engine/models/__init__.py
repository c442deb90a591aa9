"""Architectures with named supervision points (feature taps), in a small registry.

Every model exposes `supervision_points` (module names in forward order, declared where it
registers: `@register_model(name, points=(...))`; the last one is the penultimate feature where the
real head sits). `FeatureTaps` captures those modules' outputs. One module per family registers its
models (cnn.py, resnet.py, vit.py); every module here is imported, so a new family is a new file.
"""
import importlib
import pkgutil

from .registry import create_model, model_names, model_points, register_model  # noqa: F401
from .taps import FeatureTaps, point_channels, pool  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
