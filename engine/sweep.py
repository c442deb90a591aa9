"""Hyperparameter sweeps of EC on Optuna: `python -m engine sweep` and `python -m engine sweep-worker`.

A sweep is a multi-objective Optuna study over EC's per-layer weights (one per supervision point of the
architecture) and its contrastive temperature tau, optionally also lambda_cu, lambda_ce, EC's learning
rate and epochs. Each trial is an ordinary single EC run (`runner.execute("run", ...)`) into
$ECLAB_HOME/runs/<run id>, so the dashboard and `python -m engine show` read it like any run.

Objectives (per trial):
    cka_gap_to_retrain  minimise: |EC's forget CKA - the retrained model's forget CKA|, where forget CKA
                        is the mean forget-split CKA to the original over the intermediate supervision
                        points (runner.mean_mid_cka: all points but the last). Retrain is the gold
                        standard: closer is better in either direction (a CKA below retrain's is
                        distortion, not more forgetting).
    retain_acc          maximise: accuracy on the retain split
Constraint:      |forget_acc - retrained model's forget_acc| <= 0.05 ("tolerance" study attr). Stored
                 with Trial.set_constraint("forget_gap", gap - tolerance) -- the Optuna 5 replacement of
                 the deprecated `constraints_func=` of TPESampler / NSGAIISampler, which reads the same
                 value -- and as the trial user attr "constraint" (feasible when <= 0).

Trials (and the reference run) evaluate without the UMAP embedding and without per-epoch CKA
(SWEEP_EVAL_DEFAULTS: eval.umap=false, eval.epoch_cka=false; --set eval.umap=true brings them back):
neither changes an objective, and they cost about half of a digits trial. They also run with
calibrate=off (SWEEP_FIXED, not overridable): under `auto` a single run may reuse a comparison's
calibrated lr/epochs, and a trial must run at exactly the settings the sweep chose. A study's
"overrides" attr holds the scenario overrides with these included.

Format versions (study attr eclab_sweep): 1 minimised EC's raw forget CKA, 2 (this one) the distance
to retrain's. `sweep` and `sweep-worker` refuse to continue a study of another version (start a new
--study name); `sweep-show` and the dashboard still list its trials as recorded.

Parallelism: a trial is one small run, so workers default to ONE torch thread each and a machine is
used by running one worker per core (--workers K). On the 2-core development machine, a digits trial
took 7.5 s with one thread and 50-70 s with two threads while other processes competed for the cores.

Commands:
    python -m engine sweep --preset digits [scenario flags] --trials N [--study NAME] [--storage URL]
                           [--sampler tpe|nsga2|grid] [--space FILE] [--workers K] [--threads T]
        creates (or continues) the study, runs the default EC settings once as the reference (cached
        per configuration), runs trials in this process plus K-1 `sweep-worker` subprocesses until the
        budget is used, then prints the Pareto front and the comparison with the defaults.
    python -m engine sweep-worker --study NAME [--storage URL] [--threads T]
        joins an existing study (from this or another machine) and runs trials until its budget is used.
    python -m engine sweep-show --study NAME [--storage URL] [--json]
        prints the summary of a study (also while it runs); like a worker, it first marks trials of dead
        workers failed.

Space file (--space FILE, JSON). Keys are the parameters searched; a missing key keeps the scenario's
value (its config default or --set). Default space: {"weights": {"low": 0, "high": 3},
"tau": {"low": 0.05, "high": 5, "log": true}}.

    {
      "weights":   {"low": 0.0, "high": 3.0},              one parameter per supervision point,
                                                           named w_<point> (w_block1 ... w_block4)
      "tau":       {"low": 0.05, "high": 5.0, "log": true},      ec.tau
      "lambda_cu": {"low": 0.5, "high": 10.0, "log": true},      ec.lambda_cu
      "lambda_ce": {"low": 0.5, "high": 4.0},                    ec.lambda_ce
      "lr":        {"low": 0.001, "high": 0.1, "log": true},     methods.ec.lr
      "epochs":    {"low": 1, "high": 10},                       methods.ec.epochs (integers)
      "comment":   "free text, ignored"
    }

Each range holds "low" and "high" (low <= high), and optionally "log" (bool; needs low > 0),
"step" (float > 0; not with log) and "grid" (a list of values inside [low, high] for --sampler grid).
A range may be given as {"grid": [...]} alone (low/high then come from the list), and a key may be
set to false (or null) to leave that parameter out (e.g. "weights": false keeps all weights at 1.0).
Without "grid", the grid sampler uses low, middle and high (geometric middle with log; for epochs
every integer when there are at most 5). Unknown keys raise SpaceError naming the key.

Storage (--storage):
    default            $ECLAB_SWEEP_STORAGE when set, else the Optuna JournalStorage file
                       $ECLAB_HOME/sweeps/<study>.journal (JournalFileBackend: any number of
                       processes on one machine, or on machines sharing a POSIX file system)
    a path             a journal file at that path
    URL with "://"     RDBStorage (postgresql://user:pass@host/db -- run through psycopg2 when no
                       driver is named --, sqlite:///file.db, ...), with
                       heartbeat_interval 10 s and grace_period 30 s: Optuna fails trials whose heartbeat
                       stopped; several machines can share one PostgreSQL database.

Trial budget: the study user attr "n_trials". A worker takes a trial only while the number of
trials (COMPLETE + FAIL + RUNNING) is below it; that count and the creation of the trial happen under
one lock (a file lock <journal>.budget-lock beside the journal or SQLite file; a PostgreSQL advisory
lock), so workers never overshoot and trial numbers run 0..n_trials-1 without gaps or duplicates.
The grid sampler numbers grid points by trial number in an order shuffled by the study's seed, which
every worker uses, so no point runs twice.

Failures: any exception of a trial (DivergenceError on a NaN loss, out of memory, invalid config...)
marks it FAIL with the reason in the user attr "error"; the worker goes on. SIGTERM / Ctrl-C mark the
current trial FAIL ("interrupted") and stop the worker. A worker killed outright leaves a RUNNING trial:
every worker, before taking a trial, fails RUNNING trials whose worker process is gone (same host) or
whose heartbeat (user attr "heartbeat", written every ECLAB_SWEEP_HEARTBEAT_S = 10 s) is older than
ECLAB_SWEEP_GRACE_S = 30 s. Optuna 5's JournalStorage has no heartbeat of its own; with RDBStorage,
Optuna's heartbeat is recorded too and optuna.storages.fail_stale_trials runs as a backstop.

Trial user attrs: run_id, host, pid, worker, home, heartbeat, started, seconds (whole trial),
cka_gap_to_retrain, forget_cka (EC's), retrain_forget_cka, retain_acc, forget_acc, test_acc,
retrain_forget_acc, constraint, feasible, unlearn_seconds, registered (a done job row was written
through engine.api.record_external), error (failed trials).
Study user attrs: eclab_sweep (format version), n_trials, preset, overrides, space, sampler,
sampler_options, seed, tolerance, points, objectives, created, reference (the default EC run).
"""
from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from . import store
from .config import SUPERVISION_POINTS, ConfigError, _merge, make_config, stable_hash
from .events import Cancelled, JobContext

