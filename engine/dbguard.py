"""Readable errors for a job database that is corrupt, unwritable, full or locked.

Every sqlite3 error raised while using $ECLAB_HOME/jobs.sqlite is turned into DatabaseUnavailable:
one line that names the file and the fix. It is both a sqlite3.DatabaseError (so the worker's
"wait and retry" handlers still catch it) and a RuntimeError (so the CLI prints it as
"error: ..." without a traceback, and the dashboard shows it as a message).
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Iterator

# substrings of SQLite's messages, by cause
_CORRUPT = ("not a database", "malformed", "corrupt")
_UNWRITABLE = ("disk is full", "disk i/o", "readonly", "read-only", "unable to open", "permission", "too large")
_BUSY = ("locked", "busy")


class DatabaseUnavailable(sqlite3.DatabaseError, RuntimeError):
    """The job database cannot be used; str() is one line naming the file and the fix."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause  # "corrupt" | "unwritable" | "busy" | "error"


def cause_of(err: BaseException) -> str:
    text = str(err).lower()
    for cause, needles in (("corrupt", _CORRUPT), ("unwritable", _UNWRITABLE), ("busy", _BUSY)):
        if any(n in text for n in needles):
            return cause
    return "error"


def explain(err: BaseException, path: Path) -> DatabaseUnavailable:
    """The one-line DatabaseUnavailable for a sqlite3 error on the database file `path`."""
    if isinstance(err, DatabaseUnavailable):
        return err
    path = Path(path)
    cause = cause_of(err)
    detail = " ".join(str(err).split()) or type(err).__name__
    aside = (f"move it aside with its -wal/-shm files (mkdir {path.parent}/db-aside && "
             f"mv {path}* {path.parent}/db-aside/) and run again: a new empty job table is created, "
             f"and the run folders in {path.parent / 'runs'} are kept")
    if cause == "corrupt":
        msg = f"the job database {path} is corrupt ({detail}): {aside}"
    elif cause == "unwritable":
        msg = (f"the job database {path} cannot be written ({detail}): the disk is full or the folder is not "
               f"writable; free space or fix the permissions and run again (if it stays broken, {aside})")
    elif cause == "busy":
        msg = (f"the job database {path} is locked by another process ({detail}): wait a moment and run again; "
               f"if no other EC Lab process is running, {aside}")
    else:
        msg = f"the job database {path} could not be used ({detail}): {aside}"
    return DatabaseUnavailable(msg, cause)


@contextlib.contextmanager
def guard(path: Path) -> Iterator[None]:
    """Re-raise any sqlite3 error inside the block as DatabaseUnavailable naming `path`."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except sqlite3.Error as err:
        raise explain(err, path) from err
