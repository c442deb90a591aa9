"""The job worker: claims queued jobs, runs them through engine.runner, heartbeats, honours cancel
flags and SIGTERM (the current job is requeued), and records each attempt's outcome."""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sqlite3
import sys
import threading
import time
import traceback
from pathlib import Path

from .. import attempts, dbguard, store
from ..events import Cancelled
from ..procs import Beat, install_handlers, one_line
from .context import WorkerContext
from . import pg
from .db import (HEARTBEAT_S, _add_event, _db, _dumps, _row_to_job, _stamp, db_path, is_pg, lock_rows, stale_seconds,
                 transaction)
from .queue import current_runner
from .recovery import _clear_run_folder, _drop_folder, _sweep_trash, recover_stale

STOP_GRACE_S = 5.0  # after SIGTERM, a job that does not reach ctx.check() is interrupted


class _Stop(BaseException):
    """Raised in the worker's main thread when a stopping job ignores the cancel flag too long."""


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
        self._last_recover = time.monotonic()
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
            con.execute("DELETE FROM workers WHERE id = ?", (self.id,))
            con.execute("INSERT INTO workers (id, pid, host, started, heartbeat) VALUES (?, ?, ?, ?, ?)",
                        (self.id, os.getpid(), socket.gethostname(), now, now))

    def unregister(self) -> None:
        with contextlib.suppress(sqlite3.Error), _db() as con, transaction(con):
            con.execute("DELETE FROM workers WHERE id = ?", (self.id,))

    def _heartbeat(self) -> None:
        """One beat (procs.Beat calls it every HEARTBEAT_S); every third of the stale limit it also
        recovers the jobs of stopped workers."""
        self.beat()
        if time.monotonic() - self._last_recover >= max(1.0, stale_seconds() / 3):
            self._last_recover = time.monotonic()
            for job_id, state in recover_stale(by=self.id):
                self.say(f"job {job_id} of a stopped worker -> {state}")

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
            info = f"UMAP warm-up failed: {one_line(err)}"
        with contextlib.suppress(sqlite3.Error), _db() as con, transaction(con):
            con.execute("UPDATE workers SET warmed = ? WHERE id = ?", (time.time(), self.id))
        self.say(info)

    def _install_signals(self) -> None:
        """SIGTERM/SIGINT requeue the current job and stop; a job that does not reach ctx.check()
        within STOP_GRACE_S is interrupted by SIGALRM. Installed for the life of the process."""
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

        handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop}
        if hasattr(signal, "SIGALRM"):
            handlers[signal.SIGALRM] = on_alarm
        install_handlers(handlers)

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
                current_runner()
            except Exception as err:
                self.say(f"engine.runner does not import: {one_line(err)}")
            self._last_recover = time.monotonic()
            beat = Beat(HEARTBEAT_S, self._heartbeat, "eclab-heartbeat", stop=self._stop_event,
                        on_error=lambda err: self.say(f"heartbeat error: {one_line(err)}"))  # keeps beating
            warm = threading.Thread(target=self._warm, name="eclab-warm", daemon=True)
            for t in (beat, warm):
                t.start()
            self._threads += [beat.thread, warm]
            errors = 0
            while not self.stopping:
                try:
                    job = self.claim()
                    if job is not None:
                        self.run_job(job)
                    errors = 0
                except sqlite3.Error as err:  # a locked or full disk: wait and try again, never die on it
                    errors += 1
                    self.say(f"job table error: {one_line(err)}; retrying")
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
        with _db() as con, transaction(con, rows_only=True):  # PostgreSQL: workers claim side by side
            row = con.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, rowid LIMIT 1"
                              + lock_rows(con, skip=True)).fetchone()
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
            self._finish(job, WorkerContext(self, job_id, None), "failed", one_line(err))
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
                    summary = current_runner().execute(job["kind"], job["spec"], folder, ctx)
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
                outcome, detail = "failed", one_line(exc)
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
                    if outcome == "done" and is_pg(con):  # any machine's dashboard reads them from the server
                        pg.store_files(con, job_id, store.run_dir(job_id))
                except OSError as err:  # the results cannot be put in place: the job fails, readably
                    outcome, detail = "failed", f"could not move the results into place: {one_line(err)}"
            if requeue:
                # SIGTERM: put it back in the queue; this attempt does not count
                con.execute("UPDATE jobs SET state = 'queued', worker = NULL, started = NULL, heartbeat = NULL, "
                            "progress = 0, stage = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
                            "WHERE id = ?", (job_id,))
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