FORMAT_VERSION = 2  # 1: the first objective was EC's raw forget CKA (rewarded distortion)
SAMPLERS = ("tpe", "nsga2", "grid")
OBJECTIVES = ["cka_gap_to_retrain", "retain_acc"]
DIRECTIONS = ["minimize", "maximize"]
TOLERANCE = 0.05
SPACE_PARAMS = ("weights", "tau", "lambda_cu", "lambda_ce", "lr", "epochs")
INT_PARAMS = ("epochs",)
DEFAULT_SPACE = {"weights": {"low": 0.0, "high": 3.0}, "tau": {"low": 0.05, "high": 5.0, "log": True}}
# Evaluation a sweep skips unless --set asks for it: neither changes the objectives, and together they
# are about half of a digits trial (UMAP embedding of every run; CKA after every epoch).
SWEEP_EVAL_DEFAULTS = {"eval": {"umap": False, "epoch_cka": False}}
# Settings every trial and the reference run get: calibrate=auto could swap in a cached lr/epochs.
SWEEP_FIXED = {"calibrate": "off"}
# where each parameter goes in the run config
TARGETS = {"tau": ("ec", "tau"), "lambda_cu": ("ec", "lambda_cu"), "lambda_ce": ("ec", "lambda_ce"),
           "lr": ("methods", "ec", "lr"), "epochs": ("methods", "ec", "epochs")}
# hard limits of the config (engine.config) so a space is rejected before any trial runs
LIMITS = {"weights": (0.0, None), "tau": (0.0, 100.0), "lambda_cu": (0.0, 1000.0), "lambda_ce": (0.0, 1000.0),
          "lr": (0.0, 10.0), "epochs": (1, 1000)}
GE_PARAMS = ("weights", "lambda_cu", "lambda_ce", "epochs")  # low may equal the limit (others: strictly above)
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")  # fullmatch: `$` would let a "\n" through


class SpaceError(ConfigError):
    """The space file is invalid; `option` names the offending key (space.<key>[.<field>])."""


class SweepError(RuntimeError):
    """A sweep cannot start or continue (unknown study, settings mismatch, storage unreachable)."""


def heartbeat_seconds() -> float:
    return max(0.2, _env_float("ECLAB_SWEEP_HEARTBEAT_S", 10.0))


def grace_seconds() -> float:
    return max(1.0, _env_float("ECLAB_SWEEP_GRACE_S", 30.0))


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# -- the search space ------------------------------------------------------------------------------

def validate_space(space: Any) -> dict:
    """Check a space dict (see the module docstring); return it normalised:
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


def suggest(trial, space: dict, points: list[str]) -> tuple[dict, dict]:
    """Ask the trial for every parameter; returns (params, config overrides)."""
    params: dict = {}
    for key, spec in space.items():
        names = [f"w_{p}" for p in points] if key == "weights" else [key]
        for n in names:
            if key in INT_PARAMS:
                params[n] = trial.suggest_int(n, spec["low"], spec["high"], log=spec["log"], step=spec.get("step", 1))
            else:
                params[n] = trial.suggest_float(n, spec["low"], spec["high"], log=spec["log"], step=spec.get("step"))
    return params, params_to_overrides(params, points)


def params_to_overrides(params: dict, points: list[str]) -> dict:
    """Trial params -> nested config overrides (method ec, weights in supervision-point order)."""
    over: dict = {"method": "ec", "plugin": "none"}
    if any(f"w_{p}" in params for p in points):
        over["ec"] = {"weights": [float(params.get(f"w_{p}", 1.0)) for p in points]}
    for key, path in TARGETS.items():
        if key in params:
            node = over
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = params[key]
    return over


# -- storage -----------------------------------------------------------------------------------------

def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name):
        raise ConfigError("study", f"invalid study name {name!r}: letters, digits, '_' or '-' (at most 40), "
                                   f"starting with a letter or digit")
    return name


def sweeps_dir() -> Path:
    path = store.home() / "sweeps"
    path.mkdir(parents=True, exist_ok=True)
    return path


def journal_path(study: str) -> Path:
    return sweeps_dir() / f"{check_study_name(study)}.journal"


def is_url(storage: str) -> bool:
    return "://" in str(storage)


def resolve_storage(storage: str | None, study: str) -> str:
    """The storage a command uses: --storage, else $ECLAB_SWEEP_STORAGE, else the study's journal file."""
    storage = storage or os.environ.get("ECLAB_SWEEP_STORAGE") or None
    if storage is None:
        return str(journal_path(study))
    if is_url(storage):
        return storage
    return str(Path(storage).expanduser().resolve())


def redact(storage: str) -> str:
    """A storage string safe to print: the password of a URL replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(storage))


def db_url(url: str) -> str:
    """The SQLAlchemy URL for a database storage. A plain postgresql:// (or postgres://) URL names no
    driver; SQLAlchemy 2.1 then wants psycopg 3, while EC Lab ships psycopg2-binary: use whichever is
    installed (an explicit postgresql+driver:// is kept as given)."""
    m = re.match(r"^(postgres|postgresql)://", url)
    if not m:
        return url
    rest = url[m.end():]
    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"


def _quiet_optuna():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"optuna.*")
    return optuna


