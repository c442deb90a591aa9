"""Which workers live, starting one when none does, and crash recovery: the running jobs of a stopped
worker (procs.why_stopped) are requeued once, then failed; leftover attempt and trash folders go."""
from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from .. import attempts, store
from ..procs import gone, pid_alive, why_stopped
from .db import MAX_ATTEMPTS, _add_event, _db, stale_seconds, transaction


def workers() -> list[dict]:
    """Registered workers, newest first: id, pid, host, started, heartbeat, current_job, warmed (time the
    UMAP warm-up ended, or None) and alive (heartbeat within the stale limit and, on this host, the
    process still running)."""
    now = time.time()
    limit = stale_seconds()
    with _db() as con:
        rows = con.execute("SELECT * FROM workers ORDER BY started DESC").fetchall()
    out = []
    for r in rows:
        w = {k: r[k] for k in r.keys()}
        w["alive"] = why_stopped(w["host"], w["pid"], w["heartbeat"] or 0, limit, now) is None  # a killed one at once
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
            if time.time() - float(when) < 30 and pid_alive(int(pid)):
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


# -- crash recovery -------------------------------------------------------------------------------
def recover_stale(by: str | None = None, stale_s: float | None = None) -> list[tuple[str, str]]:
    """Requeue (once) or fail running jobs whose worker stopped heartbeating. Returns [(job id, new state)].
    A worker whose process is known to be gone (same host, pid not running) counts as stopped at once."""
    stale_s = stale_seconds() if stale_s is None else stale_s
    now = time.time()
    changed = []
    with _db() as con:  # read-only look first: the usual answer is "nothing to do"
        if not _recovery_needed(con, now, stale_s, by):
            return changed
    with _db() as con, transaction(con):
        wrows = {r["id"]: r for r in con.execute("SELECT * FROM workers")}
        for job in con.execute("SELECT id, worker, heartbeat, started, attempts, cancel_requested FROM jobs "
                               "WHERE state = 'running'").fetchall():
            if _job_stopped(job, wrows, stale_s, now) is None:
                continue
            age = now - (job["heartbeat"] or job["started"] or 0)
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
            if _forgotten(w, now):
                con.execute("DELETE FROM workers WHERE id = ?", (wid,))
    return changed


def _job_stopped(job, wrows: dict, stale_s: float, now: float) -> str | None:
    """procs.why_stopped for a running job: its own heartbeat, and its worker's row for the process."""
    w = wrows.get(job["worker"])
    return why_stopped(w["host"] if w is not None else None, w["pid"] if w is not None else None,
                       job["heartbeat"] or job["started"] or 0, stale_s, now)


def _forgotten(w, now: float) -> bool:
    """A worker row to delete: its process gone from this host, or silent for an hour."""
    return now - (w["heartbeat"] or 0) > 3600 or gone(w["host"], w["pid"])


def _recovery_needed(con: sqlite3.Connection, now: float, stale_s: float, by: str | None) -> bool:
    wrows = {r["id"]: r for r in con.execute("SELECT * FROM workers")}
    for job in con.execute("SELECT worker, heartbeat, started FROM jobs WHERE state = 'running'"):
        if _job_stopped(job, wrows, stale_s, now) is not None:
            return True
    return any(wid != by and _forgotten(w, now) for wid, w in wrows.items())


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
