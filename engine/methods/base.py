"""A method is a small class: which batches it needs, the loss on them, and optional hooks.

The registries map names to classes: methods (`@register("ft")`, `create_method(name, cfg)`),
plug-ins (`@register_plugin("ec")`, engine.training.Plugin subclasses that add to any method:
`plugin: ec`) and extras (`@register_extra("aux", needed=...)`: what some methods train with,
prepared once per scenario by the runner, which asks `needed(methods, plugin)` and never names them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

_REGISTRY: dict[str, type["Method"]] = {}
_PLUGINS: dict[str, type] = {}
_EXTRAS: dict[str, "Extra"] = {}


def _registrar(table: dict, name: str):
    def deco(cls):
        cls.name = name
        table[name] = cls
        return cls
    return deco


def register(name: str):
    return _registrar(_REGISTRY, name)


def method_names() -> list[str]:
    return list(_REGISTRY)


def create_method(name: str, cfg, **kwargs) -> "Method":
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name](cfg, **kwargs)


def register_plugin(name: str):
    """Registers a Plugin class under the `plugin:` value that selects it; built as cls(cfg, method)."""
    return _registrar(_PLUGINS, name)


def create_plugin(name: str, cfg, method: "Method"):
    if name not in _PLUGINS:
        raise ValueError(f"unknown plugin {name!r}; choose one of {', '.join(_PLUGINS)}")
    return _PLUGINS[name](cfg, method)


@dataclass(frozen=True)
class Extra:
    """Something methods train with beyond the original model, prepared once per scenario:
    prepare(sc, original, ctx) -> the object (state.extra[name] in the loop); needed(methods, plugin)
    -> whether a job's runs use it (from the catalog's flags); key(cfg) -> its cache key."""
    prepare: Callable
    needed: Callable[..., bool]
    key: Callable


def register_extra(name: str, needed: Callable[..., bool], key: Callable):
    def deco(prepare):
        _EXTRAS[name] = Extra(prepare, needed, key)
        return prepare
    return deco


def extras() -> dict[str, Extra]:
    return dict(_EXTRAS)


class Method:
    """Base: cross-entropy on retain batches, one epoch = one pass over the retain set."""
    name = "base"
    uses_forget = True
    uses_retain = True

    def __init__(self, cfg, hp=None):
        self.cfg = cfg  # the full RunConfig
        self.hp = hp if hp is not None else cfg.method_config(self.name)

    # batch sizes: None means the stream is not used
    @property
    def forget_batch(self):
        return self.hp.batch_size if self.uses_forget else None

    @property
    def retain_batch(self):
        return self.hp.batch_size if self.uses_retain else None

    def steps_per_epoch(self, state) -> int:
        n = len(state.retain_idx) if self.uses_retain else len(state.forget_idx)
        b = self.retain_batch if self.uses_retain else self.forget_batch
        return max(1, math.ceil(n / b))

    def proportional_forget_batch(self, state) -> int:
        """A forget batch size that covers the forget set once per pass over the retain set."""
        steps = self.steps_per_epoch(state)
        return max(2, math.ceil(len(state.forget_idx) / steps))

    def run_params(self) -> dict:
        """The settings a run entry records ("params")."""
        return self.hp.model_dump()

    # hooks
    def setup(self, state) -> None:
        pass

    def parameters(self, state):
        return state.model.parameters()

    def before_step(self, state) -> None:
        pass

    def loss(self, state, xf, yf, xr, yr):
        raise NotImplementedError

    def after_backward(self, state) -> None:
        pass

    def after_step(self, state) -> None:
        pass

    def after_epoch(self, state) -> None:
        pass

    def teardown(self, state) -> None:
        pass


def random_other_labels(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A uniformly random label different from the true one, per sample."""
    shift = torch.randint(1, num_classes, y.shape, device=y.device)
    return (y + shift) % num_classes


def ce(model, x, y):
    return F.cross_entropy(model(x), y)
