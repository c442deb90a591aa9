"""Cached access to the run store through the engine's job API.

Results and arrays never change once a job is done, so they are cached with st.cache_data keyed by
(store home, job id, finished time): a rerun, a page switch or a second browser tab reads them from
memory. The job list is cached for a second and cleared whenever this session changes the table
(submit, cancel). Nothing here imports torch: engine.jobs imports the runner (and torch) only
inside submit().
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import streamlit as st

from . import facts, logic, verdict

ARRAY_KINDS_SKIPPED = (facts.FEAT,)  # pooled features: the engine's, not the dashboard's


def api():
    """engine.api, the job API (imported on first use; it never imports torch until submit())."""
    from engine import api as mod
    return mod


def home() -> str:
    return facts.home()


def jt(job: Mapping | None, field: str):
    """A job timestamp: 'created' | 'started' | 'finished' (accepts *_at spellings)."""
    if not job:
        return None
    v = job.get(f"{field}_at")
    return v if v is not None else job.get(field)


# -- jobs ---------------------------------------------------------------------------------------

@st.cache_data(ttl=1.0, max_entries=16, show_spinner=False)
def _jobs(home_dir: str, limit: int) -> list[dict]:
    return api().list_jobs(limit=limit)


def jobs(limit: int = 200) -> list[dict]:
    """Newest first (cached for one second)."""
    return _jobs(home(), limit)


def invalidate_jobs() -> None:
    _jobs.clear()


def get_job(job_id: str) -> dict | None:
    """Uncached: for live views."""
    try:
        return api().get_job(job_id)
    except ValueError:  # an invalid id from the URL
        return None


def events_since(job_id: str, after_seq: int = 0) -> list[dict]:
    return api().events_since(job_id, after_seq=after_seq)


def partial(job_id: str) -> dict | None:
    """Partial results of a running comparison (uncached: they grow as the job goes)."""
    try:
        return api().load_partial(job_id)
    except ValueError:
        return None


def submit(kind: str, spec: dict) -> dict:
    job = api().submit(kind, spec)
    invalidate_jobs()
    return job


def cancel(job_id: str) -> bool:
    ok = api().cancel(job_id)
    invalidate_jobs()
    return ok


def grids():
    """engine.grid, the scenario grids (list_grids, grid_table, submit_grid, cancel_grid, grid_csv; torch-free),
    imported on first use."""
    from engine import grid as mod
    return mod


def worker_alive() -> bool:
    try:
        return bool(api().worker_alive())
    except Exception:  # a locked or missing table must not break the sidebar
        return False


def autostart_enabled() -> bool:
    return os.environ.get("ECLAB_NO_AUTOSTART", "").strip().lower() not in ("1", "true", "yes")


def sweep_command(preset: str, trials: int) -> list[str]:
    """The command the Sweeps page's button runs (also shown to copy into a terminal)."""
    if int(trials) < 1:
        raise ValueError(f"trials must be at least 1 (got {trials})")
    return ["python", "-m", "engine", "sweep", "--preset", str(preset), "--trials", str(int(trials))]


