"""The one reading of the facts about methods, architectures and data sets.

Torch-free, so the config, the CLI, the dashboard and the tests can all read it cheaply. Each fact
is declared once, beside the code it describes:
- methods: each file in engine/methods registers its methods with a card (engine.methods.base.
  MethodInfo: label, colour, order, hyperparameter class, per-preset recipes, form knobs, flags);
  importing engine.methods (torch-free at import) gathers them into METHODS;
- architectures: each registers with its supervision points, `@register_model(name, points=(...))`
  in engine/models; SUPERVISION_POINTS reads those declarations from the source without importing
  torch, and engine.models checks every built model has them;
- data sets: each family's file in engine/data/sets registers its loader with its facts,
  `@register_dataset(name, num_classes=..., channels=..., size=..., presets={...}, ...)`;
  ALL_DATASETS reads those declarations from the source (torch-free), as for the architectures.
engine.config builds METHOD_NAMES, MethodsConfig, the presets' method recipes, SUPERVISION_POINTS,
DATASET_CLASSES and the data sets' PRESETS from here, and tests/test_catalog.py checks the catalog,
the config and the registries agree.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
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

DATA_SETS_DIR = Path(__file__).resolve().parent / "data" / "sets"


@dataclass(frozen=True)
class DatasetInfo:
    """One data-set family's facts, as its file in engine/data/sets declares them where its loader
    registers: `@register_dataset("name", num_classes=..., ...)` (literal values only)."""
    num_classes: int | None  # None: read from the files (an image folder)
    class_names: tuple[str, ...] | None = None  # None: the class ids are the names
    channels: int = 1
    size: int = 32  # native image side in pixels
    train_size: int | None = None  # official training split (None: split by seed, or unknown)
    test_size: int | None = None
    aliases: tuple[str, ...] = ()  # other spellings load_dataset and the config accept
    cpu: bool = False  # CPU-cheap: calibration `auto` and the noise references are on by default
    builtin: bool = False  # bundled or generated: no files, nothing to download
    order: int = 100  # place in every list the user sees
    # presets this family brings: {preset: {"note": text for the form, "recipes": method-card recipe
    # family (optional), other keys: config overrides}}; "data.dataset" is implied
    presets: dict = field(default_factory=dict)


def declared_datasets(sets_dir: Path = DATA_SETS_DIR) -> dict[str, DatasetInfo]:
    """Every `@register_dataset("name", ...)` in engine/data/sets, read from the source (torch-free),
    in their declared order."""
    found: list[tuple[int, str, DatasetInfo]] = []
    for path in sorted(sets_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "register_dataset":
                name = ast.literal_eval(node.args[0])
                facts = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
                if "num_classes" not in facts:
                    raise ValueError(f"{path.name}: register_dataset({name!r}) declares no num_classes=")
                for key in ("class_names", "aliases"):
                    if facts.get(key) is not None:
                        facts[key] = tuple(facts[key])
                info = DatasetInfo(**facts)
                found.append((info.order, name, info))
    return {name: info for _, name, info in sorted(found, key=lambda t: t[:2])}


# Every registered family, in order; DATASETS: those whose class count is known without the files.
ALL_DATASETS: dict[str, DatasetInfo] = declared_datasets()
DATASETS: dict[str, DatasetInfo] = {n: i for n, i in ALL_DATASETS.items() if i.num_classes is not None}

# every name `data.dataset` accepts
DATASET_NAMES: tuple[str, ...] = tuple(ALL_DATASETS)
ALIASES: dict[str, str] = {a: name for name, info in ALL_DATASETS.items() for a in info.aliases}


def canonical_dataset(name: str) -> str:
    """A data set's registered name from any accepted spelling ('Fashion_MNIST' -> 'fashion-mnist');
    an unknown name comes back lower-cased."""
    key = str(name).strip().lower()
    return ALIASES.get(key, key)


def class_names(dataset: str, n: int) -> list[str]:
    """Display names of a data set's classes; the ids as text where the data set has no names
    (or is not in the table, e.g. an image folder of n classes)."""
    info = DATASETS.get(dataset)
    if info is not None and info.class_names is not None:
        return list(info.class_names)
    return [str(i) for i in range(n)]


def dataset_presets() -> dict[str, tuple[str, dict]]:
    """{preset: (data set, its entry)} over every family, in the families' order."""
    return {p: (name, dict(entry)) for name, info in ALL_DATASETS.items() for p, entry in info.presets.items()}


def preset_dataset(preset: str) -> str | None:
    """The data set a registered preset trains on (None for a preset no family declares)."""
    return dataset_presets().get(preset, (None, None))[0]


def cpu_presets() -> tuple[str, ...]:
    """The presets of CPU-cheap families (calibration `auto` and the noise references are on there)."""
    return tuple(p for p, (name, _) in dataset_presets().items() if ALL_DATASETS[name].cpu)


def preset_notes() -> dict[str, str]:
    return {p: entry.get("note", "") for p, (_, entry) in dataset_presets().items()}
