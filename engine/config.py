"""Typed, validated, hashable configuration for every piece of work the engine does.

One `RunConfig` describes a scenario (data set, model, forget request, seed), the recipe for the
original and retrained models, every method's hyperparameters, EC's knobs and the evaluation.
Every default is documented once, here. Invalid values raise `ConfigError`, whose message names
the option (dotted path, as used by `--set`) and the allowed range.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, create_model, model_validator

from .catalog import DATASET_NAMES, DATASETS, METHODS, SUPERVISION_POINTS as _CATALOG_POINTS, dataset_presets, recipes
from .hparams import MethodConfig, SGDRecipe, Strict as _Strict, epochs_field, lr_field  # noqa: F401

DATASET_CLASSES = {name: info.num_classes for name, info in DATASETS.items()}

# Supervision points per architecture (engine/catalog.py), as lists.
SUPERVISION_POINTS: dict[str, list[str]] = {arch: list(points) for arch, points in _CATALOG_POINTS.items()}

METHOD_NAMES = list(METHODS)


class ConfigError(ValueError):
    """A configuration value is invalid. `option` is the dotted path of the offending option."""

    def __init__(self, option: str, message: str):
        self.option = option
        # a message that already starts with its option reads as a sentence: "ec.weights are all zero"
        super().__init__(message if not option or message.startswith(option) else f"{option}: {message}")


class DataConfig(_Strict):
    dataset: Literal[DATASET_NAMES] = "digits"  # engine/catalog.py
    data_dir: str | None = None  # default: $ECLAB_DATA or ~/.cache/eclab/data
    download: bool = False  # only fetch data when the user asks
    image_size: int | None = Field(None, ge=8, le=512)  # imagefolder resize (default 32)
    test_fraction: float = Field(0.25, gt=0, lt=1)  # for data sets without an official test split
    # a stratified, seeded subset: at most this many training / test samples per class (None: all)
    per_class: int | None = Field(None, ge=1)
    test_per_class: int | None = Field(None, ge=1)


class ForgetConfig(_Strict):
    classes: list[int] | None = None  # class-wise forgetting (default [3] when random is unset)
    random: float | None = Field(None, gt=0, lt=1)  # share of training samples to forget

    @model_validator(mode="after")
    def _one_kind(self):
        if self.classes is not None and self.random is not None:
            raise ValueError("give either forget.classes or forget.random, not both")
        if self.classes is None and self.random is None:
            object.__setattr__(self, "classes", [3])
        if self.classes is not None:
            if not self.classes:
                raise ValueError("forget.classes is empty: name at least one class (e.g. 3 or 3,5)")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError("forget.classes lists a class twice")
            if min(self.classes) < 0:
                raise ValueError("forget.classes must be class ids >= 0")
        return self

    @property
    def label(self) -> str:
        if self.classes is not None:
            return "classes " + ",".join(map(str, self.classes))
        return f"random {self.random:.0%}"


class ModelConfig(_Strict):
    arch: Literal[tuple(_CATALOG_POINTS)] = "small_cnn"  # the architectures of engine/catalog.py
    width: int = Field(32, ge=4, le=256)  # small_cnn base width; ignored by the others


class TrainConfig(SGDRecipe):
    """Recipe for the original model and the retrained oracle (SGD, cosine schedule)."""
    epochs: int = epochs_field(30)
    lr: float = lr_field(0.05)
    augment: bool = False  # random crop + flip (CIFAR presets)


# One section methods.<name> per method, of the hyperparameter class its card names (defaults: the
# digits recipes; retrain's is a placeholder: retrain uses the `train` recipe).
MethodsConfig = create_model("MethodsConfig", __base__=_Strict,
                             **{name: (info.hp, info.hp()) for name, info in METHODS.items()})


class ECConfig(_Strict):
    """Erase at the Core: per-supervision-point weights, contrastive temperature, loss weights."""
    weights: list[float] | None = None  # one per supervision point; None = all 1.0
    tau: float = Field(0.7, gt=0, le=100)  # contrastive temperature (Lee et al. 0.7)
    lambda_cu: float = Field(3.0, ge=0, le=1000)  # contrastive unlearning weight (Lee et al. 3)
    lambda_ce: float = Field(1.0, ge=0, le=1000)  # retain cross-entropy weight (Lee et al. 1)
    projector_dim: int = Field(128, ge=2, le=4096)
    aux_epochs: int = epochs_field(10)  # pretraining of the auxiliary modules (frozen backbone)
    aux_lr: float = lr_field(0.01)
    freeze_aux: bool = False  # keep auxiliary modules fixed during unlearning
    retain_per_forget: int = Field(2, ge=1, le=64)  # retain batches per forget batch (Lee: 4)

    @model_validator(mode="after")
    def _weights(self):
        if self.weights is not None:
            if not all(math.isfinite(w) for w in self.weights):  # NaN slips past every comparison
                raise ValueError(f"ec.weights must be finite numbers (got {self.weights})")
            if any(w < 0 for w in self.weights):
                raise ValueError("ec.weights must all be >= 0")
            if not any(w > 0 for w in self.weights):
                raise ValueError("ec.weights are all zero: give at least one supervision point a weight > 0")
        if self.lambda_cu == 0 and self.lambda_ce == 0:
            raise ValueError("ec.lambda_cu and ec.lambda_ce are both zero: EC would do nothing")
        return self


class EvalConfig(_Strict):
    cka_batch: int = Field(256, ge=8, le=8192)  # minibatch size of the unbiased CKA estimator
    max_samples: int = Field(2000, ge=16)  # per split, for CKA / features (stratified subsample)
    probe_epochs: int = Field(100, ge=1, le=10000)
    knn_k: int = Field(5, ge=1, le=100)
    embed_per_class: int = Field(40, ge=2, le=2000)  # samples per class in the embedding views
    umap: bool = True  # False: PCA only
    relearn: bool = False
    relearn_samples: int = Field(10, ge=1, le=10000)
    relearn_steps: int = Field(10, ge=1, le=10000)
    relearn_lr: float = lr_field(0.01)
    epoch_cka: bool = True  # per-epoch CKA events where cheap
    # a comparison trains a second original from another seed: the CKA between the two is the training
    # noise band per layer (auto: on for the CPU presets, where one more training is cheap)
    seed_band: Literal["auto", "on", "off"] = "auto"
    # a second retrained model from another seed: how far two honest retrainings land from each other
    # per layer is the tolerance of every gap to retrain (engine/results.py); auto: where seed_band is
    retrain_band: Literal["auto", "on", "off"] = "auto"


class CalibrationConfig(_Strict):
    """Per-scenario calibration of each method's strength (engine/calibrate.py): a grid of learning
    rates (recipe x factors) x epochs (1..recipe), one rule for every method."""
    lr_factors: list[float] = Field(default_factory=lambda: [1 / 3, 3.0], min_length=0, max_length=8)  # besides 1
    tolerance: float = Field(0.05, ge=0, le=1)  # forget accuracy within this of retrain's qualifies
    collapse: float = Field(0.5, ge=0, le=1)  # stop a candidate whose retain acc falls below this x original's

    @model_validator(mode="after")
    def _factors(self):
        if any(not (math.isfinite(f) and 0 < f <= 100) for f in self.lr_factors):
            raise ValueError(f"calibration.lr_factors must be numbers in (0, 100] (got {self.lr_factors})")
        return self


# -- presets ---------------------------------------------------------------------------------
# Each preset is a set of overrides on the defaults above, declared by its data set's family where it
# registers (engine/data/sets, read by engine/catalog.py): {"note": form text, "recipes": the method
# cards' recipe family ("teach", "fashion", "optml": OPTML-Group's CIFAR-10 / ResNet-18 recipes,
# METHODS.md section 3), other keys: overrides}. "custom" is the defaults under another name.


def _preset(dataset: str, entry: dict) -> dict[str, Any]:
    over = {k: v for k, v in entry.items() if k not in ("note", "recipes")}
    if dataset != "digits":  # the default data set
        over["data"] = {"dataset": dataset, **over.get("data", {})}
    return {**over, "methods": recipes(entry["recipes"])} if "recipes" in entry else over


PRESETS: dict[str, dict[str, Any]] = {**{p: _preset(d, entry) for p, (d, entry) in dataset_presets().items()},
                                      "custom": {}}


class RunConfig(_Strict):
    preset: Literal[tuple(PRESETS)] = "digits"  # PRESETS above
    seed: int = Field(0, ge=0, le=2**31 - 1)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    data: DataConfig = DataConfig()
    forget: ForgetConfig = ForgetConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    methods: MethodsConfig = MethodsConfig()
    ec: ECConfig = ECConfig()
    method: str = "ec"  # the method of a single run
    plugin: Literal["none", "ec"] = "none"  # add EC's loss on top of `method`
    beta: float = Field(1.0, gt=0, le=1000)  # weight of the EC plug-in loss
    eval: EvalConfig = EvalConfig()
    # on: calibrate each method's lr x epochs per scenario (engine/calibrate.py); off: the recipes;
    # auto: on where a CPU preset's recipe was not tuned for the scenario (calibrate.resolve_mode)
    calibrate: Literal["auto", "on", "off"] = "auto"
    calibration: CalibrationConfig = CalibrationConfig()

    @model_validator(mode="after")
    def _cross_checks(self):
        if self.method not in METHOD_NAMES:
            raise ValueError(f"method: unknown method {self.method!r}; choose one of {', '.join(METHOD_NAMES)}")
        points = SUPERVISION_POINTS[self.model.arch]
        if self.ec.weights is not None and len(self.ec.weights) != len(points):
            raise ValueError(f"ec.weights has {len(self.ec.weights)} values but {self.model.arch} has "
                             f"{len(points)} supervision points ({', '.join(points)})")
        n = DATASET_CLASSES.get(self.data.dataset)
        if n is not None and self.forget.classes is not None:
            bad = [c for c in self.forget.classes if c >= n]
            if bad:
                raise ValueError(f"forget.classes {bad} do not exist: {self.data.dataset} has classes 0..{n - 1}")
            if len(self.forget.classes) >= n:
                raise ValueError(f"forget.classes would forget all {n} classes: keep at least one")
        if self.data.dataset == "imagefolder" and not self.data.data_dir:
            raise ValueError("data.data_dir is required for imagefolder: point it at a folder of class subfolders")
        return self

    # -- derived values ---------------------------------------------------------------------
    @property
    def supervision_points(self) -> list[str]:
        return SUPERVISION_POINTS[self.model.arch]

    @property
    def layer_weights(self) -> list[float]:
        return list(self.ec.weights) if self.ec.weights is not None else [1.0] * len(self.supervision_points)

    def plugged(self, name: str | None = None) -> bool:
        """Whether a run of `name` (else `method`) has the plug-in: this config names one and the catalog
        says the method takes plug-ins (not EC itself, nor retrain). A comparison's plug-in so joins
        each method that takes one; a single run that asks for it where it cannot is refused by
        `check_single_run`."""
        return self.plugin != "none" and METHODS[name or self.method].pluggable

    def check_single_run(self) -> None:
        """A single run of `method` with `plugin` set must be of a method that takes the plug-in."""
        if self.plugin != "none" and not METHODS[self.method].pluggable:
            raise ConfigError("plugin", f"the EC plug-in adds to another method; not to {self.method!r} "
                                        "(set plugin=none, or a method such as method=ft)")

    def label_of(self, name: str | None = None) -> str:
        """The label of a run of `name` (else `method`): 'ft+ec' with the plug-in."""
        name = name or self.method
        return f"{name}+{self.plugin}" if self.plugged(name) else name

    @property
    def run_label(self) -> str:
        return self.label_of()

    def method_config(self, name: str | None = None) -> MethodConfig:
        return getattr(self.methods, name or self.method)


def deep_merge(base: Mapping, over: Mapping) -> dict:
    """`base` with `over` laid on top, key by key: a mapping merges into a dict (recursively),
    anything else replaces. Returns new dicts along the merged paths; neither input is changed."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out




