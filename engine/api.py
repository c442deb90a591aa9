"""What the dashboard (and any other front end) calls: submit jobs, read their state, events and
results, cancel them, make sure a worker runs. No Streamlit imports; every value returned is a
plain JSON-able dict (or numpy arrays from load_arrays).

Job ids passed in are validated with engine.store.check_id (ValueError on a bad id).
A job dict holds: id, kind, state (queued|running|done|failed|cancelled), spec (parsed; the full
config under spec["config"]), hash, created/started/finished (Unix seconds), progress (0..1),
stage, error (one readable line), cached_from, cached (bool), worker, heartbeat, attempts,
cancel_requested (bool), summary (dict from the runner), run_dir (path).
"""
from __future__ import annotations

from . import results, store
from .audit import MAX_UPLOAD_MB, discard_uploads, save_upload, submit_isolated
from .catalog import (CONTRASTIVE_KNOBS, EC_SECTION_KNOBS, METHODS, base_method, class_names, cpu_presets,
                      display_name, method_knobs, preset_notes, reads_ec)
from .config import (DATASET_CLASSES, METHOD_NAMES, PRESETS, SUPERVISION_POINTS, ConfigError, deep_merge,
                     make_config, validate)
from .dbguard import DatabaseUnavailable
from .jobs import (
    cancel,
    done_job,
    ensure_worker,
    events_since,
    get_job,
    list_jobs,
    list_results,
    load_arrays,
    load_partial,
    load_results,
    record_external,
    submit,
    worker_alive,
    workers,
)
from .jobs import headline as headline_metrics
from .sweep.space import params_to_overrides, swept_run  # a sweep trial's settings as run overrides (no Optuna)

# The comparisons a fresh store starts with, queued in this order (the worker takes the oldest first):
# `teach`, where superficial forgetting is plain to see, then `digits`, real handwriting.
DEFAULT_PRESETS = ("teach", "digits")
_FIRST_START = "first_start.json"


def queue_defaults() -> list[str]:
    """Queue the default comparisons and remember their ids, so the pages show them in this order
    until the user runs a comparison of their own (see first_start_jobs)."""
    ids = [submit("compare", {"preset": p, "overrides": {}})["id"] for p in DEFAULT_PRESETS]
    store.atomic_write_json(store.home() / _FIRST_START, {"jobs": ids})
    return ids


def first_start_jobs() -> list[str]:
    """Ids of the default comparisons queued on the first start, in queue order ([] if none)."""
    try:
        ids = store.load_json(store.home() / _FIRST_START).get("jobs")
    except Exception:  # absent or damaged: no preference, the newest comparison is shown
        return []
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []


def home() -> str:
    """The run store's folder ($ECLAB_HOME)."""
    return str(store.home())


# The sweep readers import Optuna: only on first use, so a page that shows no sweep never loads it.

def discover_studies(extra_storage: str | None = None) -> list[dict]:
    from . import sweep
    return sweep.discover_studies(extra_storage)


def study_table(study: str, storage: str) -> dict:
    from . import sweep
    return sweep.study_table(study, storage)


def sweep_format_version():
    """engine.sweep.FORMAT_VERSION: the study format the sweep readers rank."""
    from . import sweep
    return sweep.FORMAT_VERSION


def teach_samples(per_class: int = 6, seed: int = 0):
    """Example images of the teach data set, drawn by its own generator (engine/data/synthetic.py, numpy
    only, deterministic in `seed`): (array (classes, per_class, size, size) in [0, 1], class names)."""
    import numpy as np
    from .data.synthetic import TeachSpec, class_names, render
    spec = TeachSpec()
    rng = np.random.default_rng([seed, 0x5A3])
    images = [[render(spec, c, rng) for _ in range(per_class)] for c in range(spec.num_classes)]
    return np.asarray(images, dtype=np.float32), class_names(spec)


__all__ = ["teach_samples", "queue_defaults", "first_start_jobs", "DEFAULT_PRESETS", "submit", "get_job", "list_jobs", "events_since", "cancel", "load_results", "load_arrays", "load_partial",
           "list_results", "record_external", "done_job", "worker_alive", "ensure_worker", "workers", "headline_metrics",
           "save_upload", "discard_uploads", "submit_isolated", "MAX_UPLOAD_MB", "home", "discover_studies", "study_table", "sweep_format_version",
           "params_to_overrides", "swept_run",
           # the facts the pages read (engine/catalog.py, engine/config.py, engine/results.py)
           "results", "METHODS", "CONTRASTIVE_KNOBS", "EC_SECTION_KNOBS", "base_method", "class_names", "display_name",
           "method_knobs", "cpu_presets", "preset_notes",
           "reads_ec", "DATASET_CLASSES", "METHOD_NAMES", "PRESETS", "SUPERVISION_POINTS", "ConfigError", "deep_merge",
           "make_config", "validate", "DatabaseUnavailable"]