def open_storage(storage: str):
    """An Optuna storage for a resolved storage string (journal path or database URL)."""
    optuna = _quiet_optuna()
    if is_url(storage):
        kwargs: dict = {}
        if storage.startswith(("postgresql", "postgres")):
            kwargs["engine_kwargs"] = {"pool_pre_ping": True}
        try:
            return optuna.storages.RDBStorage(db_url(storage),
                                              heartbeat_interval=max(1, int(round(heartbeat_seconds()))),
                                              grace_period=max(1, int(round(grace_seconds()))), **kwargs)
        except Exception as err:
            raise SweepError(f"cannot open the sweep storage {redact(storage)}: {_one_line(err)}") from None
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def budget_lock(storage_str: str, raw_storage, study: str) -> Iterator[bool]:
    """Serialises "count trials, then create one" across workers. Yields True when the lock is real."""
    if not is_url(storage_str):
        with _file_lock(Path(storage_str + ".budget-lock")):
            yield True
        return
    if storage_str.startswith("sqlite:///"):
        with _file_lock(Path(storage_str[len("sqlite:///"):] + ".budget-lock")):
            yield True
        return
    engine = getattr(raw_storage, "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        from sqlalchemy import text
        key = int(stable_hash({"eclab-sweep": study}, 15), 16) & 0x7FFFFFFFFFFFFFFF
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield True
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    yield False  # other databases: no lock; the budget is re-checked after the trial is created


# -- studies ---------------------------------------------------------------------------------------

def make_sampler(attrs: dict, seed: int | None = None):
    optuna = _quiet_optuna()
    name = attrs.get("sampler", "tpe")
    opts = attrs.get("sampler_options") or {}
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True,
                                          n_startup_trials=int(opts.get("n_startup_trials", 10)))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=int(opts.get("population_size", 8)))
    if name == "grid":
        class _Grid(optuna.samplers.GridSampler):
            def after_trial(self, study, trial, state, values) -> None:
                pass  # GridSampler calls study.stop() here, which is only allowed inside study.optimize()

        # grid point = trial number in an order shuffled by the seed: every process must use the same seed
        return _Grid(grid_space(attrs["space"], attrs["points"]), seed=int(attrs.get("seed") or 0))
    raise ConfigError("sampler", f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")


def default_study_name(preset: str, overrides: dict, space: dict, sampler: str) -> str:
    # the format version is in the hash: after an upgrade the same command starts a new study instead
    # of hitting an old one that check_version refuses
    key = {"p": preset, "o": overrides, "s": space, "x": sampler, "v": FORMAT_VERSION}
    return f"{preset}-ec-{stable_hash(key, 8)}"


def check_version(attrs: dict, study: str, storage: str) -> None:
    """A study of another format ranks its trials by another objective: never continue it silently."""
    version = attrs.get("eclab_sweep")
    if version != FORMAT_VERSION:
        raise SweepError(f"study {study!r} in {redact(storage)} was made by sweep format {version} (objectives "
                         f"{', '.join(attrs.get('objectives') or ['?'])}); this version minimises "
                         f"{OBJECTIVES[0]} (the distance to retrain's forget CKA) and cannot continue it: start a "
                         f"new --study name (`sweep-show --study {study}` still prints the old one)")


def create_study(study: str, storage: str | None = None, *, preset: str = "digits", overrides: dict | None = None,
                 space: dict | None = None, sampler: str = "tpe", n_trials: int = 24, seed: int = 0):
    """Create the study (or continue an existing one with the same settings: its budget becomes n_trials).
    Validates the scenario and the space before anything is written. Returns the optuna Study."""
    check_study_name(study)
    if sampler not in SAMPLERS:
        raise ConfigError("sampler", f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not isinstance(n_trials, int) or n_trials < 0:
        raise ConfigError("trials", f"must be a whole number >= 0 (got {n_trials!r})")
    overrides = _merge(copy.deepcopy(SWEEP_EVAL_DEFAULTS), copy.deepcopy(overrides or {}))
    if overrides.get("calibrate", "off") != "off":
        raise ConfigError("calibrate", f"a sweep's trials run at the settings it picks: calibrate must be off "
                                       f"(got {overrides['calibrate']!r})")
    overrides = _merge(overrides, SWEEP_FIXED)
    space = validate_space(space)
    cfg = make_config(preset, _merge(overrides, {"method": "ec", "plugin": "none"}))  # the scenario is valid
    points = list(SUPERVISION_POINTS[cfg.model.arch])
    # the space's corners must make valid configs too (e.g. epochs within limits)
    for corner in ("low", "high"):
        params = {n: space["weights" if n.startswith("w_") else n][corner] for n in param_names(space, points)}
        if all(params.get(f"w_{p}", 1.0) == 0 for p in points):
            params[f"w_{points[0]}"] = 1.0  # all-zero weights are a per-trial failure, not a space error
        make_config(preset, _merge(overrides, params_to_overrides(params, points)))
    if sampler == "grid":
        n_trials = min(n_trials, grid_size(space, points))
    storage = resolve_storage(storage, study)
    optuna = _quiet_optuna()
    raw = open_storage(storage)
    settings = {"preset": preset, "overrides": overrides, "space": space, "sampler": sampler}
    existing = {s.study_name: s for s in raw.get_all_studies()}
    if study in existing:
        attrs = existing[study].user_attrs
        if not attrs.get("eclab_sweep"):
            raise SweepError(f"study {study!r} in {redact(storage)} is not an EC Lab sweep; pick another --study")
        check_version(attrs, study, storage)
        for key, value in settings.items():
            if _canon(attrs.get(key)) != _canon(value):
                raise SweepError(f"study {study!r} exists with a different {key} ({json.dumps(attrs.get(key))} vs "
                                 f"{json.dumps(value)}); pick another --study or repeat its settings")
        st = optuna.load_study(study_name=study, storage=raw)
        st.set_user_attr("n_trials", n_trials)
        return st
    st = optuna.create_study(study_name=study, storage=raw, directions=DIRECTIONS, load_if_exists=True)
    st.set_metric_names(OBJECTIVES)
    opts = {"n_startup_trials": max(3, min(10, n_trials // 3))} if sampler == "tpe" else (
        {"population_size": max(4, min(50, n_trials // 3))} if sampler == "nsga2" else {})
    attrs = {**settings, "sampler_options": opts, "seed": seed, "tolerance": TOLERANCE, "points": points,
             "objectives": OBJECTIVES, "created": time.time(), "n_trials": n_trials,
             "eclab_sweep": FORMAT_VERSION}  # the marker last: a worker that sees it sees everything
    for key, value in attrs.items():
        st.set_user_attr(key, value)
    return st


def _canon(v) -> str:
    return json.dumps(v, sort_keys=True)


def load_study(study: str, storage: str | None = None, sampler_seed: int | None = None):
    """Open an existing sweep study with its sampler; returns (study, resolved storage string, raw storage)."""
    check_study_name(study)
    storage = resolve_storage(storage, study)
    if not is_url(storage) and not Path(storage).exists():
        raise SweepError(f"no sweep study {study!r}: {storage} does not exist (start one with "
                         f"`python -m engine sweep --study {study} ...`)")
    optuna = _quiet_optuna()
    raw = open_storage(storage)
    found = {s.study_name: s for s in raw.get_all_studies()}
    if study not in found:
        names = ", ".join(sorted(found)) or "none"
        raise SweepError(f"no study {study!r} in {redact(storage)} (studies there: {names})")
    attrs = found[study].user_attrs
    if not attrs.get("eclab_sweep"):
        raise SweepError(f"study {study!r} in {redact(storage)} is not an EC Lab sweep")
    st = optuna.load_study(study_name=study, storage=raw, sampler=make_sampler(attrs, sampler_seed))
    return st, storage, raw


# -- running trials --------------------------------------------------------------------------------

def _one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split()) or repr(exc)
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError):
        return True
    return True


def recover_stale(study, grace: float | None = None) -> list[int]:
    """Fail RUNNING trials whose worker is gone (process dead on this host) or silent for `grace`
    seconds, with the reason in user attr "error". Returns the trial numbers failed."""
    optuna = _quiet_optuna()
    from optuna.trial import TrialState
    grace = grace_seconds() if grace is None else grace
    now, host, me = time.time(), socket.gethostname(), os.getpid()
    failed = []
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        ua = t.user_attrs
        pid, thost = ua.get("pid"), ua.get("host")
        if thost == host and pid == me:
            continue
        beat = ua.get("heartbeat")
        if beat is None and t.datetime_start is not None:
            beat = t.datetime_start.timestamp()
        dead_here = thost == host and pid is not None and not _pid_alive(pid)
        silent = beat is None or now - float(beat) > grace
        if not (dead_here or silent):
            continue
        who = f"{ua.get('worker', '?')}"
        reason = (f"interrupted: worker {who} (pid {pid}) is gone" if dead_here else
                  f"interrupted: worker {who} sent no heartbeat for {now - float(beat or now):.0f} s "
                  f"(more than {grace:.0f} s)")
        try:
            storage.set_trial_user_attr(t._trial_id, "error", reason)
            if storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                failed.append(t.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    with contextlib.suppress(Exception):
        failed_rdb = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        optuna.storages.fail_stale_trials(study)  # RDB heartbeat backstop (no-op for journals)
        now_running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        failed += [n for n in failed_rdb if n not in now_running and n not in failed]
    return failed


class _Heartbeat:
    """Writes the trial's "heartbeat" user attr (and RDB's own heartbeat) every few seconds."""

    def __init__(self, study, trial_id: int, raw):
        self.study, self.trial_id, self.raw = study, trial_id, raw
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="sweep-heartbeat")

    def _loop(self):
        interval = heartbeat_seconds()
        while not self.stop_event.wait(interval):
            try:
                self.study._storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
                if hasattr(self.raw, "record_heartbeat") and getattr(self.raw, "heartbeat_interval", None):
                    self.raw.record_heartbeat(self.trial_id)
            except Exception:  # finished meanwhile, or a storage hiccup: the next beat retries
                if self.stop_event.is_set():
                    return

    def __enter__(self):
        with contextlib.suppress(Exception):
            if hasattr(self.raw, "record_heartbeat") and getattr(self.raw, "heartbeat_interval", None):
                self.raw.record_heartbeat(self.trial_id)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join(timeout=30)


class TrialContext(JobContext):
    """Progress of a trial's run into its log.txt; cancelled when the worker is asked to stop."""

    def __init__(self, run_dir: Path, stop: threading.Event):
        self.log_path = Path(run_dir) / "log.txt"
        self.stop = stop
        self._last = None

    def emit(self, event: dict) -> None:
        if event.get("type") not in ("stage", "log"):
            return
        msg = event.get("message", "")
        if msg and msg != self._last:
            self._last = msg
            with contextlib.suppress(OSError), open(self.log_path, "a") as fh:
                fh.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}\n")

    def cancelled(self) -> bool:
        return self.stop.is_set()


def run_spec(attrs: dict, params: dict) -> dict:
    """The job spec of one trial: {"preset", "overrides"} with the trial's EC settings."""
    over = _merge(copy.deepcopy(attrs.get("overrides") or {}), params_to_overrides(params, attrs["points"]))
    return {"preset": attrs["preset"], "overrides": _merge(over, SWEEP_FIXED)}


def measure(summary: dict, tolerance: float = TOLERANCE) -> dict:
    """Objectives and constraint from runner.summarize's output of a single EC run."""
    runs = summary["runs"]
    ec = runs.get("ec") or next(v for k, v in runs.items() if k not in ("original", "retrain"))
    cka, retain, forget = ec.get("forget_cka_mid"), ec.get("retain_acc"), ec.get("forget_acc")
    retrain = runs.get("retrain") or {}
    ref_cka, ref_forget = retrain.get("forget_cka_mid"), retrain.get("forget_acc")
    for name, v in (("forget CKA", cka), ("retain accuracy", retain), ("forget accuracy", forget),
                    ("the retrained model's forget CKA", ref_cka),
                    ("the retrained model's forget accuracy", ref_forget)):
        if v is None or not math.isfinite(float(v)):
            raise ValueError(f"{name} was not measured (got {v!r})")
    constraint = abs(float(forget) - float(ref_forget)) - tolerance
    return {"cka_gap_to_retrain": abs(float(cka) - float(ref_cka)), "forget_cka": float(cka),
            "retrain_forget_cka": float(ref_cka), "retain_acc": float(retain), "forget_acc": float(forget),
            "test_acc": ec.get("test_acc"), "retrain_forget_acc": float(ref_forget),
            "constraint": float(constraint), "feasible": constraint <= 0, "unlearn_seconds": ec.get("seconds")}


def register_run(run_id: str, spec: dict, run_dir: Path, summary: dict) -> bool:
    """Make a finished trial run discoverable as a done job (engine.jobs), when the job module offers
    a way to record work that ran outside the queue. Returns whether a job row was written."""
    fn = None
    for mod in ("engine.api", "engine.jobs"):
        try:
            fn = getattr(importlib.import_module(mod), "record_external", None)
        except ModuleNotFoundError:
            fn = None
        if fn is not None:
            break
    if fn is None:
        return False
    try:
        from .runner import prepare
        norm, _ = prepare("run", spec)
        fn("run", norm, run_dir, summary)
        return True
    except Exception as err:  # never lose a finished trial over the job table
        print(f"warning: could not record run {run_id} as a job: {_one_line(err)}", file=sys.stderr)
        return False


_THREADS_SET = False


def _set_threads(threads: int | None) -> None:
    global _THREADS_SET
    if threads and not _THREADS_SET:
        import torch
        torch.set_num_threads(int(threads))
        _THREADS_SET = True


def warm_bases(attrs: dict, out=sys.stderr) -> None:
    """Build (or find) the scenario's cached base models once per machine: concurrent workers wait on a
    file lock instead of training the same models side by side."""
    from . import runner
    spec = run_spec(attrs, {})
    folder = sweeps_dir()
    with _file_lock(folder / ".bases.lock"):
        tmp = Path(tempfile.mkdtemp(prefix=".warm-", dir=folder))
        try:
            t0 = time.perf_counter()
            runner.execute("base", spec, tmp)
            dt = time.perf_counter() - t0
            if dt > 5:
                print(f"[sweep] built the base models in {dt:.0f} s (cached for later trials)", file=out, flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def reference(attrs: dict, out=sys.stderr) -> dict:
    """The default EC settings on the study's scenario: one ordinary run, cached per configuration in
    $ECLAB_HOME/sweeps/reference-<hash>.json."""
    from . import runner
    spec = run_spec(attrs, {})  # the study's scenario at EC's default settings
    norm, config_hash = runner.prepare("run", spec)
    path = sweeps_dir() / f"reference-{config_hash}.json"
    if path.exists():
        with contextlib.suppress(store.CheckpointError):
            ref = store.load_json(path)
            if OBJECTIVES[0] in ref and store.run_dir(ref["run_id"]).joinpath("results.json").exists():
                return ref
    run_id = store.check_id(f"swref-{config_hash}")
    run_dir = store.run_dir(run_id, create=True)
    print("[sweep] running the default EC settings once as the reference", file=out, flush=True)
    summary = runner.execute("run", spec, run_dir, TrialContext(run_dir, threading.Event()))
    ref = {**measure(summary, attrs.get("tolerance", TOLERANCE)), "run_id": run_id, "hash": config_hash,
           "weights": make_config(spec["preset"], spec["overrides"]).layer_weights,
           "tau": norm["config"]["ec"]["tau"]}
    ref["registered"] = register_run(run_id, spec, run_dir, summary)
    store.atomic_write_json(path, ref)
    return ref


class Worker:
    """Takes trials of one study until its budget is used (or it is stopped)."""

    def __init__(self, study: str, storage: str | None = None, threads: int | None = None,
                 sampler_seed: int | None = None, out=sys.stderr, name: str | None = None):
        self.study, self.storage, self.raw = load_study(study, storage, sampler_seed)
        check_version(self.study.user_attrs, study, self.storage)
        self.study_name = study
        self.threads = threads
        self.out = out
        self.name = name or f"{socket.gethostname()[:24]}-{os.getpid()}"
        self.stop = threading.Event()
        self.ran = 0
        self.warmed = False  # base models known to be cached on this machine

    def say(self, text: str) -> None:
        with contextlib.suppress(Exception):
            print(f"[{time.strftime('%H:%M:%S')} {self.name}] {text}", file=self.out, flush=True)

    def attrs(self) -> dict:
        return self.study.user_attrs

    def remaining(self) -> int:
        """Trials left in the budget (a snapshot; _take decides under the lock)."""
        return int(self.study.user_attrs.get("n_trials", 0)) - len(self.study.get_trials(deepcopy=False))

    def _take(self):
        """Under the budget lock: fail stale trials, count, create a trial (or None: budget used)."""
        from optuna.trial import TrialState
        with budget_lock(self.storage, self.raw, self.study_name) as locked:
            for n in recover_stale(self.study):
                self.say(f"trial {n}: marked failed (its worker stopped)")
            budget = int(self.study.user_attrs.get("n_trials", 0))
            used = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL,
                                                                      TrialState.RUNNING, TrialState.PRUNED)))
            if used >= budget:
                return None
            trial = self.study.ask()
            if not locked and trial.number >= budget:  # unlocked storage raced past the budget
                self.study.tell(trial, state=TrialState.FAIL)
                return None
            now = time.time()
            for key, value in (("host", socket.gethostname()), ("pid", os.getpid()), ("worker", self.name),
                               ("home", str(store.home())), ("started", now), ("heartbeat", now)):
                trial.set_user_attr(key, value)
            return trial

    def run(self, max_trials: int | None = None) -> int:
        """Run trials until the budget is used; returns how many this worker ran."""
        attrs = self.attrs()
        _set_threads(self.threads)
        while not self.stop.is_set() and (max_trials is None or self.ran < max_trials):
            if not self.warmed:
                if self.remaining() <= 0:  # nothing to do: do not load the models at all
                    break
                warm_bases(attrs, self.out)
                self.warmed = True
            trial = self._take()
            if trial is None:
                break
            self.ran += 1
            self.run_trial(trial, attrs)
        return self.ran

    def run_trial(self, trial, attrs: dict) -> None:
        import optuna
        from optuna.trial import TrialState

        from . import runner
        run_id = store.check_id(f"sw-{self.study_name[:40]}-{trial.number}-{os.urandom(2).hex()}")
        trial.set_user_attr("run_id", run_id)
        t0 = time.perf_counter()
        state, values, error, interrupt, m = TrialState.FAIL, None, None, None, {}
        with _Heartbeat(self.study, trial._trial_id, self.raw):
            try:
                params, _ = suggest(trial, attrs["space"], attrs["points"])
                spec = run_spec(attrs, params)
                make_config(spec["preset"], spec["overrides"])  # invalid settings fail here, named
                run_dir = store.run_dir(run_id, create=True)
                summary = runner.execute("run", spec, run_dir, TrialContext(run_dir, self.stop))
                m = measure(summary, attrs.get("tolerance", TOLERANCE))
                for key, value in m.items():
                    trial.set_user_attr(key, value)
                trial.set_user_attr("constraint", m["constraint"])
                trial.set_constraint("forget_gap", m["constraint"])
                trial.set_user_attr("registered", register_run(run_id, spec, run_dir, summary))
                values, state = [m[k] for k in OBJECTIVES], TrialState.COMPLETE
            except Cancelled as err:
                error, interrupt = "interrupted: the worker was stopped (SIGTERM)", err
            except KeyboardInterrupt as err:
                error, interrupt = "interrupted: Ctrl-C (worker stopped)", err
            except Exception as err:  # DivergenceError, out of memory, invalid settings, ...
                error = _one_line(err)
                if "out of memory" in str(err).lower():
                    _free_accelerator_memory()
            if error:
                with contextlib.suppress(Exception):
                    trial.set_user_attr("error", error)
            with contextlib.suppress(Exception):
                trial.set_user_attr("seconds", time.perf_counter() - t0)
        try:
            self.study.tell(trial, values=values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            self.say(f"trial {trial.number}: another worker had already marked it failed (heartbeat lost)")
        dt = time.perf_counter() - t0
        if state == TrialState.COMPLETE:
            self.say(f"trial {trial.number}: distance to retrain {values[0]:.3f} (forget CKA {m['forget_cka']:.3f} "
                     f"vs retrain {m['retrain_forget_cka']:.3f}), retain {values[1]:.3f}, forget acc "
                     f"{m['forget_acc']:.3f} ({'feasible' if m['feasible'] else 'infeasible'}) "
                     f"in {dt:.1f} s  [{_params_text(trial.params)}]")
        else:
            self.say(f"trial {trial.number}: FAILED in {dt:.1f} s: {error}")
        if interrupt is not None:
            raise interrupt


def _free_accelerator_memory() -> None:
    """After an out-of-memory failure, hand cached GPU memory back before the next trial."""
    with contextlib.suppress(Exception):
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _params_text(params: dict) -> str:
    ws = [v for k, v in params.items() if k.startswith("w_")]
    parts = [f"weights {_fmt_list(ws)}"] if ws else []
    parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
              for k, v in params.items() if not k.startswith("w_")]
    return ", ".join(parts)


def _fmt_list(vals) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in vals) + "]"


# -- reading a study -----------------------------------------------------------------------------

def trial_rows(study) -> list[dict]:
    """One plain dict per trial (what the dashboard and the summary use)."""
    attrs = study.user_attrs
    points = attrs.get("points") or []
    objectives = attrs.get("objectives") or OBJECTIVES  # a format-1 study stored ["forget_cka", "retain_acc"]
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        cons = t.constraints.get("forget_gap", ua.get("constraint"))
        # the stored values under the names the study's own version gave them; the rest from user attrs
        named = dict(zip(objectives, t.values)) if t.state.name == "COMPLETE" and t.values else {}
        got = {k: named.get(k, ua.get(k)) for k in ("cka_gap_to_retrain", "forget_cka", "retrain_forget_cka",
                                                     "retain_acc")}
        ws = [t.params.get(f"w_{p}") for p in points] if any(f"w_{p}" in t.params for p in points) else None
        rows.append({
            "number": t.number, "state": t.state.name, **got,
            "forget_acc": ua.get("forget_acc"), "retrain_forget_acc": ua.get("retrain_forget_acc"),
            "test_acc": ua.get("test_acc"), "constraint": cons,
            "feasible": (cons is not None and cons <= 0) if t.state.name == "COMPLETE" else None,
            "params": dict(t.params), "weights": ws, "tau": t.params.get("tau"),
            "run_id": ua.get("run_id"), "error": ua.get("error"), "worker": ua.get("worker"),
            "host": ua.get("host"), "seconds": ua.get("seconds"), "registered": ua.get("registered"),
            "start": t.datetime_start.timestamp() if t.datetime_start else None,
            "complete": t.datetime_complete.timestamp() if t.datetime_complete else None,
        })
    front = set(pareto_front(rows))
    for r in rows:
        r["pareto"] = r["number"] in front
    return rows


def pareto_front(rows: list[dict], feasible_only: bool = True) -> list[int]:
    """Trial numbers of the non-dominated COMPLETE trials (min cka_gap_to_retrain, max retain_acc), among
    the feasible ones when any is feasible. Rows without a gap (a format-1 study) are on no front."""
    gap = OBJECTIVES[0]
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get(gap) is not None and r["retain_acc"] is not None]
    if feasible_only and any(r["feasible"] for r in done):
        done = [r for r in done if r["feasible"]]
    front = []
    for r in done:
        dominated = any(o[gap] <= r[gap] and o["retain_acc"] >= r["retain_acc"] and
                        (o[gap] < r[gap] or o["retain_acc"] > r["retain_acc"]) for o in done)
        if not dominated:
            front.append(r["number"])
    return front


def summary_text(study, ref: dict | None = None) -> str:
    rows = trial_rows(study)
    attrs = study.user_attrs
    ref = ref or attrs.get("reference")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    lines = [f"study {study.study_name}: {len(rows)}/{attrs.get('n_trials')} trials ("
             + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items())) + ")"]
    fails = [r for r in rows if r["state"] == "FAIL"]
    for r in fails[:5]:
        lines.append(f"  failed trial {r['number']}: {r['error'] or 'no reason recorded'}")
    if len(fails) > 5:
        lines.append(f"  ... and {len(fails) - 5} more failed trials")
    tol = attrs.get("tolerance", TOLERANCE)
    if attrs.get("eclab_sweep") != FORMAT_VERSION:
        done = [r for r in rows if r["state"] == "COMPLETE"]
        lines.append(f"made by sweep format {attrs.get('eclab_sweep')}, which minimised EC's raw forget CKA (a CKA "
                     f"below retrain's is distortion, not forgetting): its {len(done)} completed trials as recorded, "
                     f"unranked; start a new --study to sweep the distance to retrain")
        return "\n".join(lines + _trial_table(done))
    front = sorted((r for r in rows if r["pareto"]), key=lambda r: -r["retain_acc"])
    if front:
        any_feasible = any(r["feasible"] for r in front)
        lines.append(f"Pareto front of the feasible trials (forget accuracy within {tol} of the retrained model's):"
                     if any_feasible else f"Pareto front of all trials (none is feasible: forget accuracy within "
                                          f"{tol} of the retrained model's):")
        lines += _trial_table(front)
    else:
        lines.append("no completed trial yet")
    if ref:
        lines.append(compare_text(rows, ref))
    return "\n".join(lines)


