"""Creating, continuing and opening a sweep study: its objectives, format version and sampler."""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from ..catalog import reads_ec
from ..config import SUPERVISION_POINTS, ConfigError, deep_merge, make_config, stable_hash
from .space import SpaceError, grid_size, grid_space, param_names, params_to_overrides, swept_run, validate_space
from .storage import SweepError, _quiet_optuna, check_study_name, is_url, open_storage, redact, resolve_storage

# 1: the first objective was EC's raw forget CKA (rewarded distortion); 2: |mean inner forget CKA - retrain's|
# (a layer that kept the class cancelled one distorted past retrain); 3: the worst inner layer's gap
FORMAT_VERSION = 3
SAMPLERS = ("tpe", "nsga2", "grid")
# --objective: what the first objective minimises, each never smaller than some inner layer's |gap| to
# retrain. distance: the largest |gap| of the forget CKA to the original over the inner points (THE
# distance to retrain, engine/results.py); worst_z: the largest |gap| in units of the point's
# tolerance (two retrainings' spread; >= distance, as a tolerance is at most 1); probe_distance: the
# largest |gap| of linear-probe recovery of the forget class over the inner points.
OBJECTIVE_CHOICES = {"distance": "distance", "tolerance": "worst_z", "probe": "probe_distance"}
OBJECTIVES = ["distance", "retain_acc"]  # the default
DIRECTIONS = ["minimize", "maximize"]
TOLERANCE = 0.05
# Evaluation a sweep skips unless --set asks for it: neither changes the objectives, and together they
# are about half of a digits trial (UMAP embedding of every run; CKA after every epoch).
SWEEP_EVAL_DEFAULTS = {"eval": {"umap": False, "epoch_cka": False}}
# Settings every trial and the reference run get: calibrate=auto could swap in a cached lr/epochs.
SWEEP_FIXED = {"calibrate": "off"}


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


def objectives_for(objective: str) -> list[str]:
    """The study's objective names for an --objective choice (see OBJECTIVE_CHOICES)."""
    if objective not in OBJECTIVE_CHOICES:
        raise ConfigError("objective", f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVE_CHOICES)}")
    return [OBJECTIVE_CHOICES[objective], "retain_acc"]


def default_study_name(preset: str, overrides: dict, space: dict, sampler: str, objective: str = "distance") -> str:
    # the format version is in the hash: after an upgrade the same command starts a new study instead
    # of hitting an old one that check_version refuses
    key = {"p": preset, "o": overrides, "s": space, "x": sampler, "v": FORMAT_VERSION}
    if objective != "distance":
        key["obj"] = objective
    return f"{preset}-ec-{stable_hash(key, 8)}"


def check_version(attrs: dict, study: str, storage: str) -> None:
    """A study of another format ranks its trials by another objective: never continue it silently."""
    version = attrs.get("eclab_sweep")
    if version != FORMAT_VERSION:
        raise SweepError(f"study {study!r} in {redact(storage)} was made by sweep format {version} (objectives "
                         f"{', '.join(attrs.get('objectives') or ['?'])}), which ranks trials by a mean over layers "
                         f"or by raw CKA; this version (format {FORMAT_VERSION}) minimises the worst inner layer's "
                         f"gap to retrain and cannot continue it: start a new --study name (`sweep-show --study "
                         f"{study}` still prints the old one as recorded)")


def create_study(study: str, storage: str | None = None, *, preset: str = "digits", overrides: dict | None = None,
                 space: dict | None = None, sampler: str = "tpe", n_trials: int = 24, seed: int = 0,
                 objective: str = "distance"):
    """Create the study (or continue an existing one with the same settings: its budget becomes n_trials).
    Validates the scenario and the space before anything is written. Returns the optuna Study."""
    check_study_name(study)
    if sampler not in SAMPLERS:
        raise ConfigError("sampler", f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not isinstance(n_trials, int) or n_trials < 0:
        raise ConfigError("trials", f"must be a whole number >= 0 (got {n_trials!r})")
    objectives = objectives_for(objective)
    overrides = deep_merge(copy.deepcopy(SWEEP_EVAL_DEFAULTS), copy.deepcopy(overrides or {}))
    if overrides.get("calibrate", "off") != "off":
        raise ConfigError("calibrate", f"a sweep's trials run at the settings it picks: calibrate must be off "
                                       f"(got {overrides['calibrate']!r})")
    overrides = deep_merge(overrides, SWEEP_FIXED)
    space = validate_space(space)
    run = swept_run(overrides)
    cfg = make_config(preset, deep_merge(overrides, params_to_overrides({}, [], run)))  # the scenario is valid
    cfg.check_single_run()
    if not reads_ec(run[0], cfg.plugged()):
        raise ConfigError("method", f"a sweep tunes EC's settings: sweep method=ec (the default), or a method that "
                                    f"takes the plug-in with plugin=ec (got method={run[0]}, plugin={run[1]})")
    if "beta" in space and not cfg.plugged():
        raise SpaceError("space.beta", "beta weighs the EC plug-in's loss: sweep it with plugin=ec on another method")
    points = list(SUPERVISION_POINTS[cfg.model.arch])
    # the space's corners must make valid configs too (e.g. epochs within limits)
    for corner in ("low", "high"):
        params = {n: space["weights" if n.startswith("w_") else n][corner] for n in param_names(space, points)}
        if all(params.get(f"w_{p}", 1.0) == 0 for p in points):
            params[f"w_{points[0]}"] = 1.0  # all-zero weights are a per-trial failure, not a space error
        make_config(preset, deep_merge(overrides, params_to_overrides(params, points, run)))
    if sampler == "grid":
        n_trials = min(n_trials, grid_size(space, points))
    storage = resolve_storage(storage, study)
    optuna = _quiet_optuna()
    raw = open_storage(storage)
    settings = {"preset": preset, "overrides": overrides, "space": space, "sampler": sampler, "objectives": objectives}
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
    st.set_metric_names(objectives)
    opts = {"n_startup_trials": max(3, min(10, n_trials // 3))} if sampler == "tpe" else (
        {"population_size": max(4, min(50, n_trials // 3))} if sampler == "nsga2" else {})
    attrs = {**settings, "sampler_options": opts, "seed": seed, "tolerance": TOLERANCE, "points": points,
             "created": time.time(), "n_trials": n_trials,
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
