"""The Launch form's pure side: its option lists, the run spec it builds from its values, and the
hand-offs into it (a results run, a configuration's options beyond the form's own).

Which knobs the form shows and where they go come from engine/catalog.py: a method's `form_knobs`
are options of its section methods.<name>, except for a method that reads the `ec` section (EC),
whose layer weights, temperature and lambdas set ec.* (as they do for any run with the EC plug-in).
No Streamlit and no torch here, so every function is testable on plain dicts.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from . import facts
from .facts import EC_SECTION_KNOBS, ConfigError, base_method, method_knobs, reads_ec
from .logic import REFERENCE


TEMPERATURES = [0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0]
LEARNING_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.05, 0.1, 0.3, 1.0]


# the data sets' presets and their notes, as each family declares them (engine/data/sets)
PRESET_NOTES = facts.preset_notes()
PRESET_CHOICES = list(PRESET_NOTES)


def with_value(options: Sequence[float], value: float) -> list[float]:
    """Options of a select_slider that always contain `value` (inserted in order)."""
    opts = list(options)
    if value is not None and not any(math.isclose(value, o, rel_tol=1e-9) for o in opts):
        opts = sorted(opts + [value])
    return opts


def nearest(options: Sequence[float], value: float) -> float:
    return min(options, key=lambda o: abs(math.log(o) - math.log(value)) if o > 0 and value > 0 else abs(o - value))


_CLASS_RE = re.compile(r"^\s*(-?\d+)")


def parse_classes(values: Sequence[Any]) -> list[int]:
    """Forget classes from the multiselect: ints, or strings typed by the user ("12") or the
    displayed option ("3 · cat"). Raises engine.config.ConfigError naming forget.classes."""
    out = []
    for v in values:
        if isinstance(v, bool):
            raise ConfigError("forget.classes", f"{v!r} is not a class id")
        if isinstance(v, int):
            out.append(v)
            continue
        m = _CLASS_RE.match(str(v))
        if not m:
            raise ConfigError("forget.classes", f"{v!r} is not a class id: give whole numbers such as 3")
        out.append(int(m.group(1)))
    return out


def build_run_spec(v: Mapping[str, Any], extra: Mapping | None = None) -> dict:
    """The job spec for kind "run" from the form values (over `extra`, options kept from a hand-off).

    v keys: preset, method, plugin (bool), beta, arch, weights (list), tau, lambda_cu, lambda_ce,
    epochs, lr, forget_mode ("classes"|"random"), classes (list), random (float), seed, device, and
    optionally calibrate ("auto"|"on"|"off", config `calibrate`, at the top level of the overrides)."""
    method = v["method"]
    ov: dict[str, Any] = {"method": method, "seed": int(v.get("seed", 0)), "model": {"arch": v["arch"]}}
    if v.get("device") and v["device"] != "auto":
        ov["device"] = v["device"]
    if v.get("calibrate"):
        ov["calibrate"] = v["calibrate"]
    if v.get("forget_mode") == "random":
        ov["forget"] = {"random": float(v["random"])}
    else:
        ov["forget"] = {"classes": parse_classes(v.get("classes") or [])}
    knobs = method_knobs(method)  # its own section's form knobs (engine/catalog.py)
    if knobs:
        ov["methods"] = {method: {k: _knob(k, v[k]) for k in knobs}}
    if v.get("plugin"):
        ov["plugin"] = "ec"
        ov["beta"] = float(v["beta"])
    if reads_ec(method, bool(v.get("plugin"))):
        ov["ec"] = {k: _knob(k, v[k]) for k in EC_SECTION_KNOBS}
    if extra:
        ov = merge(extra, ov)
    return {"preset": v["preset"], "overrides": ov}


def check_spec(spec: Mapping):
    """Validate a run spec with engine.config; returns the RunConfig or raises ConfigError."""
    return facts.make_config(spec.get("preset", "digits"), spec.get("overrides") or {})


def prefill_config(prefill: Mapping):
    """A RunConfig from a hand-off dict: {"config": full dict} or {"preset", "overrides"}."""
    if prefill.get("config"):
        return facts.validate(dict(prefill["config"]))
    return facts.make_config(prefill.get("preset", "digits"), prefill.get("overrides") or {})


# Options the Launch form sets itself; everything else a hand-off carries is kept as "extra" overrides.
FORM_OPTIONS = {"preset", "method", "plugin", "beta", "seed", "device", "calibrate", "model.arch", "forget.classes",
                "forget.random", *(f"ec.{k}" for k in EC_SECTION_KNOBS)}


def _knob(name: str, value):
    """A form value as its option's type: epochs an int, the layer weights a list of floats."""
    if name == "epochs":
        return int(value)
    if name == "weights":
        return [float(w) for w in value]
    return float(value)


def _flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _unflatten(flat: Mapping[str, Any]) -> dict:
    out: dict = {}
    for key, v in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def extra_overrides(cfg, defaults: Mapping) -> dict:
    """What a handed-over RunConfig changes from its preset's defaults beyond the form's own options
    (e.g. train.epochs, model.width, eval.*, other methods' knobs): nested overrides to keep."""
    own = set(FORM_OPTIONS) | {f"methods.{cfg.method}.{k}" for k in method_knobs(cfg.method)}
    full, base = _flatten(cfg.model_dump()), _flatten(dict(defaults))
    return _unflatten({k: v for k, v in full.items() if k not in own and base.get(k, object()) != v})


merge = facts.deep_merge  # the one deep merge (engine/config.py)


def dotted(d: Mapping) -> list[str]:
    return [f"{k}={v}" for k, v in _flatten(d).items()]


def config_from_results_run(results: Mapping, name: str) -> dict | None:
    """A hand-off for the Launch form that reproduces one run of a results file."""
    cfg = dict(results.get("config") or {})
    if not cfg or name in REFERENCE:
        return None
    run = (results.get("runs") or {}).get(name) or {}
    method = run.get("method") or base_method(name)
    cfg["method"] = method
    cfg["plugin"] = "ec" if name.endswith("+ec") else "none"
    return {"config": cfg, "source": f"the {facts.display_name(name)} run of a finished job"}
