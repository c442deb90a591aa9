"""A method is a small class: which batches it needs, the loss on them, and optional hooks.

The registries map names to classes: methods (`@register("ft", MethodInfo(...))`,
`create_method(name, cfg)`), plug-ins (`@register_plugin("ec")`, Plugin subclasses that add to any
method: `plugin: ec`) and extras (`@register_extra("aux", needed=...)`: what some methods train
with, prepared once per scenario by the runner, which asks `needed(methods, plugin)` and never
names them).

A method's card (MethodInfo: label, colour, hyperparameter class, per-preset recipes, form knobs,
flags) is given where it registers, so a method is one file. This module and the method files are
torch-free at import (torch comes from engine.lazy), because engine.catalog and engine.config read
the cards in processes that never train.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..hparams import MethodConfig
from ..lazy import F, torch

if TYPE_CHECKING:
    from ..training import LoopState

UNLEARNING_KNOBS = ("epochs", "lr")  # every unlearning method's fields in the Launch form
CONTRASTIVE_KNOBS = ("tau", "lambda_cu", "lambda_ce")
EC_SECTION_KNOBS = ("weights",) + CONTRASTIVE_KNOBS  # the form knobs that live in the `ec` section


@dataclass(frozen=True)
class MethodInfo:
    """A method's card: everything the config, the CLI, the form and the pages know about it."""
    label: str  # display name on every page
    color: str  # one colour per method on every page (a "+ec" run gets a darker shade)
    order: int  # its place in every list the user sees (form, CLI help, default comparison)
    hp: type = MethodConfig  # its hyperparameter class: section methods.<name>, defaults = the digits recipe
    # recipe overrides per preset family: "teach" (the teach preset), "fashion" (fashion-mnist), "optml" (the CIFAR presets)
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    needs_aux: bool = False  # trains with EC's auxiliary modules (pretrained once per original, set by `ec`)
    reads_ec: bool = False  # its loss is EC's: it reads the `ec` section (layer weights, tau, lambdas)
    pluggable: bool = True  # the EC plug-in can be added to it (`plugin: ec`)
    # what the Launch form lets the user set: fields of methods.<name>, and for a `reads_ec` method the
    # EC_SECTION_KNOBS of the `ec` section
    form_knobs: tuple[str, ...] = UNLEARNING_KNOBS
    in_default_compare: bool = True  # part of a comparison that names no methods


_REGISTRY: dict[str, type["Method"]] = {}
_PLUGINS: dict[str, type] = {}
_EXTRAS: dict[str, "Extra"] = {}


def _registrar(table: dict, name: str):
    def deco(cls):
        cls.name = name
        table[name] = cls
        return cls
    return deco


def register(name: str, info: MethodInfo):
    """Registers a Method class under `name` with its card (cls.info)."""
    def deco(cls):
        cls.info = info
        return _registrar(_REGISTRY, name)(cls)
    return deco


def method_names() -> list[str]:
    """The registered methods in the cards' order."""
    return sorted(_REGISTRY, key=lambda name: _REGISTRY[name].info.order)


def cards() -> dict[str, MethodInfo]:
    """Every registered method's card, in order."""
    return {name: _REGISTRY[name].info for name in method_names()}


def needs_aux(names, plugin: bool = False) -> bool:
    """Whether runs of these methods (one name or several), with or without the EC plug-in, need EC's
    auxiliary modules."""
    names = [names] if isinstance(names, str) else names
    return plugin or any(_REGISTRY[n].info.needs_aux for n in names)


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


class Plugin:
    """Rides along with any method in `run_loop`; every hook is optional and runs after the method's.

    setup / before_step / after_backward / after_step / teardown(state) as a method's;
    parameters(state): more tensors for the optimiser; loss(state, xf, yf, xr, yr): None, or
    (extra loss, logs) added to the method's loss; after_epoch(state): None, or fields for the
    epoch's history row. `streams` names the batch streams ("forget", "retain") its loss needs
    even where the method draws none (they then use the method's batch size). Outside the loop,
    run_params() is what a run entry records about it (engine.unlearning).
    """
    name = "plugin"
    streams: tuple[str, ...] = ()

    def run_params(self) -> dict:
        return {}

    def setup(self, state: LoopState) -> None:
        pass

    def parameters(self, state: LoopState):
        return ()

    def before_step(self, state: LoopState) -> None:
        pass

    def loss(self, state: LoopState, xf, yf, xr, yr):
        return None

    def after_backward(self, state: LoopState) -> None:
        pass

    def after_step(self, state: LoopState) -> None:
        pass

    def after_epoch(self, state: LoopState) -> dict | None:
        return None

    def teardown(self, state: LoopState) -> None:
        pass


class Method:
    """Base: cross-entropy on retain batches, one epoch = one pass over the retain set."""
    name = "base"
    info: MethodInfo
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


def random_other_labels(y: "torch.Tensor", num_classes: int) -> "torch.Tensor":
    """A uniformly random label different from the true one, per sample."""
    shift = torch.randint(1, num_classes, y.shape, device=y.device)
    return (y + shift) % num_classes


def ce(model, x, y):
    return F.cross_entropy(model(x), y)
