"""The one home of the facts about methods, architectures and data sets.

Plain Python (no torch, no pydantic), so the config, the CLI, the dashboard and the tests can all
read it cheaply. The code that implements an entry checks itself against it: engine/methods
imports the module each method names and registers it under its name, engine/models refuses an
architecture without supervision points here, engine.config builds METHOD_NAMES,
SUPERVISION_POINTS and DATASET_CLASSES from these tables, and tests/test_catalog.py checks that
the catalog, the config and both registries agree.
"""
from __future__ import annotations

from dataclasses import dataclass

# -- methods -------------------------------------------------------------------------------------

UNLEARNING_KNOBS = ("epochs", "lr")  # every unlearning method's fields in the Launch form
CONTRASTIVE_KNOBS = ("tau", "lambda_cu", "lambda_ce")
EC_SECTION_KNOBS = ("weights",) + CONTRASTIVE_KNOBS  # the form knobs that live in the `ec` section


@dataclass(frozen=True)
class MethodInfo:
    label: str  # display name on every page
    color: str  # one colour per method on every page (a "+ec" run gets a darker shade)
    hp_class: str  # its hyperparameter class in engine.config (section methods.<name>)
    module: str  # the engine.methods module that registers it
    needs_aux: bool = False  # trains with EC's auxiliary modules (pretrained once per original, set by `ec`)
    reads_ec: bool = False  # its loss is EC's: it reads the `ec` section (layer weights, tau, lambdas)
    pluggable: bool = True  # the EC plug-in can be added to it (`plugin: ec`)
    # what the Launch form lets the user set: fields of methods.<name>, and for a `reads_ec` method the
    # EC_SECTION_KNOBS of the `ec` section
    form_knobs: tuple[str, ...] = UNLEARNING_KNOBS
    in_default_compare: bool = True  # part of a comparison that names no methods


# Order is the order of every list the user sees (form, CLI help, default comparison).
METHODS: dict[str, MethodInfo] = {
    # retrain is the reference row of every comparison and uses the preset's `train` recipe
    # (no plug-in: it never sees the forget set)
    "retrain": MethodInfo("Retrain", "#222222", "MethodConfig", "baselines", pluggable=False, form_knobs=(),
                          in_default_compare=False),
    "ft": MethodInfo("FT", "#4e79a7", "FTConfig", "baselines"),
    "ga": MethodInfo("GA", "#f28e2b", "GAConfig", "baselines"),
    "neggrad_plus": MethodInfo("NegGrad+", "#76b7b2", "NegGradPlusConfig", "baselines"),
    "rl": MethodInfo("RL", "#59a14f", "RLConfig", "baselines"),
    "l1_sparse": MethodInfo("ℓ1-sparse", "#c9a227", "L1SparseConfig", "baselines"),
    "salun": MethodInfo("SalUn", "#b07aa1", "SalUnConfig", "baselines"),
    "scrub": MethodInfo("SCRUB", "#ff9da7", "ScrubConfig", "baselines"),
    # opt-in: the default comparison's time stays as it was
    "scrub_alt": MethodInfo("SCRUB (alternating)", "#d37295", "ScrubAltConfig", "scrub_alt",
                            in_default_compare=False),
    "boundary_shrink": MethodInfo("Boundary shrink", "#9c755f", "BoundaryShrinkConfig", "baselines"),
    "cu": MethodInfo("CU", "#17becf", "CUConfig", "ec.method", needs_aux=True,
                     form_knobs=UNLEARNING_KNOBS + CONTRASTIVE_KNOBS),
    # (no plug-in: EC already is that loss)
    "ec": MethodInfo("EC", "#d62839", "ECMethodConfig", "ec.method", needs_aux=True, reads_ec=True,
                     pluggable=False, form_knobs=UNLEARNING_KNOBS + EC_SECTION_KNOBS),
}


def method_names() -> list[str]:
    return list(METHODS)


def default_compare() -> list[str]:
    """The methods of a comparison that names none (retrain is its reference row anyway)."""
    return [name for name, info in METHODS.items() if info.in_default_compare]


def needs_aux(names, plugin: bool = False) -> bool:
    """Whether runs of these methods (one name or several), with or without the EC plug-in, need EC's
    auxiliary modules."""
    names = [names] if isinstance(names, str) else names
    return plugin or any(METHODS[n].needs_aux for n in names)


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


def base_method(name: str) -> str:
    """The method of a run label: 'ft+ec' -> 'ft'; 'ec' -> 'ec'."""
    return name.split("+", 1)[0] if name else name


# -- architectures -------------------------------------------------------------------------------

# Supervision points per architecture (module names, in forward order). The last one is the
# penultimate feature where the model's real head sits; EC supervises all of them.
# engine/models registers each architecture only if it has an entry here.
_RESNET_POINTS = ("layer1", "layer2", "layer3", "layer4")
SUPERVISION_POINTS: dict[str, tuple[str, ...]] = {
    "small_cnn": ("block1", "block2", "block3", "block4"),
    "resnet18": _RESNET_POINTS,
    "resnet50": _RESNET_POINTS,
    "vit_tiny": ("blocks.1", "blocks.3", "blocks.5", "norm"),
    # torchvision's standard ResNets (ImageNet stem), e.g. for audited outside checkpoints
    "tv_resnet18": _RESNET_POINTS,
    "tv_resnet50": _RESNET_POINTS,
}

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