def _trial_table(rows: list[dict]) -> list[str]:
    """Lines of a trial table: distance to retrain's forget CKA, EC's forget CKA, retain and forget accuracy."""
    lines = [f"  {'trial':>5} {'to retrain':>10} {'forget CKA':>10} {'retain':>7} {'forget acc':>10}  settings"]
    for r in rows:
        lines.append(f"  {r['number']:>5} {_f(r.get('cka_gap_to_retrain')):>10} {_f(r['forget_cka']):>10} "
                     f"{_f(r['retain_acc']):>7} {_f(r['forget_acc']):>10}  {_params_text(r['params'])}  "
                     f"(run {r['run_id']})")
    return lines


def _f(v, p: int = 3) -> str:
    return f"{v:.{p}f}" if isinstance(v, (int, float)) else "-"


def compare_text(rows: list[dict], ref: dict) -> str:
    """'default EC: distance to retrain X (forget CKA a vs retrain b), retain Y; best at retain >= Y:
    distance to retrain Z ...': the trial closest to retrain among those keeping the default's retain."""
    x, y = ref["cka_gap_to_retrain"], ref["retain_acc"]
    head = (f"default EC: distance to retrain {x:.3f} (forget CKA {ref['forget_cka']:.3f} vs retrain "
            f"{ref['retrain_forget_cka']:.3f}), retain {y:.3f}"
            + ("" if ref.get("feasible", True) else f" (forget acc {ref['forget_acc']:.3f}: outside the tolerance)"))
    ok = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r["retain_acc"] >= y - 1e-9]
    if not ok:
        return head + f"; no feasible trial reached retain >= {y:.3f}"
    best = min(ok, key=lambda r: (r["cka_gap_to_retrain"], -r["retain_acc"]))
    z = best["cka_gap_to_retrain"]
    settings = _params_text(best["params"])
    verdict = (f"beats the default: {x - z:.3f} closer to retrain" if z < x - 1e-9 else "does not beat the default")
    return head + (f"; best at retain >= {y:.3f}: distance to retrain {z:.3f}, forget CKA {best['forget_cka']:.3f} "
                   f"({settings}; trial {best['number']}, {verdict})")


