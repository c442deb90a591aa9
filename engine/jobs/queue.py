"""Submitting jobs (with the configuration cache), recording work that ran outside the queue, and
reading jobs back: get, list, cancel, events, and the results, partial results and arrays of a
job's run folder."""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from .. import attempts, cachecheck, store
from .. import results as results_schema
from ..config import ConfigError
from . import pg
from .db import (ACTIVE, _add_event, _check_job_id, _db, _dumps, _free_id, _loads, _row_to_job, _stamp, is_pg, lock_rows,
                 transaction)

JOB_KINDS = ("run", "compare", "base", "embed", "audit")  # mirrors engine.runner.JOB_KINDS (checked at submit)
# -- submitting -----------------------------------------------------------------------------------
def current_runner():
    """engine.runner, looked up at each call through the package attribute `engine.jobs._runner`,
    so a test that replaces that attribute replaces the runner of submit, record_external and the
    worker alike."""
    return sys.modules[__package__]._runner()


# the file that says a finished job has results worth reusing; base jobs are never reused (their
# work lives in $ECLAB_HOME/cache, which the runner reuses by itself and which may have been cleared)
RESULT_FILES = {"run": "results.json", "compare": "results.json", "audit": "results.json", "embed": "embed.json"}


def _results_folder(con: sqlite3.Connection, job_id: str, name: str = "results.json") -> Path | None:
    """The run folder that holds the job's `name` (its own, or that of the job it was cached from).
    With the job table on PostgreSQL, a job that ran on another machine has its files copied from
    the database into this machine's run folder of the job on first read."""
    seen = set()
    while job_id and job_id not in seen:
        seen.add(job_id)
        folder = store.home() / "runs" / job_id
        if (folder / name).is_file() or (is_pg(con) and _copy_from_db(con, job_id, name, folder)):
            return folder
        row = con.execute("SELECT cached_from FROM jobs WHERE id = ?", (job_id,)).fetchone()
        job_id = row["cached_from"] if row else None
    return None


def _copy_from_db(con, job_id: str, name: str, folder: Path) -> bool:
    data = pg.fetch_file(con, job_id, name)
    if data is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    store.atomic_write_bytes(folder / name, data)
    with contextlib.suppress(OSError), open(folder / "log.txt", "a") as log:
        log.write(f"[{_stamp()}] {name} copied from the job database (the job ran on another machine)\n")
    return True


