"""The background job system: a SQLite job table, the worker loop, heartbeats, cancellation.

    $ECLAB_HOME/jobs.sqlite   jobs, events, workers (WAL mode; every write in BEGIN IMMEDIATE)
    $ECLAB_HOME/runs/<job>/   the run folder engine.runner.execute fills, plus log.txt
    $ECLAB_HOME/worker.log    stdout/stderr of workers started by ensure_worker()

The dashboard and the CLI only insert jobs, set cancel flags and read; the work happens in
`python -m engine worker`, a separate long-lived process. Several workers may share one home:
a job is claimed inside BEGIN IMMEDIATE with a state check, so no two ever run the same job.

Job states: queued -> running -> done | failed | cancelled. A running job whose worker stops
heartbeating (killed, out of memory, machine asleep) is found by any other worker after
ECLAB_STALE_S seconds (default 15; at once when the worker's process is known dead on this host)
and requeued once (its partial run folder is cleared before the rerun), then failed with the reason.

`attempts` counts claims: 1 while a job runs for the first time. SIGTERM/SIGINT requeue the current
job without counting the attempt. Connections are opened per call; none is shared across threads.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

from . import attempts, cachecheck, dbguard, store
from . import results as results_schema
from .audit import add_model_flags
from .audit import spec_from_args as audit_spec
from .compare import add_set_flag, scenario_overrides
from .config import ConfigError
from .events import Cancelled, JobContext

JOB_KINDS = ("run", "compare", "base", "embed", "audit")  # mirrors engine.runner.JOB_KINDS (checked at submit)
STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 2  # a job is run at most twice: the first run plus one requeue after a crash
HEARTBEAT_S = 1.0
THROTTLE_S = 0.25  # minimum gap between progress writes of throttled (step) events
CANCEL_CACHE_S = 0.2
STOP_GRACE_S = 5.0  # after SIGTERM, a job that does not reach ctx.check() is interrupted

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    spec TEXT NOT NULL,
    hash TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress REAL NOT NULL DEFAULT 0,
    stage TEXT,
    error TEXT,
    cached_from TEXT,
    worker TEXT,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    summary TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
CREATE INDEX IF NOT EXISTS jobs_hash ON jobs (kind, hash, state);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL,
    current_job TEXT,
    warmed REAL
);
"""
_JOB_COLUMNS = ("id", "kind", "state", "spec", "hash", "created", "started", "finished", "progress", "stage",
                "error", "cached_from", "worker", "heartbeat", "attempts", "cancel_requested", "summary")


# -- settings -------------------------------------------------------------------------------------
def stale_seconds() -> float:
    """Heartbeat age after which a running job's worker is taken for dead (ECLAB_STALE_S, default 15)."""
    try:
        value = float(os.environ.get("ECLAB_STALE_S", "15"))
    except ValueError:
        value = 15.0
    return max(value, 2 * HEARTBEAT_S)


def db_path() -> Path:
    return store.home() / "jobs.sqlite"


# -- database -------------------------------------------------------------------------------------
_initialised: set[tuple[str, int]] = set()  # (path, inode) of job tables known to have the schema
_init_lock = threading.Lock()


def connect() -> sqlite3.Connection:
    """A new connection (autocommit; write with `transaction()`). Use it in one thread only."""
    path = db_path()
    try:
        key = (str(path), path.stat().st_ino)
    except FileNotFoundError:
        key = None
    with dbguard.guard(path):  # a corrupt, full or unwritable file: one line naming it and the fix
        con = sqlite3.connect(str(path), timeout=30.0, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout = 30000")
            con.execute("PRAGMA synchronous = NORMAL")
            if key is None or key not in _initialised:
                with _init_lock:
                    con.execute("PRAGMA journal_mode = WAL")
                    with transaction(con):
                        for stmt in _SCHEMA.split(";"):
                            if stmt.strip():
                                con.execute(stmt)
                    _initialised.add((str(path), path.stat().st_ino))
        except BaseException:
            con.close()
            raise
    return con


@contextlib.contextmanager
def _db() -> Iterator[sqlite3.Connection]:
    con = connect()
    try:
        with dbguard.guard(db_path()):
            yield con
    finally:
        con.close()


@contextlib.contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception (KeyboardInterrupt included)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _add_event(con: sqlite3.Connection, job_id: str, event: dict, now: float | None = None) -> int:
    """Append an event (inside the caller's transaction); returns its seq."""
    row = con.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?", (job_id,)).fetchone()
    seq = int(row[0])
    con.execute("INSERT INTO events (job_id, seq, time, event) VALUES (?, ?, ?, ?)",
                (job_id, seq, time.time() if now is None else now, _dumps(event)))
    return seq


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_jsonable, allow_nan=True)


def _jsonable(o):
    try:
        return store._jsonable(o)
    except TypeError:
        if hasattr(o, "item"):  # torch scalars
            return o.item()
        return str(o)


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _row_to_job(row: sqlite3.Row | None) -> dict | None:
    if row is None:
        return None
    job = {k: row[k] for k in _JOB_COLUMNS}
    job["spec"] = _loads(job["spec"])
    job["summary"] = _loads(job["summary"])
    job["cancel_requested"] = bool(job["cancel_requested"])
    job["cached"] = job["cached_from"] is not None
    job["run_dir"] = str(store.home() / "runs" / job["id"])
    return job


