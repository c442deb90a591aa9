"""The job table: schema, connections and transactions, events, job rows and ids."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import secrets
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from .. import dbguard, store
from . import pg

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
FINAL = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 2  # a job is run at most twice: the first run plus one requeue after a crash
HEARTBEAT_S = 1.0

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
CREATE TABLE IF NOT EXISTS grids (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    spec TEXT NOT NULL,
    cells TEXT NOT NULL,
    cancelled INTEGER NOT NULL DEFAULT 0
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


def backend() -> str:
    """Where the job table lives, for messages: the PostgreSQL URL (password removed) or the SQLite file."""
    where = pg.url()
    return pg.public(where) if where else str(db_path())


def is_pg(con) -> bool:
    return getattr(con, "dialect", "sqlite") == "postgresql"


def lock_rows(con, skip: bool = False) -> str:
    """The clause that locks the rows a SELECT returns (PostgreSQL; with skip, rows another
    transaction holds are passed over); empty on SQLite, where BEGIN IMMEDIATE already holds the
    whole table."""
    if not is_pg(con):
        return ""
    return " FOR UPDATE SKIP LOCKED" if skip else " FOR UPDATE"


# -- database -------------------------------------------------------------------------------------
_initialised: set[tuple[str, int]] = set()  # (path, inode) of job tables known to have the schema
_init_lock = threading.Lock()


def connect() -> sqlite3.Connection:
    """A new connection (autocommit; write with `transaction()`). Use it in one thread only.
    On a full disk (or a folder that cannot be written) the job table is opened read-only: every read
    works, with one warning, and a write fails with the one-line reason (dbguard).
    With ECLAB_JOBS_URL=postgresql://... the job table is on that server instead (engine.jobs.pg)."""
    where = pg.url()
    if where:
        return pg.connect(where)  # type: ignore[return-value]  # the sqlite3 interface the job code uses
    path = db_path()
    try:
        return _connect(path)
    except dbguard.DatabaseUnavailable as err:
        if err.cause != "unwritable" or not path.is_file():
            raise
        with dbguard.guard(path):
            con = sqlite3.connect(f"file:{path}?immutable=1", uri=True, timeout=30.0, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("SELECT 1 FROM jobs LIMIT 1")  # it is a job table, readable without a write
        if str(path) not in _read_only_warned:
            _read_only_warned.add(str(path))
            print(f"warning: the job database {path} cannot be written ({' '.join(str(err.__cause__).split())}): "
                  f"the disk is full or the folder is not writable; reading it read-only (the latest changes may be "
                  f"missing; nothing can be queued or changed until space is freed)", file=sys.stderr)
        return con


_read_only_warned: set[str] = set()


def _connect(path: Path) -> sqlite3.Connection:
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
def transaction(con: sqlite3.Connection, rows_only: bool = False) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT; rolled back on any exception (KeyboardInterrupt included).
    rows_only: on PostgreSQL, do not take the writers' lock; the transaction locks the rows it
    touches itself (lock_rows), as the worker's claim does. SQLite always holds the write lock."""
    con.execute("BEGIN ROWS" if rows_only and is_pg(con) else "BEGIN IMMEDIATE")
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


def _free_id(con: sqlite3.Connection, now: float) -> str:
    for _ in range(50):
        job_id = new_job_id(now)
        if con.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
            return job_id
    raise RuntimeError("could not find a free job id")


def _stamp(t: float | None = None) -> str:
    return _dt.datetime.fromtimestamp(time.time() if t is None else t).strftime("%Y-%m-%d %H:%M:%S")
