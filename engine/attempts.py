"""Attempt folders: every claim of a job writes its artifacts into a folder of its own,

    $ECLAB_HOME/runs/.attempt-<job>-<attempt>-<random>/

and only the attempt that still owns the job (checked by the worker in the same database
transaction that marks the job finished) switches it in as runs/<job>/ by renaming it. A worker
that was paused (SIGSTOP, a sleeping laptop) past the stale limit and resumes after another worker
finished the job therefore writes into its own folder, which is thrown away: the finished job's
files are never touched. The live log of the running attempt stays in runs/<job>/log.txt (where
`show` points) and moves into the attempt folder just before the switch.
"""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

PREFIX = ".attempt-"


def new_folder(runs: Path, job_id: str, attempt: int) -> Path:
    folder = Path(runs) / f"{PREFIX}{job_id}-{int(attempt)}-{secrets.token_hex(3)}"
    folder.mkdir(parents=True)
    return folder


def owner_of(folder: Path) -> tuple[str, int] | None:
    """(job id, attempt) an attempt folder belongs to, from its name; None for other names."""
    name = Path(folder).name
    if not name.startswith(PREFIX):
        return None
    try:
        job_id, attempt, _ = name[len(PREFIX):].rsplit("-", 2)
        return job_id, int(attempt)
    except ValueError:
        return None


def folders_of(runs: Path, job_id: str) -> list[Path]:
    """The attempt folders of one job, newest attempt last."""
    found = [(owner_of(f), f) for f in Path(runs).glob(f"{PREFIX}{job_id}-*")]
    return [f for o, f in sorted((o, f) for o, f in found if o and o[0] == job_id)]


def remove(folder: Path) -> None:
    """Rename a folder to a .trash- name first (so nothing reads it half-deleted), then delete it."""
    folder = Path(folder)
    if not folder.exists():
        return
    trash = folder.parent / f".trash-{folder.name.lstrip('.')}-{secrets.token_hex(3)}"
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def publish(attempt: Path, final: Path, log_name: str = "log.txt") -> None:
    """Make the attempt folder the job's run folder: the live log moves in (an open handle keeps
    writing to it), whatever else sits at `final` goes, then one rename switches the folder in.
    The caller holds the job table's write lock and has checked that this attempt owns the job."""
    attempt, final = Path(attempt), Path(final)
    log = final / log_name
    if log.is_file() and not (attempt / log_name).exists():
        os.replace(log, attempt / log_name)
    remove(final)
    os.rename(attempt, final)


def sweep(runs: Path, running) -> list[Path]:
    """Delete attempt folders of no running attempt (left by killed workers). `running()` returns the
    set of (job id, attempt) now running; it is read after listing the folders, so a folder created
    by a claim made meanwhile is never taken for a leftover. Returns the folders removed."""
    runs = Path(runs)
    found = sorted(runs.glob(PREFIX + "*")) if runs.is_dir() else []
    if not found:
        return []
    alive = running()
    gone = []
    for folder in found:
        if owner_of(folder) not in alive:
            remove(folder)
            gone.append(folder)
    return gone
