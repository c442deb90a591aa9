"""The search space: validating and reading a space file (format: the engine.sweep docstring), the
grid, asking a trial for its parameters, and turning parameters into run-config overrides."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..config import ConfigError

SPACE_PARAMS = ("weights", "tau", "lambda_cu", "lambda_ce", "lr", "epochs", "beta")
INT_PARAMS = ("epochs",)
DEFAULT_SPACE = {"weights": {"low": 0.0, "high": 3.0}, "tau": {"low": 0.05, "high": 5.0, "log": True}}
# where each parameter goes in the run config ("{method}": the swept run's method, swept_run)
TARGETS = {"tau": ("ec", "tau"), "lambda_cu": ("ec", "lambda_cu"), "lambda_ce": ("ec", "lambda_ce"),
           "lr": ("methods", "{method}", "lr"), "epochs": ("methods", "{method}", "epochs"), "beta": ("beta",)}
# hard limits of the config (engine.config) so a space is rejected before any trial runs
LIMITS = {"weights": (0.0, None), "tau": (0.0, 100.0), "lambda_cu": (0.0, 1000.0), "lambda_ce": (0.0, 1000.0),
          "lr": (0.0, 10.0), "epochs": (1, 1000), "beta": (0.0, 1000.0)}
GE_PARAMS = ("weights", "lambda_cu", "lambda_ce", "epochs")  # low may equal the limit (others: strictly above)


class SpaceError(ConfigError):
    """The space file is invalid; `option` names the offending key (space.<key>[.<field>])."""


def validate_space(space: Any) -> dict:
    """Check a space dict (see the engine.sweep docstring); return it normalised:
    {param: {"low", "high", "log", "step", "grid"}} for the parameters searched."""
    if space is None:
        space = DEFAULT_SPACE
    if not isinstance(space, dict):
        raise SpaceError("space", "must be a JSON object, e.g. {\"tau\": {\"low\": 0.05, \"high\": 5, \"log\": true}}")
    out: dict = {}
    for key, spec in space.items():
        if key == "comment":
            continue
        if key not in SPACE_PARAMS:
            raise SpaceError(f"space.{key}", f"unknown parameter {key!r}; choose from {', '.join(SPACE_PARAMS)} "
                                             f"(or \"comment\")")
        if spec is None or spec is False:
            continue
        if not isinstance(spec, dict):
            raise SpaceError(f"space.{key}", "give a range {\"low\": .., \"high\": ..} (optional log, step, grid), "
                                             "or false to leave it out")
        bad = sorted(set(spec) - {"low", "high", "log", "step", "grid"})
        if bad:
            raise SpaceError(f"space.{key}.{bad[0]}", "unknown field; a range has low, high, log, step, grid")
        is_int = key in INT_PARAMS
        grid = spec.get("grid")
        if grid is not None:
            if not isinstance(grid, list) or not grid or not all(_is_number(v) for v in grid):
                raise SpaceError(f"space.{key}.grid", "must be a non-empty list of numbers")
            if is_int and not all(float(v).is_integer() for v in grid):
                raise SpaceError(f"space.{key}.grid", "must hold whole numbers")
        low = spec.get("low", min(grid) if grid else None)
        high = spec.get("high", max(grid) if grid else None)
        for name, v in (("low", low), ("high", high)):
            if not _is_number(v):
                raise SpaceError(f"space.{key}.{name}", f"must be a number (got {v!r})")
            if is_int and not float(v).is_integer():
                raise SpaceError(f"space.{key}.{name}", f"must be a whole number (got {v!r})")
        if low > high:
            raise SpaceError(f"space.{key}", f"low ({low}) is above high ({high})")
        lo_lim, hi_lim = LIMITS[key]
        inclusive = key in GE_PARAMS
        if low < lo_lim or (not inclusive and low <= lo_lim):
            raise SpaceError(f"space.{key}.low", f"must be {'>=' if inclusive else '>'} {lo_lim} (got {low})")
        if hi_lim is not None and high > hi_lim:
            raise SpaceError(f"space.{key}.high", f"must be <= {hi_lim} (got {high})")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(f"space.{key}.log", "must be true or false")
        if log and low <= 0:
            raise SpaceError(f"space.{key}.log", f"a log scale needs low > 0 (got {low})")
        step = spec.get("step")
        if step is not None:
            if not _is_number(step) or step <= 0:
                raise SpaceError(f"space.{key}.step", f"must be a number > 0 (got {step!r})")
            if log:
                raise SpaceError(f"space.{key}.step", "cannot be combined with log")
        if grid is not None:
            outside = [v for v in grid if v < low or v > high]
            if outside:
                raise SpaceError(f"space.{key}.grid", f"values {outside} lie outside [{low}, {high}]")
        norm = {"low": int(low) if is_int else float(low), "high": int(high) if is_int else float(high), "log": log}
        if step is not None:
            norm["step"] = int(step) if is_int else float(step)
        if grid is not None:
            norm["grid"] = sorted({int(v) if is_int else float(v) for v in grid})
        out[key] = norm
    if not out:
        raise SpaceError("space", "searches nothing: enable at least one of " + ", ".join(SPACE_PARAMS))
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_space(path: str | Path | None) -> dict:
    """Read and validate a space file (None: the default space)."""
    if path is None:
        return validate_space(None)
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpaceError("space", f"file {path} does not exist") from None
    except IsADirectoryError:
        raise SpaceError("space", f"{path} is a folder: give the path of a JSON space file inside it") from None
    except OSError as err:  # permissions, a device, an unreadable disk
        raise SpaceError("space", f"cannot read {path} ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SpaceError("space", f"{path} is not valid JSON ({err})") from None
    return validate_space(raw)


def param_names(space: dict, points: list[str]) -> list[str]:
    names = [f"w_{p}" for p in points] if "weights" in space else []
    return names + [k for k in SPACE_PARAMS if k != "weights" and k in space]


def _grid_values(key: str, spec: dict) -> list:
    if "grid" in spec:
        return list(spec["grid"])
    lo, hi = spec["low"], spec["high"]
    if key in INT_PARAMS:
        vals = list(range(lo, hi + 1, spec.get("step", 1)))
        return vals if len(vals) <= 5 else sorted({lo, (lo + hi) // 2, hi})
    if lo == hi:
        return [lo]
    mid = math.sqrt(lo * hi) if spec["log"] else (lo + hi) / 2
    return [lo, float(f"{mid:.6g}"), hi]


def grid_space(space: dict, points: list[str]) -> dict[str, list]:
    out = {}
    for key, spec in space.items():
        names = [f"w_{p}" for p in points] if key == "weights" else [key]
        for n in names:
            out[n] = _grid_values(key, spec)
    return out


def grid_size(space: dict, points: list[str]) -> int:
    n = 1
    for vals in grid_space(space, points).values():
        n *= len(vals)
    return n


def swept_run(overrides: dict | None) -> tuple[str, str]:
    """The (method, plugin) a sweep's trials run: EC by default, or any method with the EC plug-in
    (the study's overrides name them: method=ft, plugin=ec)."""
    overrides = overrides or {}
    return str(overrides.get("method", "ec")), str(overrides.get("plugin", "none"))


def suggest(trial, space: dict, points: list[str], run: tuple[str, str] = ("ec", "none")) -> tuple[dict, dict]:
    """Ask the trial for every parameter; returns (params, config overrides)."""
    params: dict = {}
    for key, spec in space.items():
        names = [f"w_{p}" for p in points] if key == "weights" else [key]
        for n in names:
            if key in INT_PARAMS:
                params[n] = trial.suggest_int(n, spec["low"], spec["high"], log=spec["log"], step=spec.get("step", 1))
            else:
                params[n] = trial.suggest_float(n, spec["low"], spec["high"], log=spec["log"], step=spec.get("step"))
    return params, params_to_overrides(params, points, run)


def params_to_overrides(params: dict, points: list[str], run: tuple[str, str] = ("ec", "none")) -> dict:
    """Trial params -> nested config overrides of the swept run (`run` = (method, plugin), swept_run;
    weights in supervision-point order)."""
    method, plugin = run
    over: dict = {"method": method, "plugin": plugin}
    if any(f"w_{p}" in params for p in points):
        over["ec"] = {"weights": [float(params.get(f"w_{p}", 1.0)) for p in points]}
    for key, path in TARGETS.items():
        if key in params:
            path = [part.format(method=method) for part in path]
            node = over
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = params[key]
    return over


def _params_text(params: dict) -> str:
    ws = [v for k, v in params.items() if k.startswith("w_")]
    parts = [f"weights {_fmt_list(ws)}"] if ws else []
    parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
              for k, v in params.items() if not k.startswith("w_")]
    return ", ".join(parts)


def _fmt_list(vals) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in vals) + "]"
