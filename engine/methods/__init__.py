"""Unlearning methods, registered by name. Importing this package imports every module in it (a
file or a package not starting with "_"), and each registers its methods with their cards
(`@register(name, MethodInfo(...))`) and any plug-in (`@register_plugin`) or extra
(`@register_extra`) it brings: adding a method is adding a file here."""
import importlib
import pkgutil
import time

from .base import (Method, cards, create_method, create_plugin, extras, method_names, register,  # noqa: F401
                   register_extra, register_plugin)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")


def build_method(cfg, name: str | None = None) -> tuple[Method, list]:
    """The method a config asks for (`name`, else cfg.method) and the plug-ins it runs with."""
    name = name or cfg.method
    method = create_method(name, cfg)
    return method, [create_plugin(cfg.plugin, cfg, method)] if cfg.plugged(name) else []


def prepare_extras(sc, original, ctx, methods=None, plugin: bool = False) -> tuple[dict, dict]:
    """The extras the runs of `methods` (with or without the plug-in; None: every extra) train
    with, and the seconds each took: ({name: object}, {name: seconds})."""
    made, seconds = {}, {}
    for name, extra in extras().items():
        if methods is None or extra.needed(methods, plugin):
            t = time.perf_counter()
            made[name] = extra.prepare(sc, original, ctx)
            seconds[name] = time.perf_counter() - t
    return made, seconds


def extra_keys(cfg) -> dict[str, str]:
    """Every extra's cache key for `cfg` (a base job's summary)."""
    return {name: extra.key(cfg) for name, extra in extras().items()}
