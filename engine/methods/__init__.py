"""Unlearning methods, registered by name. Importing this package imports the module that
engine/catalog.py names for each method, which registers it (`@register(name)`)."""
import importlib

from ..catalog import METHODS
from .base import Method, create_method, method_names, register  # noqa: F401

for _module in dict.fromkeys(info.module for info in METHODS.values()):
    importlib.import_module(f"{__name__}.{_module}")
