"""A running job's context: the overall progress bar (Progress) and the JobContext the worker hands
the runner (WorkerContext: events into the job table, the cancel flag read from it)."""
from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from typing import TYPE_CHECKING

from ..events import JobContext
from .db import _add_event, _db, _stamp, transaction

if TYPE_CHECKING:
    from .worker import Worker

THROTTLE_S = 0.25  # minimum gap between progress writes of throttled (step) events
CANCEL_CACHE_S = 0.2


class Progress:
    """Overall job progress (0..1, never going back) from the runner's stage-local fractions.

    Stages run in this order; each gets a share of the bar, roughly its share of a comparison's time
    (digits and teach: the methods most of it, the two noise references after them about a fifth).
    Cached base models skip theirs at once. Epoch and step events belong to the stage announced last;
    in a compare job's "method" stage the stage event's fraction says which method (i / n) and epochs
    advance within it. A method's calibration ("calibrate" stage events, fraction = settings tried)
    fills that method's slot; its candidates' own epochs are not progress (each starts again at 0)."""

    SPANS = {"original": (0.0, 0.12), "retrain": (0.12, 0.22), "aux": (0.22, 0.26), "refs": (0.26, 0.28),
             "method": (0.28, 0.8), "original_seed2": (0.8, 0.88), "retrain_seed2": (0.88, 0.95),
             "eval": (0.95, 0.97), "embed": (0.97, 1.0)}

    def __init__(self, n_methods: int = 1):
        self.n = max(1, int(n_methods))
        self.stage: str | None = None
        self.method_index = 0
        self.calibrating = False
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
        if kind == "stage" and event.get("stage") == "calibrate" and self.stage == "method":
            self.calibrating = True
            frac = None if frac is None else (self.method_index + frac) / self.n
        elif kind == "stage":
            self.stage, self.calibrating = event.get("stage"), False
            if self.stage == "eval" and event.get("name") in ("original", "retrain"):
                self.stage = "refs"  # the reference rows are evaluated before the methods, not after
            if self.stage == "method" and frac is not None:
                self.method_index = min(self.n - 1, int(round(frac * self.n)))
                frac = self.method_index / self.n
        elif kind in ("epoch", "step") and self.stage == "method" and frac is not None:
            frac = None if self.calibrating else (self.method_index + frac) / self.n
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
            text = f"{event.get('run', '')} epoch {event.get('epoch')}/{event.get('epochs')} {losses}" + accuracy_text(event)
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


def accuracy_text(event: dict) -> str:
    """' forget_acc=... retain_acc=...' for the accuracies an epoch event carries (base-model training
    measures none: no 'None' noise then)."""
    return "".join(f" {k}={_fmt(event[k])}" for k in ("forget_acc", "retain_acc") if event.get(k) is not None)