def submit(kind: str, spec: dict, use_cache: bool = True) -> dict:
    """Validate and queue a job. Returns the job dict plus:
        cached=True        an identical job is done: a new job was recorded done at once, with
                           cached_from naming the job that ran it (its files are linked in);
                           only when its results pass the schema check (a bad copy is set aside)
                           and use_cache is true (False: run it again, e.g. `submit --no-cache`);
        duplicate_of=ID    an identical job is queued or running: that job is returned, nothing queued.
    Raises ConfigError (option named) or ValueError for invalid specs; nothing is queued then."""
    runner = current_runner()
    kinds = tuple(getattr(runner, "JOB_KINDS", JOB_KINDS))
    if kind not in kinds:
        raise ValueError(f"unknown job kind {kind!r}; choose one of {', '.join(kinds)}")
    if not isinstance(spec, dict):
        raise ValueError("a job spec is a dict, e.g. {'preset': 'digits', 'overrides': {...}}")
    norm, config_hash = runner.prepare(kind, spec)
    now = time.time()
    with _db() as con:
        if kind == "embed" and _results_folder(con, norm["job"]) is None:
            raise ConfigError("job", f"job {norm['job']} has no results to embed (is it a finished run or compare "
                                     f"job?)")
        with transaction(con):
            active = con.execute(
                "SELECT * FROM jobs WHERE kind = ? AND hash = ? AND state IN ('queued', 'running') "
                "ORDER BY created LIMIT 1", (kind, config_hash)).fetchone()
            if active is not None:
                job = _row_to_job(active)
                job["duplicate_of"] = job["id"]
                return job
            result_file = RESULT_FILES.get(kind) if use_cache else None
            source = _cache_source(con, kind, config_hash, result_file) if result_file else None
            job_id = _free_id(con, now)
            if source is None:
                con.execute("INSERT INTO jobs (id, kind, state, spec, hash, created) VALUES (?, ?, 'queued', ?, ?, ?)",
                            (job_id, kind, _dumps(norm), config_hash, now))
                _add_event(con, job_id, {"type": "job", "state": "queued", "message": "queued"}, now)
            else:
                src = con.execute("SELECT summary FROM jobs WHERE id = ?", (source,)).fetchone()
                con.execute(
                    "INSERT INTO jobs (id, kind, state, spec, hash, created, started, finished, progress, stage, "
                    "cached_from, summary) VALUES (?, ?, 'done', ?, ?, ?, ?, ?, 1.0, 'cached', ?, ?)",
                    (job_id, kind, _dumps(norm), config_hash, now, now, now, source, src["summary"] if src else None))
                _add_event(con, job_id, {"type": "job", "state": "done", "cached_from": source,
                                         "message": f"cache hit: same configuration as job {source}"}, now)
        if source is not None:
            _link_run_folder(source, job_id)
        job = _row_to_job(con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
    return job


def _cache_source(con: sqlite3.Connection, kind: str, config_hash: str, name: str) -> str | None:
    """The done job whose folder holds valid results for this hash (normally the one that ran), or None.
    Bad copies are set aside as they are met, each with a warning and an event on its job; the copies
    linked into cache hits are done jobs of the same hash, so they are checked (and dropped) in turn."""
    rows = con.execute("SELECT id FROM jobs WHERE kind = ? AND hash = ? AND state = 'done' "
                       "ORDER BY cached_from IS NOT NULL, created DESC",  # jobs that ran before cache hits
                       (kind, config_hash)).fetchall()
    for row in rows:
        while (folder := _results_folder(con, row["id"], name)) is not None:
            problem = cachecheck.folder_problem(folder, kind, name)
            if problem is None:
                return folder.name
            aside = cachecheck.set_aside(folder, name)
            msg = (f"cached results of job {folder.name} are damaged ({problem}); "
                   f"{'moved aside to ' + aside.name if aside else 'left in place'}, not served from the cache")
            print(f"warning: {msg}", file=sys.stderr)
            _add_event(con, folder.name, {"type": "log", "message": msg})
            if aside is None:
                break  # cannot move it: do not serve it, do not loop on it
    return None


def _link_run_folder(source: str, job_id: str) -> None:
    """Give a cache-hit job its own folder with the source's files (hard links; copies across devices).
    Best effort: load_results/load_arrays follow cached_from for anything missing."""
    try:
        _link_files(store.run_dir(source), store.run_dir(job_id, create=True),
                    f"cache hit: same configuration as job {source}")
    except OSError as err:
        print(f"warning: could not link the files of job {source} into the folder of {job_id}: {err}",
              file=sys.stderr)


def _link_files(src: Path, dst: Path, note: str) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(Path(src).iterdir()):
        if not f.is_file() or f.name.startswith(".") or f.name == "log.txt":
            continue
        target = dst / f.name
        try:
            os.link(f, target)
        except FileExistsError:
            pass
        except OSError:  # another file system, or links not supported: copy, atomically
            tmp = dst / f".{f.name}.copy.tmp"
            shutil.copyfile(f, tmp)
            os.replace(tmp, target)
    with open(dst / "log.txt", "a") as log:
        log.write(f"[{_stamp()}] {note}; files linked from {src}\n")


def done_job(kind: str, spec: dict) -> str | None:
    """The id of a done job of exactly this configuration whose results are valid, or None (a sweep
    reuses it instead of running the same settings again)."""
    _, config_hash = current_runner().prepare(kind, spec)
    with _db() as con:
        return _cache_source(con, kind, config_hash, RESULT_FILES[kind])


def record_external(kind: str, spec: dict, run_dir, summary: dict | None = None) -> dict:
    """Record work that ran outside the queue (e.g. a sweep trial run in-process) as a done job, so the
    dashboard lists it and later identical submissions are cache hits. A folder of the run store
    (runs/<name>) keeps its name as the job id; files of any other folder are linked into the new job's
    run folder. Raises ValueError when the folder holds no results."""
    runner = current_runner()
    norm, config_hash = runner.prepare(kind, spec)
    src = Path(run_dir)
    result_file = RESULT_FILES.get(kind)
    if result_file is None or not (src / result_file).is_file():
        raise ValueError(f"{src} holds no {result_file or 'results'}: nothing to record")
    now = time.time()
    in_store = src.resolve().parent == (store.home() / "runs").resolve()
    with _db() as con:
        with transaction(con):
            job_id = None
            if in_store:  # a folder of the run store (e.g. runs/swref-...): its name becomes the job id
                with contextlib.suppress(ValueError):
                    name = store.check_id(src.name)
                    if con.execute("SELECT 1 FROM jobs WHERE id = ?", (name,)).fetchone() is None:
                        job_id = name
            job_id = job_id or _free_id(con, now)
            con.execute(
                "INSERT INTO jobs (id, kind, state, spec, hash, created, started, finished, progress, stage, summary) "
                "VALUES (?, ?, 'done', ?, ?, ?, ?, ?, 1.0, 'external', ?)",
                (job_id, kind, _dumps(norm), config_hash, now, now, now, _dumps(summary or {})))
            _add_event(con, job_id, {"type": "job", "state": "done", "message": f"recorded from {src}"}, now)
        if src.resolve() != store.run_dir(job_id).resolve():
            _link_files(src, store.run_dir(job_id, create=True), f"recorded from {src}")
        if is_pg(con):
            with transaction(con):
                pg.store_files(con, job_id, store.run_dir(job_id))
        return _row_to_job(con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


# -- reading --------------------------------------------------------------------------------------
def get_job(job_id: str) -> dict | None:
    _check_job_id(job_id)
    with _db() as con:
        return _row_to_job(con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def list_jobs(limit: int = 200, states=None, kinds=None) -> list[dict]:
    """Jobs, newest first; optionally only some states / kinds."""
    where, params = [], []
    if states:
        states = [states] if isinstance(states, str) else list(states)
        where.append(f"state IN ({','.join('?' * len(states))})")
        params += states
    if kinds:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        where.append(f"kind IN ({','.join('?' * len(kinds))})")
        params += kinds
    sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY created DESC, rowid DESC"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    with _db() as con:
        return [_row_to_job(r) for r in con.execute(sql, params)]


def events_since(job_id: str, after_seq: int = 0, limit: int | None = None) -> list[dict]:
    """Events of a job with seq > after_seq, oldest first; each is the event dict plus "seq" and "time"."""
    _check_job_id(job_id)
    sql = "SELECT seq, time, event FROM events WHERE job_id = ? AND seq > ? ORDER BY seq"
    params: list = [job_id, int(after_seq)]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    out = []
    with _db() as con:
        for r in con.execute(sql, params):
            ev = _loads(r["event"]) or {}
            if not isinstance(ev, dict):
                ev = {"type": "log", "message": str(ev)}
            ev["seq"] = r["seq"]
            ev["time"] = r["time"]
            out.append(ev)
    return out


def cancel(job_id: str) -> bool:
    """Queued: cancelled at once. Running: sets the cancel flag (the worker stops within a few steps).
    Returns False when the job does not exist or has already finished."""
    _check_job_id(job_id)
    now = time.time()
    with _db() as con, transaction(con):
        row = con.execute("SELECT state, cancel_requested FROM jobs WHERE id = ?" + lock_rows(con),
                          (job_id,)).fetchone()
        if row is None or row["state"] not in ACTIVE:
            return False
        if row["state"] == "queued":
            con.execute("UPDATE jobs SET state = 'cancelled', finished = ?, cancel_requested = 1 WHERE id = ?",
                        (now, job_id))
            _add_event(con, job_id, {"type": "job", "state": "cancelled", "message": "cancelled before it started"},
                       now)
        elif not row["cancel_requested"]:
            con.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            _add_event(con, job_id, {"type": "log", "message": "cancel requested"}, now)
        return True


def _result_path(job_id: str, name: str) -> Path | None:
    """The file `name` of a job's run folder, or of the job it was cached from."""
    with _db() as con:
        folder = _results_folder(con, job_id, name)
    return None if folder is None else folder / name


def _check_file_name(name: str) -> str:
    if (not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith(".")
            or not all(c.isalnum() or c in "._-" for c in name)):
        raise ValueError(f"invalid file name {name!r}: a plain name in the run folder, e.g. arrays.npz")
    return name


def load_results(job_id: str) -> dict | None:
    """results.json of the job (or of the job it was cached from); None when there is none.
    A corrupt file, or one with the wrong types, raises engine.results.ResultsError (a
    store.CheckpointError) naming it."""
    _check_job_id(job_id)
    path = _result_path(job_id, "results.json")
    return None if path is None else results_schema.load(path)


def load_partial(job_id: str) -> dict | None:
    """partial.json of a running comparison (reference rows and the methods evaluated so far,
    "partial": true, "pending": [...]); None when there is none (not started, or finished)."""
    _check_job_id(job_id)
    runs = store.home() / "runs"
    # a running attempt writes into its own attempt folder (engine.attempts) until it is published
    folders = [*attempts.folders_of(runs, job_id)[::-1], runs / job_id]
    path = next((f / "partial.json" for f in folders if (f / "partial.json").is_file()), None)
    try:
        return store.load_json(path) if path is not None else None
    except store.CheckpointError:  # replaced or removed while read: the next poll sees the new one
        return None


def load_arrays(job_id: str, name: str = "arrays.npz") -> dict | None:
    """An .npz of the job's run folder (or of the job it was cached from) as a dict of arrays."""
    _check_job_id(job_id)
    _check_file_name(name)
    path = _result_path(job_id, name)
    return None if path is None else store.load_npz(path)


def list_results(kinds=("compare", "run", "audit"), limit: int = 500) -> list[tuple[dict, dict]]:
    """(job, results) of done jobs with results, newest first. A cache hit whose source job is in the
    list is left out (same numbers twice)."""
    jobs = list_jobs(limit=limit, states=["done"], kinds=list(kinds) if kinds else None)
    ids = {j["id"] for j in jobs}
    out = []
    for job in jobs:
        if job["cached_from"] and job["cached_from"] in ids:
            continue
        try:
            results = load_results(job["id"])
        except store.CheckpointError:
            continue
        if results is not None:
            out.append((job, results))
    return out