def start_sweep(preset: str, trials: int) -> str:
    """Start a small sweep as a detached background process (like the worker): its trials are
    ordinary runs in the store. Returns the path of its log."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    log = Path(home()) / "sweeps" / f"dashboard-{int(__import__('time').time())}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable] + sweep_command(preset, trials)[1:]
    env = dict(os.environ, ECLAB_HOME=home(), PYTHONPATH=str(root))
    with open(log, "ab") as fh:
        subprocess.Popen(cmd, cwd=str(root), env=env, stdout=fh, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    return str(log)


def ensure_worker() -> bool:
    """Start a background worker unless ECLAB_NO_AUTOSTART=1 (tests, or a worker run by hand)."""
    if not autostart_enabled():
        return False
    return bool(api().ensure_worker())


# -- results --------------------------------------------------------------------------------------

@st.cache_data(max_entries=64, show_spinner=False)
def _results(home_dir: str, job_id: str, finished) -> dict | None:
    return api().load_results(job_id)


def results(job: Mapping) -> dict | None:
    """results.json of a done job (cached); None when it has none. Corrupt files and files with
    the wrong types raise engine.store.CheckpointError with a readable message."""
    return _results(home(), job["id"], jt(job, "finished"))


@st.cache_data(max_entries=32, show_spinner=False)
def _arrays(home_dir: str, job_id: str, name: str, token) -> dict | None:
    arrs = api().load_arrays(job_id, name)
    if arrs is None:
        return None
    return {k: v for k, v in arrs.items() if getattr(facts.parse_key(k), "kind", None) not in ARRAY_KINDS_SKIPPED}


def arrays(job: Mapping, name: str = "arrays.npz", token=None) -> dict | None:
    """An .npz of the job's run folder (cached by job and finished time, or `token`); feature
    matrices are left out. Missing file -> None (never cached, so a later file is seen)."""
    key_token = token if token is not None else jt(job, "finished")
    out = _arrays(home(), job["id"], name, key_token)
    if out is None:
        _arrays.clear(home(), job["id"], name, key_token)
    return out


@st.cache_data(show_spinner=False)
def teach_samples(per_class: int = 6, seed: int = 0):
    """(images (classes, per_class, size, size), class names) drawn by the teach generator (numpy only)."""
    return api().teach_samples(per_class, seed)


def first_start_jobs() -> list[str]:
    """Ids of the default comparisons of the first start, in queue order (teach first)."""
    return api().first_start_jobs()


def queue_defaults() -> list[str]:
    ids = api().queue_defaults()
    invalidate_jobs()
    return ids


def done_result_jobs(all_jobs: list[dict]) -> list[dict]:
    """Done run/compare/audit jobs, newest first; a cache hit whose source is listed is left out."""
    done = [j for j in all_jobs if j.get("state") == "done" and j.get("kind") in logic.RESULT_KINDS]
    ids = {j["id"] for j in done}
    return [j for j in done if not (j.get("cached_from") and j["cached_from"] in ids)]


def all_results(all_jobs: list[dict]) -> list[tuple[dict, dict]]:
    """(job, results) of every done run/compare job, newest first (each results file cached)."""
    out = []
    for job in done_result_jobs(all_jobs):
        try:
            res = results(job)
        except Exception:  # a corrupt file is reported where that job is opened
            continue
        if res:
            out.append((job, res))
    return out


@st.cache_data(max_entries=8, show_spinner=False)
def _all_rows(home_dir: str, keys: tuple) -> tuple[list[dict], list[tuple[str, str]]]:
    items, damaged = [], []
    for job_id, kind, finished in keys:
        try:
            res = _results(home_dir, job_id, finished)
        except Exception as err:  # one damaged file must not hide every other run
            damaged.append((job_id, str(err)))
            continue
        if res:
            items.append(({"id": job_id, "kind": kind, "finished_at": finished}, res))
    return logic.all_run_rows(items, rows_of=verdict.compare_rows), damaged


def all_run_rows(all_jobs: list[dict]) -> tuple[list[dict], list[tuple[str, str]]]:
    """(rows of every readable done run/compare job, [(job id, error)] of the damaged ones)."""
    keys = tuple((j["id"], j.get("kind"), jt(j, "finished")) for j in done_result_jobs(all_jobs))
    return _all_rows(home(), keys)


def embed_jobs(all_jobs: list[dict], job_id: str) -> dict[str, dict]:
    """The newest embed job per layer for one results job: {layer: job}."""
    out: dict[str, dict] = {}
    for j in all_jobs:  # newest first
        if j.get("kind") != "embed":
            continue
        spec = j.get("spec") or {}
        if spec.get("job") == job_id and spec.get("layer") not in out:
            out[spec.get("layer")] = j
    return out