def discover_studies(extra_storage: str | None = None) -> list[dict]:
    """Sweep studies in $ECLAB_HOME/sweeps/*.journal and in $ECLAB_SWEEP_STORAGE (or extra_storage):
    [{"study", "storage", "label", "n_trials", "preset", "created"}], newest first. An unreadable storage is
    listed with "error" (and study None)."""
    out = []
    sources = [str(p) for p in sorted(sweeps_dir().glob("*.journal"))]
    url = extra_storage or os.environ.get("ECLAB_SWEEP_STORAGE")
    if url and url not in sources:
        sources.append(url if is_url(url) else str(Path(url).expanduser().resolve()))
    for src in sources:
        try:
            raw = open_storage(src)
            for s in raw.get_all_studies():
                if not s.user_attrs.get("eclab_sweep"):
                    continue
                where = "database" if is_url(src) else "journal"
                out.append({"study": s.study_name, "storage": src, "label": f"{s.study_name} ({where})",
                            "n_trials": s.user_attrs.get("n_trials"), "preset": s.user_attrs.get("preset"),
                            "created": s.user_attrs.get("created") or 0})
        except Exception as err:
            out.append({"study": None, "storage": src, "label": redact(src), "error": _one_line(err), "created": 0})
    return sorted(out, key=lambda s: -float(s["created"]))  # newest first


