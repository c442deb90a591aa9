"""Modules imported on first use.

A method's file holds its card, its hyperparameter class and its implementation together, and the
torch-free processes (the dashboard, the CLI's readers, engine.config) import it for the first two.
So method files take torch from here: `torch` and `F` resolve to the real modules the first time an
attribute is read, which only happens when a method runs. (A class that must subclass a torch type,
an nn.Module, lives in a module imported only when it is needed: engine/methods/ec/aux.py.)
"""
from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """Stands for the module `name` and imports it when one of its attributes is first read."""

    def __init__(self, name: str):
        self._name = name
        self._loaded: ModuleType | None = None

    def _module(self) -> ModuleType:
        if self._loaded is None:
            self._loaded = importlib.import_module(self._name)
        return self._loaded

    def __getattr__(self, attr: str):
        if attr.startswith("__"):  # copy, pickle and inspect probe dunders: no import for them
            raise AttributeError(attr)
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


torch = LazyModule("torch")
F = LazyModule("torch.nn.functional")