def _format_error(err: ValidationError) -> ConfigError:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown option (check the spelling; `python -m engine options` lists them all)"
    elif first["type"] != "value_error" and not isinstance(first.get("input"), dict):
        msg = f"{msg} (got {first.get('input')!r})"
    if first["type"] == "value_error":
        # model-level checks name their option first, e.g. "forget.classes [12] do not exist"
        m = re.match(r"([a-z_]+(?:\.[a-z_]+)*)[ :]", msg)
        if m and m.group(1).startswith(loc):
            loc = m.group(1)
    return ConfigError(loc, msg)


def make_config(preset: str = "digits", overrides: dict | None = None, **top) -> RunConfig:
    """Build and validate a config from a preset plus nested overrides."""
    if preset not in PRESETS:
        raise ConfigError("preset", f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    raw = deep_merge(PRESETS[preset], {"preset": preset})
    raw = deep_merge(raw, overrides or {})
    raw = deep_merge(raw, top)
    return validate(raw)


def validate(raw: dict) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise _format_error(err) from None


def parse_value(text: str) -> Any:
    """`--set` value: JSON when it parses (numbers, true/false, lists, null), else a string.
    Comma lists without brackets become lists: `ec.weights=1,0.5,0,2`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    if "," in text:
        return [parse_value(t) for t in text.split(",")]
    return text


def apply_sets(raw: dict, sets: list[str]) -> dict:
    """Apply `key.sub=value` strings to a nested dict (returns a new dict)."""
    out = json.loads(json.dumps(raw))
    for item in sets:
        if "=" not in item:
            raise ConfigError(item, "--set needs key=value, e.g. --set ec.tau=0.5")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(key, "is not a group of options")
        node[parts[-1]] = parse_value(value.strip())
    return out


def stable_hash(obj: Any, n: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def scenario_dict(cfg: RunConfig) -> dict:
    """What defines the scenario: data, model, recipe, seed and forget request."""
    # an unset subset leaves the keys of the scenarios made before data.per_class existed as they were
    unset = {k for k in ("per_class", "test_per_class") if getattr(cfg.data, k) is None}
    return {"preset": cfg.preset, "seed": cfg.seed, "data": cfg.data.model_dump(exclude={"download", *unset}),
            "model": cfg.model.model_dump(), "train": cfg.train.model_dump(),
            "forget": cfg.forget.model_dump()}


def original_key(cfg: RunConfig) -> str:
    """Cache key of the original model: independent of the forget request."""
    d = scenario_dict(cfg)
    d.pop("forget")
    return "orig-" + stable_hash(d)


def retrain_key(cfg: RunConfig) -> str:
    # "init": the oracle starts from its own initialisation (runner.init_seed), not the original's
    return "retrain-" + stable_hash({**scenario_dict(cfg), "init": "own"})


def second_original_key(cfg: RunConfig) -> str:
    """The original trained again from another seed (the training-noise reference)."""
    d = scenario_dict(cfg)
    d.pop("forget")
    return "orig2-" + stable_hash({**d, "init": "second seed"})


def second_retrain_key(cfg: RunConfig) -> str:
    """The retrained oracle trained again from another seed (the reference noise of retrain)."""
    return "retrain2-" + stable_hash({**scenario_dict(cfg), "init": "second seed"})


def aux_key(cfg: RunConfig) -> str:
    ec = cfg.ec.model_dump(include={"projector_dim", "aux_epochs", "aux_lr"})
    return "aux-" + stable_hash({"orig": original_key(cfg), "ec": ec})


def option_table() -> list[tuple[str, Any, str]]:
    """(dotted option, default, constraint) for every option, for `python -m engine options`."""
    rows: list[tuple[str, Any, str]] = []

    def walk(model: type[BaseModel], prefix: str):
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            cons = ", ".join(str(m) for m in field.metadata) or str(ann).replace("typing.", "")
            rows.append((prefix + name, field.get_default(call_default_factory=True), cons))  # lr_factors has a factory

    walk(RunConfig, "")
    return rows