def study_table(study: str, storage: str) -> dict:
    """Everything the dashboard shows of one study: {"attrs", "rows"} (plain data)."""
    _quiet_optuna()
    import optuna
    st = optuna.load_study(study_name=study, storage=open_storage(storage))
    return {"attrs": dict(st.user_attrs), "rows": trial_rows(st)}


# -- CLI -------------------------------------------------------------------------------------------

def _spawn_worker(study: str, storage: str, threads: int | None, seed: int | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "engine", "sweep-worker", "--study", study]
    if threads:
        cmd += ["--threads", str(threads)]
    if seed is not None:
        cmd += ["--sampler-seed", str(seed)]
    env = dict(os.environ)
    env["ECLAB_SWEEP_STORAGE"] = storage  # a database password stays out of the process list
    env["PYTHONPATH"] = os.pathsep.join([str(store.PROJECT_ROOT)]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if threads:
        env.setdefault("OMP_NUM_THREADS", str(threads))
    return subprocess.Popen(cmd, env=env, cwd=str(store.PROJECT_ROOT))


@contextlib.contextmanager
def _stop_on_sigterm(worker: Worker) -> Iterator[None]:
    """SIGTERM: finish nothing new, cancel the running trial at its next step (it is marked failed)."""
    def handler(signum, frame):
        worker.stop.set()
    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def cmd_sweep(args) -> int:
    from .compare import scenario_overrides
    if args.trials < 0:
        raise ConfigError("trials", "must be >= 0")
    if args.workers < 1:
        raise ConfigError("workers", "must be >= 1")
    overrides = scenario_overrides(args)
    space = load_space(args.space)
    name = args.study or default_study_name(args.preset, overrides, space, args.sampler)
    try:
        st = create_study(name, args.storage, preset=args.preset, overrides=overrides, space=space,
                          sampler=args.sampler, n_trials=args.trials, seed=args.sampler_seed)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    storage = resolve_storage(args.storage, name)
    attrs = st.user_attrs
    print(f"[sweep] study {name} in {redact(storage)}: budget {attrs['n_trials']} trials, sampler {args.sampler}, "
          f"{args.workers} worker(s); parameters {', '.join(param_names(attrs['space'], attrs['points']))}",
          file=sys.stderr, flush=True)
    print(f"[sweep] more machines can join: python -m engine sweep-worker --study {name} --storage {redact(storage)}",
          file=sys.stderr, flush=True)
    threads = args.threads or 1
    _set_threads(threads)
    worker = Worker(name, storage, threads=threads, sampler_seed=args.sampler_seed)
    procs: list[subprocess.Popen] = []
    ref = None
    try:
        with _stop_on_sigterm(worker):
            warm_bases(attrs)
            worker.warmed = True
            if not args.no_reference:
                ref = reference(attrs)
                worker.study.set_user_attr("reference", ref)
            procs = [_spawn_worker(name, storage, threads, args.sampler_seed + 1 + i) for i in range(args.workers - 1)]
            worker.run()
            for p in procs:
                p.wait()
    except (KeyboardInterrupt, Cancelled):
        for p in procs:
            with contextlib.suppress(OSError):
                p.send_signal(signal.SIGTERM)
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(timeout=60)
        print("interrupted: the study keeps its finished trials; rerun the same command to continue", file=sys.stderr)
        return 130
    print(summary_text(worker.study, ref))
    return 0 if all(p.returncode == 0 for p in procs) else 1


def cmd_worker(args) -> int:
    try:
        worker = Worker(args.study, args.storage, threads=args.threads, sampler_seed=args.sampler_seed)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    worker.say(f"joined study {args.study} ({redact(worker.storage)}), budget {worker.attrs().get('n_trials')} trials")
    try:
        with _stop_on_sigterm(worker):
            worker.run()
    except (KeyboardInterrupt, Cancelled):
        worker.say(f"stopped: ran {worker.ran} trial(s); the interrupted one is marked failed")
        return 130
    if worker.stop.is_set():
        worker.say(f"stopped (SIGTERM) after {worker.ran} trial(s)")
        return 0
    worker.say(f"done: ran {worker.ran} trial(s); the study's budget is used")
    return 0


def cmd_show(args) -> int:
    try:
        st, storage, _ = load_study(args.study, args.storage)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for n in recover_stale(st):  # a trial whose worker died shows as failed, not as running forever
        print(f"trial {n}: marked failed (its worker stopped)", file=sys.stderr)
    if args.json:
        print(json.dumps({"study": args.study, "attrs": st.user_attrs, "trials": trial_rows(st)}, indent=1,
                         default=str))
    else:
        print(summary_text(st))
    return 0


def add_commands(sub) -> None:
    from .compare import add_scenario_flags
    p = sub.add_parser("sweep", help="multi-objective Optuna sweep of EC's layer weights and tau",
                       description="Search EC's per-layer weights and temperature (and, with --space, more) for "
                                   "a forget CKA close to the retrained model's (either side) and high retain "
                                   "accuracy, with forget accuracy within 0.05 of the retrained model's. Each "
                                   "trial is a normal run in $ECLAB_HOME/runs.")
    add_scenario_flags(p)
    p.add_argument("--trials", type=int, default=24, metavar="N", help="the study's trial budget (default 24)")
    p.add_argument("--study", help="study name (default: derived from the settings, so a rerun continues it)")
    p.add_argument("--storage", help="journal file path or database URL (default: $ECLAB_SWEEP_STORAGE, else "
                                     "$ECLAB_HOME/sweeps/<study>.journal)")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="tpe (default), nsga2 or grid")
    p.add_argument("--space", metavar="FILE",
                   help="JSON search space file (format: engine/sweep.py docstring, docs/SWEEPS.md)")
    p.add_argument("--workers", type=int, default=1, metavar="K",
                   help="worker processes on this machine (default 1; trials are small: use one per core)")
    p.add_argument("--threads", type=int, metavar="T", help="torch threads per worker (default 1)")
    p.add_argument("--sampler-seed", type=int, default=0, help="sampler seed (default 0)")
    p.add_argument("--no-reference", action="store_true", help="skip the default-settings reference run")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("sweep-worker", help="join a sweep study and run its trials until the budget is used")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", help="as for sweep (default: $ECLAB_SWEEP_STORAGE, else the study's journal file)")
    p.add_argument("--threads", type=int, default=1, metavar="T", help="torch threads (default 1)")
    p.add_argument("--sampler-seed", type=int, help="sampler seed (default: random)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("sweep-show", help="print a sweep study's Pareto front and failures")
    p.add_argument("--study", required=True)
    p.add_argument("--storage")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)


__all__ = ["validate_space", "load_space", "create_study", "load_study", "Worker", "recover_stale", "trial_rows",
           "pareto_front", "summary_text", "compare_text", "discover_studies", "study_table", "reference",
           "SpaceError", "SweepError", "resolve_storage", "journal_path", "params_to_overrides", "run_spec"]