# -- ids ------------------------------------------------------------------------------------------
def new_job_id(now: float | None = None) -> str:
    stamp = _dt.datetime.fromtimestamp(time.time() if now is None else now).strftime("%Y%m%d-%H%M")
    return store.check_id(f"j-{stamp}-{secrets.token_hex(3)}")


def _check_job_id(job_id: str) -> str:
    store.check_id(job_id)
    return job_id


# -- submitting -----------------------------------------------------------------------------------
def _runner():
    from . import runner  # imported lazily: it pulls in torch
    return runner


# the file that says a finished job has results worth reusing; base jobs are never reused (their
# work lives in $ECLAB_HOME/cache, which the runner reuses by itself and which may have been cleared)
RESULT_FILES = {"run": "results.json", "compare": "results.json", "audit": "results.json", "embed": "embed.json"}


def _results_folder(con: sqlite3.Connection, job_id: str, name: str = "results.json") -> Path | None:
    """The run folder that holds the job's `name` (its own, or that of the job it was cached from)."""
    seen = set()
    while job_id and job_id not in seen:
        seen.add(job_id)
        folder = store.home() / "runs" / job_id
        if (folder / name).is_file():
            return folder
        row = con.execute("SELECT cached_from FROM jobs WHERE id = ?", (job_id,)).fetchone()
        job_id = row["cached_from"] if row else None
    return None


def submit(kind: str, spec: dict, use_cache: bool = True) -> dict:
    """Validate and queue a job. Returns the job dict plus:
        cached=True        an identical job is done: a new job was recorded done at once, with
                           cached_from naming the job that ran it (its files are linked in);
                           only when its results pass the schema check (a bad copy is set aside)
                           and use_cache is true (False: run it again, e.g. `submit --no-cache`);
        duplicate_of=ID    an identical job is queued or running: that job is returned, nothing queued.
    Raises ConfigError (option named) or ValueError for invalid specs; nothing is queued then."""
    runner = _runner()
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


def record_external(kind: str, spec: dict, run_dir, summary: dict | None = None) -> dict:
    """Record work that ran outside the queue (e.g. a sweep trial run in-process) as a done job, so the
    dashboard lists it and later identical submissions are cache hits. A folder of the run store
    (runs/<name>) keeps its name as the job id; files of any other folder are linked into the new job's
    run folder. Raises ValueError when the folder holds no results."""
    runner = _runner()
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
        return _row_to_job(con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())


