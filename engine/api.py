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

from .audit import MAX_UPLOAD_MB, save_upload
from .jobs import (
    cancel,
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

__all__ = ["submit", "get_job", "list_jobs", "events_since", "cancel", "load_results", "load_arrays", "load_partial",
           "list_results", "record_external", "worker_alive", "ensure_worker", "workers", "headline_metrics",
           "save_upload", "MAX_UPLOAD_MB"]
