"""The one reading of the facts about methods, architectures and data sets.

Torch-free, so the config, the CLI, the dashboard and the tests can all read it cheaply. Each fact
is declared once, beside the code it describes:
- methods: each file in engine/methods registers its methods with a card (engine.methods.base.
  MethodInfo: label, colour, order, hyperparameter class, per-preset recipes, form knobs, flags);
  importing engine.methods (torch-free at import) gathers them into METHODS;
- architectures: each registers with its supervision points, `@register_model(name, points=(...))`
  in engine/models; SUPERVISION_POINTS reads those declarations from the source without importing
  torch, and engine.models checks every built model has them;
- data sets: the table below.
engine.config builds METHOD_NAMES, MethodsConfig, the presets' method recipes, SUPERVISION_POINTS
and DATASET_CLASSES from here, and tests/test_catalog.py checks the catalog, the config and both
registries agree.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from .methods import cards
from .methods.base import CONTRASTIVE_KNOBS, EC_SECTION_KNOBS, UNLEARNING_KNOBS, MethodInfo, needs_aux  # noqa: F401

# -- methods -------------------------------------------------------------------------------------

# In their cards' order: the order of every list the user sees (form, CLI help, default comparison).
METHODS: dict[str, MethodInfo] = cards()
LABELS: dict[str, str] = {name: info.label for name, info in METHODS.items()}


def recipes(family: str) -> dict[str, dict]:
    """Every method's recipe overrides for a preset family ("teach", "optml"): {name: overrides}."""
    return {name: dict(info.recipes[family]) for name, info in METHODS.items() if family in info.recipes}


def method_names() -> list[str]:
    return list(METHODS)


def default_compare() -> list[str]:
    """The methods of a comparison that names none (retrain is its reference row anyway)."""
    return [name for name, info in METHODS.items() if info.in_default_compare]


def reads_ec(name: str, plugin: bool = False) -> bool:
    """Whether a run of `name` (with or without the plug-in) reads the `ec` section's loss knobs; a
    name the catalog does not know (an audited outside model) reads none."""
    info = METHODS.get(name)
    return plugin or (info is not None and info.reads_ec)


def method_knobs(name: str) -> list[str]:
    """The Launch form's knobs of `name` that are options of its own section methods.<name> (a
    `reads_ec` method's EC_SECTION_KNOBS set the `ec` section instead)."""
    info = METHODS[name]
    return [k for k in info.form_knobs if not (info.reads_ec and k in EC_SECTION_KNOBS)]


def display_name(name: str, extra: dict[str, str] | None = None) -> str:
    """A run label as every page and report writes it: 'ft+ec' -> 'FT + EC'; a part neither the
    catalog nor `extra` names (an audited model's name) as it is."""
    if not name:
        return str(name)
    extra = extra or {}
    return " + ".join(extra.get(part) or LABELS.get(part, part) for part in name.split("+"))


def base_method(name: str) -> str:
    """The method of a run label: 'ft+ec' -> 'ft'; 'ec' -> 'ec'."""
    return name.split("+", 1)[0] if name else name


# -- architectures -------------------------------------------------------------------------------

MODELS_DIR = Path(__file__).resolve().parent / "models"


def declared_points(models_dir: Path = MODELS_DIR) -> dict[str, tuple[str, ...]]:
    """Every `@register_model("name", points=(...))` in engine/models, read from the source (the
    points must be a literal tuple of module names, in forward order; the last is the penultimate
    feature where the model's real head sits, and EC supervises all of them)."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(models_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_model":
                name = ast.literal_eval(node.args[0])
                points = next((kw.value for kw in node.keywords if kw.arg == "points"), None)
                if points is None:
                    raise ValueError(f"{path.name}: register_model({name!r}) declares no points=(...)")
                found[name] = tuple(ast.literal_eval(points))
    return found


# Supervision points per architecture (module names, in forward order), as each model declares them.
SUPERVISION_POINTS: dict[str, tuple[str, ...]] = declared_points()

# -- data sets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    class_names: tuple[str, ...] | None = None  # None: the class ids are the names


DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(10),
    "teach": DatasetInfo(10),
    "mnist": DatasetInfo(10),
    "fashion-mnist": DatasetInfo(10, ("T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                                      "sneaker", "bag", "boot")),
    "cifar10": DatasetInfo(10, ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                "ship", "truck")),
    "cifar100": DatasetInfo(100),
}


# every name `data.dataset` accepts: the table's, and image folders (classes from the folder layout)
DATASET_NAMES: tuple[str, ...] = (*DATASETS, "imagefolder")


def class_names(dataset: str, n: int) -> list[str]:
    """Display names of a data set's classes; the ids as text where the data set has no names
    (or is not in the table, e.g. an image folder of n classes)."""
    info = DATASETS.get(dataset)
    if info is not None and info.class_names is not None:
        return list(info.class_names)
    return [str(i) for i in range(n)]
