"""Data-set families, one file each: every module here registers its loaders with their facts
(`@register_dataset(name, num_classes=..., ...)`, engine/data/sets/registry.py) and is imported on
first load, so adding a data set is adding a file here."""
import importlib
import pkgutil

from .registry import LoadRequest, loader, loader_names, register_dataset  # noqa: F401

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")
