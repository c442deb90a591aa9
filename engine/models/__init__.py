"""Architectures with named supervision points (feature taps), in a small registry.

Every model exposes `supervision_points` (module names in forward order, declared in
engine/catalog.py; the last one is the penultimate feature where the real head sits).
`FeatureTaps` captures those modules' outputs. One module per family registers its models:
cnn.py, resnet.py, vit.py.
"""
from .registry import create_model, model_names, register_model  # noqa: F401
from .taps import FeatureTaps, point_channels, pool  # noqa: F401
from . import cnn, resnet, vit  # noqa: F401  (register their architectures)