def _free_id(con: sqlite3.Connection, now: float) -> str:
    for _ in range(50):
        job_id = new_job_id(now)
        if con.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
            return job_id
    raise RuntimeError("could not find a free job id")


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
        row = con.execute("SELECT state, cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
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
    seen = set()
    with _db() as con:
        while job_id and job_id not in seen:
            seen.add(job_id)
            path = store.home() / "runs" / job_id / name
            if path.is_file():
                return path
            row = con.execute("SELECT cached_from FROM jobs WHERE id = ?", (job_id,)).fetchone()
            job_id = row["cached_from"] if row else None
    return None


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


def workers() -> list[dict]:
    """Registered workers, newest first: id, pid, host, started, heartbeat, current_job, warmed (time the
    UMAP warm-up ended, or None) and alive (heartbeat within the stale limit and, on this host, the
    process still running)."""
    now = time.time()
    limit = stale_seconds()
    host = socket.gethostname()
    with _db() as con:
        rows = con.execute("SELECT * FROM workers ORDER BY started DESC").fetchall()
    out = []
    for r in rows:
        w = {k: r[k] for k in r.keys()}
        w["alive"] = (now - (w["heartbeat"] or 0) < limit
                      and (w["host"] != host or _pid_alive(int(w["pid"]))))  # a killed one is dead at once
        out.append(w)
    return out


def worker_alive() -> bool:
    return any(w["alive"] for w in workers())


def ensure_worker() -> bool:
    """Start a detached `python -m engine worker` when no worker heartbeats. True when one was started.
    A lock file keeps two callers (two dashboard sessions) from starting two at once."""
    h = store.home()
    lock_path = h / "worker.spawn.lock"
    with open(lock_path, "a+") as lock:
        with contextlib.suppress(ImportError, OSError):
            import fcntl
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if worker_alive():
            return False
        marker = h / "worker.spawned"
        with contextlib.suppress(OSError, ValueError):
            pid, when = marker.read_text().split()
            if time.time() - float(when) < 30 and _pid_alive(int(pid)):
                return False  # started a moment ago and still importing torch
        env = dict(os.environ)
        env["ECLAB_HOME"] = str(h)
        root = store.PROJECT_ROOT
        env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        with open(h / "worker.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "engine", "worker"], cwd=str(root), env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        store.atomic_write_bytes(marker, f"{proc.pid} {time.time()}".encode())
        return True


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    # a zombie (exited, not yet reaped) still answers kill(0): look at /proc where there is one
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


# -- crash recovery -------------------------------------------------------------------------------
def recover_stale(by: str | None = None, stale_s: float | None = None) -> list[tuple[str, str]]:
    """Requeue (once) or fail running jobs whose worker stopped heartbeating. Returns [(job id, new state)].
    A worker whose process is known to be gone (same host, pid not running) counts as stopped at once."""
    stale_s = stale_seconds() if stale_s is None else stale_s
    now = time.time()
    host = socket.gethostname()
    changed = []
    with _db() as con:  # read-only look first: the usual answer is "nothing to do"
        if not _recovery_needed(con, now, stale_s, host, by):
            return changed
    with _db() as con, transaction(con):
        wrows = {r["id"]: r for r in con.execute("SELECT * FROM workers")}
        for job in con.execute("SELECT id, worker, heartbeat, started, attempts, cancel_requested FROM jobs "
                               "WHERE state = 'running'").fetchall():
            last = job["heartbeat"] or job["started"] or 0
            age = now - last
            w = wrows.get(job["worker"])
            dead_here = w is not None and w["host"] == host and not _pid_alive(int(w["pid"]))
            if age < stale_s and not dead_here:
                continue
            wid = job["worker"] or "?"
            if job["cancel_requested"]:  # the user wanted it stopped anyway
                con.execute("UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ?", (now, job["id"]))
                _add_event(con, job["id"], {"type": "job", "state": "cancelled", "by": by,
                                            "message": f"cancelled (its worker {wid} stopped)"}, now)
                changed.append((job["id"], "cancelled"))
            elif job["attempts"] < MAX_ATTEMPTS:
                con.execute("UPDATE jobs SET state = 'queued', worker = NULL, heartbeat = NULL, started = NULL, "
                            "progress = 0, stage = NULL WHERE id = ?", (job["id"],))
                _add_event(con, job["id"], {"type": "job", "state": "requeued", "by": by,
                                            "message": f"requeued after worker {wid} stopped heartbeating "
                                                       f"(no heartbeat for {age:.0f} s)"}, now)
                changed.append((job["id"], "queued"))
            else:
                reason = f"worker {wid} stopped (no heartbeat for {age:.0f} s): killed or out of memory"
                con.execute("UPDATE jobs SET state = 'failed', finished = ?, error = ? WHERE id = ?",
                            (now, reason, job["id"]))
                _add_event(con, job["id"], {"type": "job", "state": "failed", "error": reason, "by": by}, now)
                changed.append((job["id"], "failed"))
        # forget workers that are gone: dead here, or silent for an hour
        for wid, w in wrows.items():
            if wid == by:
                continue
            age = now - (w["heartbeat"] or 0)
            if age > 3600 or (w["host"] == host and not _pid_alive(int(w["pid"]))):
                con.execute("DELETE FROM workers WHERE id = ?", (wid,))
    return changed


def _recovery_needed(con: sqlite3.Connection, now: float, stale_s: float, host: str, by: str | None) -> bool:
    wrows = {r["id"]: r for r in con.execute("SELECT * FROM workers")}
    for job in con.execute("SELECT worker, heartbeat, started FROM jobs WHERE state = 'running'"):
        w = wrows.get(job["worker"])
        if now - (job["heartbeat"] or job["started"] or 0) >= stale_s:
            return True
        if w is not None and w["host"] == host and not _pid_alive(int(w["pid"])):
            return True
    for wid, w in wrows.items():
        age = now - (w["heartbeat"] or 0)
        if wid != by and (age > 3600 or (w["host"] == host and not _pid_alive(int(w["pid"])))):
            return True
    return False


def _clear_run_folder(job_id: str) -> None:
    """Move a partial run folder aside (.trash-<job>-<rand>) and delete it; nothing else is touched."""
    attempts.remove(store.run_dir(job_id))


def _sweep_trash() -> None:
    """Delete .trash- folders and the attempt folders of killed workers (no running attempt owns them)."""
    runs = store.home() / "runs"
    if runs.is_dir():
        for p in runs.glob(".trash-*"):
            shutil.rmtree(p, ignore_errors=True)
        attempts.sweep(runs, _running_attempts)


def _running_attempts() -> set[tuple[str, int]]:
    with _db() as con:
        return {(r["id"], r["attempts"]) for r in con.execute("SELECT id, attempts FROM jobs WHERE state = 'running'")}


def _drop_folder(folder: Path | None) -> None:
    if folder is not None:
        with contextlib.suppress(OSError):
            attempts.remove(folder)


# -- the worker -----------------------------------------------------------------------------------
class _Stop(BaseException):
    """Raised in the worker's main thread when a stopping job ignores the cancel flag too long."""


def _stamp(t: float | None = None) -> str:
    return _dt.datetime.fromtimestamp(time.time() if t is None else t).strftime("%Y-%m-%d %H:%M:%S")


def _one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    msg = f"{type(exc).__name__}: {text}"
    return msg if len(msg) <= limit else msg[:limit - 3] + "..."


class Progress:
    """Overall job progress (0..1, never going back) from the runner's stage-local fractions.

    Stages run in this order; each gets a share of the bar. Cached base models skip theirs at once.
    Epoch and step events belong to the stage announced last; in a compare job's "method" stage the
    stage event's fraction says which method (i / n) and epochs advance within it."""

    SPANS = {"original": (0.0, 0.3), "retrain": (0.3, 0.5), "aux": (0.5, 0.55), "refs": (0.55, 0.6),
             "method": (0.6, 0.9), "eval": (0.9, 0.96), "embed": (0.96, 1.0)}

    def __init__(self, n_methods: int = 1):
        self.n = max(1, int(n_methods))
        self.stage: str | None = None
        self.method_index = 0
        self.value = 0.0

    def update(self, event: dict) -> float | None:
        frac = event.get("fraction")
        try:
            frac = None if frac is None else min(1.0, max(0.0, float(frac)))
        except (TypeError, ValueError):
            frac = None
        if frac is not None and math.isnan(frac):
            frac = None
        kind = event.get("type")
        if kind == "stage":
            self.stage = event.get("stage")
            if self.stage == "eval" and event.get("name") in ("original", "retrain"):
                self.stage = "refs"  # the reference rows are evaluated before the methods, not after
            if self.stage == "method" and frac is not None:
                self.method_index = min(self.n - 1, int(round(frac * self.n)))
                frac = self.method_index / self.n
        elif kind in ("epoch", "step") and self.stage == "method" and frac is not None:
            frac = (self.method_index + frac) / self.n
        span = self.SPANS.get(self.stage or "")
        if frac is None or span is None or kind not in ("stage", "epoch", "step"):
            return None
        lo, hi = span
        self.value = max(self.value, lo + (hi - lo) * frac)
        return self.value


WARM_AFTER = ("method", "eval", "embed")  # stages after the base models: the UMAP warm-up may start


class WorkerContext(JobContext):
    """Writes events to the job table (step events throttled) and reads the cancel flag (cached)."""

    def __init__(self, worker: "Worker", job_id: str, log, methods=None):
        self.worker = worker
        self.job_id = job_id
        self.log = log
        self.lost = False  # the job row is no longer ours (requeued/failed by another worker)
        self._last_write = 0.0
        self._pending: dict | None = None
        self._checked = 0.0
        self._cancelled = False
        self.progress = Progress(n_methods=len(methods) if isinstance(methods, list) and methods else 1)

    # events
    def emit(self, event: dict) -> None:
        if not isinstance(event, dict):
            event = {"type": "log", "message": str(event)}
        kind = event.get("type")
        now = time.monotonic()
        if kind == "step" and now - self._last_write < THROTTLE_S:
            self._pending = event
            return
        self._pending = None
        self._write(event)
        if kind == "stage" and event.get("stage") in WARM_AFTER:
            self.worker._warm_go.set()
        if kind in ("stage", "epoch", "log"):
            self._log_event(event)

    def flush(self) -> None:
        if self._pending is not None:
            ev, self._pending = self._pending, None
            self._write(ev)

    def _write(self, event: dict) -> None:
        self._last_write = time.monotonic()
        frac = self.progress.update(event)
        stage = None
        if event.get("type") == "stage":
            stage = str(event.get("stage") or "")
            name = event.get("name")
            if name and str(name) != stage:
                stage = f"{stage}: {name}"
        try:
            with _db() as con, transaction(con):
                cur = con.execute(
                    "UPDATE jobs SET progress = COALESCE(?, progress), stage = COALESCE(?, stage) "
                    "WHERE id = ? AND worker = ? AND state = 'running'",
                    (frac, stage, self.job_id, self.worker.id))
                if cur.rowcount == 0:
                    self.lost = True
                    return
                _add_event(con, self.job_id, event)
        except sqlite3.Error as err:  # never let a busy database kill the job
            self.log_line(f"warning: could not record an event ({err})")

    def _log_event(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "stage":
            text = f"stage {event.get('stage')}: {event.get('name', '')} {event.get('message', '')}".rstrip()
        elif kind == "epoch":
            losses = " ".join(f"{k}={v:.4g}" if isinstance(v, (int, float)) else f"{k}={v}"
                              for k, v in (event.get("losses") or {}).items())
            text = (f"{event.get('run', '')} epoch {event.get('epoch')}/{event.get('epochs')} {losses} "
                    f"forget_acc={_fmt(event.get('forget_acc'))} retain_acc={_fmt(event.get('retain_acc'))}")
        else:
            text = str(event.get("message", ""))
        self.log_line(text)

    def log_line(self, text: str) -> None:
        if self.log is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self.log.write(f"[{_stamp()}] {text}\n")
            self.log.flush()

    # cancellation
    def cancelled(self) -> bool:
        if self.worker.stopping or self.lost:
            return True
        now = time.monotonic()
        if now - self._checked < CANCEL_CACHE_S:
            return self._cancelled
        self._checked = now
        try:
            with _db() as con:
                row = con.execute("SELECT state, worker, cancel_requested FROM jobs WHERE id = ?",
                                  (self.job_id,)).fetchone()
        except sqlite3.Error:
            return self._cancelled
        if row is None or row["state"] != "running" or row["worker"] != self.worker.id:
            self.lost = True
            self._cancelled = True
        else:
            self._cancelled = bool(row["cancel_requested"])
        return self._cancelled


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else str(v)


class Worker:
    def __init__(self, poll: float = 1.0, warm: bool | None = None, out=None, handle_signals: bool = True):
        self.handle_signals = handle_signals
        self.id = f"w-{socket.gethostname()[:20]}-{os.getpid()}-{secrets.token_hex(2)}"
        self.poll = poll
        self.warm = (os.environ.get("ECLAB_NO_WARM", "") in ("", "0")) if warm is None else warm
        self.out = out or sys.stdout
        self.stopping = False
        self.current: str | None = None
        self._stop_event = threading.Event()
        self._interruptible = False
        self._threads: list[threading.Thread] = []
        # UMAP's warm-up waits until the first job is past its base models (or the worker is idle), so
        # numba's compilation does not compete with training the original and the retrained model.
        self._warm_go = threading.Event()

    # logging to the worker's own stdout (worker.log when started by ensure_worker)
    def say(self, text: str) -> None:
        with contextlib.suppress(Exception):  # also "reentrant call" when a signal handler prints
            print(f"[{_stamp()}] {self.id}: {text}", file=self.out, flush=True)

    # lifecycle
    def register(self) -> None:
        now = time.time()
        with _db() as con, transaction(con):
            con.execute("INSERT OR REPLACE INTO workers (id, pid, host, started, heartbeat) VALUES (?, ?, ?, ?, ?)",
                        (self.id, os.getpid(), socket.gethostname(), now, now))

    def unregister(self) -> None:
        with contextlib.suppress(sqlite3.Error), _db() as con, transaction(con):
            con.execute("DELETE FROM workers WHERE id = ?", (self.id,))

    def _heartbeat_loop(self) -> None:
        last_recover = time.monotonic()
        every = max(1.0, stale_seconds() / 3)
        while not self._stop_event.wait(HEARTBEAT_S):
            try:
                self.beat()
                if time.monotonic() - last_recover >= every:
                    last_recover = time.monotonic()
                    for job_id, state in recover_stale(by=self.id):
                        self.say(f"job {job_id} of a stopped worker -> {state}")
            except Exception as err:  # keep beating whatever happens
                self.say(f"heartbeat error: {_one_line(err)}")

    def beat(self) -> None:
        now = time.time()
        cur = self.current
        with _db() as con, transaction(con):
            n = con.execute("UPDATE workers SET heartbeat = ?, current_job = ? WHERE id = ?",
                            (now, cur, self.id)).rowcount
            if n == 0:  # pruned by someone who took us for dead: register again
                con.execute("INSERT INTO workers (id, pid, host, started, heartbeat, current_job) "
                            "VALUES (?, ?, ?, ?, ?, ?)", (self.id, os.getpid(), socket.gethostname(), now, now, cur))
            if cur:
                con.execute("UPDATE jobs SET heartbeat = ? WHERE id = ? AND worker = ? AND state = 'running'",
                            (now, cur, self.id))

    def _warm(self) -> None:
        info = "nothing to warm"
        while not self._warm_go.wait(0.5):
            if self._stop_event.is_set():
                return
        try:
            if self.warm:
                import importlib
                try:
                    embed = importlib.import_module("engine.embed")
                except ModuleNotFoundError as err:
                    if err.name != "engine.embed":
                        raise
                    embed = None
                fn = getattr(embed, "warm_umap", None)
                if fn is not None:
                    t0 = time.perf_counter()
                    fn()
                    info = f"UMAP warmed in {time.perf_counter() - t0:.1f} s"
            else:
                info = "warming skipped (ECLAB_NO_WARM)"
        except Exception as err:
            info = f"UMAP warm-up failed: {_one_line(err)}"
        with contextlib.suppress(sqlite3.Error), _db() as con, transaction(con):
            con.execute("UPDATE workers SET warmed = ? WHERE id = ?", (time.time(), self.id))
        self.say(info)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_stop(signum, frame):
            if self.stopping:
                if self._interruptible:
                    raise _Stop()
                return
            self.stopping = True
            self._stop_event.set()
            self.say(f"signal {signum}: requeueing the current job and exiting")
            if self.current and hasattr(signal, "setitimer"):
                signal.setitimer(signal.ITIMER_REAL, STOP_GRACE_S)

        def on_alarm(signum, frame):
            if self._interruptible:
                raise _Stop()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        if hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, on_alarm)

    def run(self, once: bool = False) -> int:
        """Claim and run jobs until stopped (or, with once, until the queue is empty)."""
        home = store.home()
        if self.handle_signals:
            self._install_signals()
        self.say(f"started (pid {os.getpid()}, home {home})")
        try:
            if not self._start_up():
                return 0
            for tmp in store.remove_stale_tmp(home / "cache"):  # left by a worker killed mid-write
                self.say(f"removed a stale temporary file {tmp}")
            try:  # import before the warm-up thread does, so both never import the runner at once
                _runner()
            except Exception as err:
                self.say(f"engine.runner does not import: {_one_line(err)}")
            for target in (self._heartbeat_loop, self._warm):
                t = threading.Thread(target=target, name=f"eclab-{target.__name__}", daemon=True)
                t.start()
                self._threads.append(t)
            errors = 0
            while not self.stopping:
                try:
                    job = self.claim()
                    if job is not None:
                        self.run_job(job)
                    errors = 0
                except sqlite3.Error as err:  # a locked or full disk: wait and try again, never die on it
                    errors += 1
                    self.say(f"job table error: {_one_line(err)}; retrying")
                    self.current = None
                    self._stop_event.wait(min(30.0, self.poll * 2 ** min(errors, 5)))
                    continue
                if job is not None:
                    self._warm_go.set()
                    continue
                self._warm_go.set()  # idle: nothing to compete with
                if once:
                    break
                self._stop_event.wait(self.poll)
        except _Stop:
            pass
        finally:
            self._stop_event.set()
            self.unregister()
            self.say("stopped")
        return 0

    def _start_up(self) -> bool:
        """Register, recover stale jobs and sweep leftovers; a locked, corrupt or full job table is
        reported and retried (with backoff) until it works or the worker is stopped. False if stopped."""
        errors = 0
        while not self.stopping:
            try:
                self.register()
                for job_id, state in recover_stale(by=self.id):
                    self.say(f"job {job_id} of a stopped worker -> {state}")
                _sweep_trash()
                return True
            except sqlite3.Error as err:
                errors += 1
                wait = min(30.0, self.poll * 2 ** min(errors, 5))
                self.say(f"cannot start: {dbguard.explain(err, db_path())}; retrying in {wait:.0f} s")
                self._stop_event.wait(wait)
        return False

    def claim(self) -> dict | None:
        with _db() as con:  # look before taking the write lock: idle polls stay read-only
            if con.execute("SELECT 1 FROM jobs WHERE state = 'queued' LIMIT 1").fetchone() is None:
                return None
        now = time.time()
        with _db() as con, transaction(con):
            row = con.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, rowid LIMIT 1").fetchone()
            if row is None:
                return None
            cur = con.execute("UPDATE jobs SET state = 'running', worker = ?, started = ?, heartbeat = ?, "
                              "attempts = attempts + 1, progress = 0, stage = NULL, error = NULL "
                              "WHERE id = ? AND state = 'queued'", (self.id, now, now, row["id"]))
            if cur.rowcount != 1:
                return None
            con.execute("UPDATE workers SET current_job = ?, heartbeat = ? WHERE id = ?", (row["id"], now, self.id))
            job = _row_to_job(con.execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())
            _add_event(con, job["id"], {"type": "job", "state": "started", "worker": self.id,
                                        "attempt": job["attempts"], "message": f"started by worker {self.id}"}, now)
        self.current = job["id"]
        return job

    def run_job(self, job: dict) -> None:
        job_id = job["id"]
        self.say(f"job {job_id} ({job['kind']}) started, attempt {job['attempts']}")
        try:
            _clear_run_folder(job_id)  # a rerun starts from an empty folder
            live = store.run_dir(job_id, create=True)  # holds the live log while the attempt runs
            folder = attempts.new_folder(live.parent, job_id, job["attempts"])  # this attempt's artifacts
            log = open(live / "log.txt", "a", buffering=1)
        except OSError as err:  # disk full, permissions: the job fails, the worker goes on
            self._finish(job, WorkerContext(self, job_id, None), "failed", _one_line(err))
            self.current = None
            return
        with log:
            spec = job["spec"] if isinstance(job["spec"], dict) else {}
            ctx = WorkerContext(self, job_id, log, methods=spec.get("methods"))
            ctx.log_line(f"job {job_id} ({job['kind']}) started by worker {self.id}, attempt {job['attempts']}")
            outcome, detail = "failed", None
            try:
                try:
                    self._interruptible = True
                    summary = _runner().execute(job["kind"], job["spec"], folder, ctx)
                finally:
                    self._interruptible = False
                    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
                        signal.setitimer(signal.ITIMER_REAL, 0)
                outcome, detail = "done", summary
            except Cancelled:
                outcome = "cancelled"
            except _Stop:
                outcome = "stopped"
            except Exception as exc:
                outcome, detail = "failed", _one_line(exc)
                ctx.log_line("failed: " + detail + "\n" + traceback.format_exc())
            except BaseException:  # KeyboardInterrupt / SystemExit in-process: requeue, then stop
                self.stopping = True
                with contextlib.suppress(Exception):
                    self._finish(job, ctx, "stopped", None, folder)
                self.current = None
                raise
            self._finish(job, ctx, outcome, detail, folder)
        self.current = None

    def _finish(self, job: dict, ctx: WorkerContext, outcome: str, detail, folder: Path | None = None) -> None:
        """Record the attempt's outcome. Ownership is checked, the attempt folder switched in (or
        dropped) and the state changed in one transaction, so an attempt that lost the job never
        touches the folder of the attempt that has it."""
        job_id = job["id"]
        if outcome == "failed":  # the last step before the failure says where it happened
            with contextlib.suppress(Exception):
                ctx.flush()
        now = time.time()
        with _db() as con, transaction(con):
            row = con.execute("SELECT state, worker, attempts, cancel_requested FROM jobs WHERE id = ?",
                              (job_id,)).fetchone()
            if (row is None or row["state"] != "running" or row["worker"] != self.id
                    or row["attempts"] != job["attempts"]):
                ctx.log_line(f"job was taken over while it ran (now {row['state'] if row else 'deleted'}); "
                             f"result of this attempt dropped")
                self.say(f"job {job_id}: lost (taken over by another worker); its attempt folder is dropped")
                _drop_folder(folder)
                return
            requeue = outcome in ("cancelled", "stopped") and self.stopping and not row["cancel_requested"]
            if requeue:
                _drop_folder(folder)
            elif folder is not None:
                try:
                    attempts.publish(folder, store.run_dir(job_id))
                except OSError as err:  # the results cannot be put in place: the job fails, readably
                    outcome, detail = "failed", f"could not move the results into place: {_one_line(err)}"
            if requeue:
                # SIGTERM: put it back in the queue; this attempt does not count
                con.execute("UPDATE jobs SET state = 'queued', worker = NULL, started = NULL, heartbeat = NULL, "
                            "progress = 0, stage = NULL, attempts = MAX(attempts - 1, 0) WHERE id = ?", (job_id,))
                msg = f"requeued: worker {self.id} was stopped"
                _add_event(con, job_id, {"type": "job", "state": "requeued", "message": msg}, now)
                final = "queued"
            elif outcome in ("cancelled", "stopped"):
                con.execute("UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ?", (now, job_id))
                msg = "cancelled by the user"
                _add_event(con, job_id, {"type": "job", "state": "cancelled", "message": msg}, now)
                final = "cancelled"
            elif outcome == "done":
                summary = detail if isinstance(detail, dict) else ({"value": detail} if detail is not None else {})
                con.execute("UPDATE jobs SET state = 'done', stage = 'done', finished = ?, progress = 1.0, summary = ? "
                            "WHERE id = ?",
                            (now, _dumps(summary), job_id))
                msg = "done"
                _add_event(con, job_id, {"type": "job", "state": "done", "summary": summary, "message": msg}, now)
                final = "done"
            else:
                con.execute("UPDATE jobs SET state = 'failed', finished = ?, error = ? WHERE id = ?",
                            (now, detail, job_id))
                msg = f"failed: {detail}"
                _add_event(con, job_id, {"type": "job", "state": "failed", "error": detail, "message": msg}, now)
                final = "failed"
        ctx.log_line(msg)
        self.say(f"job {job_id}: {final}" + (f" ({detail})" if final == "failed" else ""))


def run_worker(once: bool = False, poll: float = 1.0) -> int:
    return Worker(poll=poll).run(once=once)


# -- CLI ------------------------------------------------------------------------------------------
def add_commands(sub) -> None:
    p = sub.add_parser("submit", help="queue a job (run, compare, base, embed, audit)",
                       description="Queue a job for the background worker and print its id.")
    p.add_argument("--kind", default="run", choices=list(JOB_KINDS))
    p.add_argument("--preset", default="digits")
    p.add_argument("--method", help="method of a single run (ec, ft, ga, ...)")
    grp = p.add_mutually_exclusive_group()
    grp.add_argument("--forget-classes", metavar="C[,C...]", help="classes to forget, e.g. 3 or 3,5")
    grp.add_argument("--forget-random", type=float, metavar="P", help="share of training samples to forget")
    p.add_argument("--seed", type=int)
    p.add_argument("--methods", metavar="M[,M...]", help="methods of a compare job (default: all)")
    add_set_flag(p)
    p.add_argument("--job", help="embed: the job whose results to embed")
    p.add_argument("--layer", help="embed: the supervision point")
    add_model_flags(p)
    p.add_argument("--start-worker", action="store_true", help="start a background worker if none is running")
    p.add_argument("--no-cache", action="store_true",
                   help="run it again even if the same configuration already finished (bypass the cache)")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(func=_cmd_submit)

    p = sub.add_parser("jobs", help="list jobs")
    p.add_argument("--json", action="store_true")
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--state", action="append", choices=list(STATES))
    p.set_defaults(func=_cmd_jobs)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("id")
    p.set_defaults(func=_cmd_cancel)

    p = sub.add_parser("show", help="a job's details, last events and headline metrics")
    p.add_argument("id")
    p.add_argument("--events", type=int, default=10, help="how many of the last events to show")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("worker", help="run queued jobs (the background worker)")
    p.add_argument("--once", action="store_true", help="exit when the queue is empty")
    p.add_argument("--poll", type=float, default=1.0, metavar="S", help="seconds between queue polls")
    p.set_defaults(func=_cmd_worker)


def build_spec(args) -> dict:
    """The job spec of `submit`'s flags: {"preset", "overrides"} (+ "methods"), or {"job", "layer"} for embed."""
    if args.kind == "embed":
        if not args.job or not args.layer:
            raise ConfigError("job", "an embed job needs --job ID and --layer NAME")
        return {"job": args.job, "layer": args.layer}
    overrides = scenario_overrides(args)  # the same flags and --set parsing as `compare`
    if args.method:
        overrides["method"] = args.method
    spec: dict = {"preset": args.preset, "overrides": overrides}
    if args.kind == "audit":
        return audit_spec(args, overrides)
    if args.methods:
        if args.kind != "compare":
            raise ConfigError("methods", "--methods is for --kind compare; use --method for a single run")
        spec["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    return spec


def _cmd_submit(args) -> int:
    try:
        spec = build_spec(args)
        job = submit(args.kind, spec, use_cache=not args.no_cache)
    except ConfigError:
        raise  # engine.cli prints "error: invalid option <option>: <message>" and exits 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(job, indent=1, default=str))
    else:
        print(job["id"])
        if job.get("cached"):
            print(f"cache hit: same configuration as job {job['cached_from']}", file=sys.stderr)
        elif job.get("duplicate_of"):
            print(f"already {job['state']}: the same configuration is job {job['id']}", file=sys.stderr)
    if args.start_worker and job["state"] in ACTIVE:
        if ensure_worker():
            print(f"started a background worker (log: {store.home() / 'worker.log'})", file=sys.stderr)
    elif job["state"] == "queued" and not worker_alive():
        print("note: no worker is running; start one with `python -m engine worker`", file=sys.stderr)
    return 0


def _age(t: float | None, now: float | None = None) -> str:
    if not t:
        return "-"
    s = max(0.0, (now or time.time()) - t)
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s / n:.0f}{unit}"
    return f"{s:.0f}s"


def _cmd_jobs(args) -> int:
    jobs = list_jobs(limit=args.limit, states=args.state)
    if args.json:
        print(json.dumps(store.json_safe(jobs), indent=1, default=str, allow_nan=False))
        return 0
    if not jobs:
        print("no jobs")
        return 0
    now = time.time()
    rows = [("ID", "KIND", "STATE", "PROG", "STAGE", "AGE", "ERROR")]
    for j in jobs:
        state = j["state"] + (" (cache)" if j["cached"] else "") + (" (cancelling)" if j["cancel_requested"]
                                                                     and j["state"] == "running" else "")
        err = (j["error"] or "")
        rows.append((j["id"], j["kind"], state, f"{100 * (j['progress'] or 0):.0f}%", (j["stage"] or "")[:28],
                     _age(j["created"], now), err[:60] + ("..." if len(err) > 60 else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if not worker_alive() and any(j["state"] in ACTIVE for j in jobs):
        print("note: no worker is running; start one with `python -m engine worker`")
    return 0


def _cmd_cancel(args) -> int:
    try:
        job = get_job(args.id)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if job is None:
        print(f"error: no job {args.id}", file=sys.stderr)
        return 1
    if not cancel(args.id):
        print(f"job {args.id} is already {job['state']}")
        return 1
    print(f"job {args.id}: " + ("cancelled" if job["state"] == "queued" else "cancel requested"))
    return 0


def headline(results: dict) -> list[dict]:
    """One row per run of a results dict: the numbers `show` prints."""
    rows = []
    for name, run in (results.get("runs") or {}).items():
        m = run.get("metrics") or {}
        cka = (run.get("cka_vs_original") or {}).get("forget") or {}
        vals = [v for v in cka.values() if isinstance(v, (int, float))]
        rows.append({"run": name, "forget_acc": m.get("forget_acc"), "retain_acc": m.get("retain_acc"),
                     "test_acc": m.get("test_acc"), "mia_efficacy": m.get("mia_efficacy"),
                     "cka_forget_mean": sum(vals) / len(vals) if vals else None,
                     "seconds": run.get("seconds")})
    return rows


def _cmd_show(args) -> int:
    try:
        job = get_job(args.id)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if job is None:
        print(f"error: no job {args.id}", file=sys.stderr)
        return 1
    events = events_since(args.id)[-args.events:] if args.events > 0 else []
    results = None
    if job["state"] == "done":
        try:
            results = load_results(args.id)
        except store.CheckpointError as err:
            print(f"warning: {err}", file=sys.stderr)
    if args.json:
        print(json.dumps(store.json_safe({"job": job, "events": events,
                                          "headline": headline(results) if results else None}),
                         indent=1, default=str, allow_nan=False))
        return 0
    now = time.time()
    print(f"job       {job['id']}")
    print(f"kind      {job['kind']}")
    print(f"state     {job['state']}" + (" (cancel requested)" if job["cancel_requested"]
                                         and job["state"] == "running" else ""))
    print(f"progress  {100 * (job['progress'] or 0):.0f}%  {job['stage'] or ''}".rstrip())
    print(f"created   {_stamp(job['created'])} ({_age(job['created'], now)} ago)")
    if job["started"]:
        print(f"started   {_stamp(job['started'])}")
    if job["finished"]:
        dur = f" ({job['finished'] - job['started']:.1f} s)" if job["started"] else ""
        print(f"finished  {_stamp(job['finished'])}{dur}")
    if job["worker"]:
        print(f"worker    {job['worker']} (attempts {job['attempts']})")
    if job["cached_from"]:
        print(f"cache hit same configuration as job {job['cached_from']}")
    if job["error"]:
        print(f"error     {job['error']}")
    print(f"folder    {job['run_dir']}")
    spec = job["spec"] or {}
    cfg = spec.get("config") if isinstance(spec, dict) else None
    if isinstance(cfg, dict):
        forget = cfg.get("forget") or {}
        print(f"config    preset={cfg.get('preset')} method={cfg.get('method')} seed={cfg.get('seed')} "
              f"forget={forget.get('classes') if forget.get('classes') is not None else forget.get('random')}")
    if events:
        print("events:")
        for ev in events:
            ev = dict(ev)
            seq, t = ev.pop("seq"), ev.pop("time")
            print(f"  {seq:>4} {_stamp(t)[11:]}  {_event_text(ev)}")
    if results:
        print("results:")
        rows = headline(results)
        cols = ["run", "forget_acc", "retain_acc", "test_acc", "mia_efficacy", "cka_forget_mean"]
        table = [cols] + [[r["run"]] + [_fmt(r[c]) if r[c] is not None else "-" for c in cols[1:]] for r in rows]
        widths = [max(len(str(r[i])) for r in table) for i in range(len(cols))]
        for r in table:
            print("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _event_text(ev: dict) -> str:
    kind = ev.get("type")
    if kind == "epoch":
        return (f"epoch {ev.get('run', '')} {ev.get('epoch')}/{ev.get('epochs')} "
                f"forget_acc={_fmt(ev.get('forget_acc'))} retain_acc={_fmt(ev.get('retain_acc'))}")
    if kind == "stage":
        return f"stage {ev.get('stage')}: {ev.get('name', '')} {ev.get('message', '')}".rstrip()
    if kind == "step":
        return f"step {ev.get('run', '')} epoch {ev.get('epoch')} {ev.get('step')}/{ev.get('steps')} loss={_fmt(ev.get('loss'))}"
    if kind == "job":
        return f"{ev.get('state')}: {ev.get('error') or ev.get('message', '')}"
    return str(ev.get("message", ev))


def _cmd_worker(args) -> int:
    return run_worker(once=args.once, poll=args.poll)
