"""Where a study lives: study names, resolving the storage (journal file or database URL), opening an
Optuna storage, the heartbeat settings, and the budget lock that keeps workers within the trial budget."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator

from .. import store
from ..config import ConfigError, stable_hash
from ..procs import one_line

_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")  # fullmatch: `$` would let a "\n" through


class SweepError(RuntimeError):
    """A sweep cannot start or continue (unknown study, settings mismatch, storage unreachable)."""


def heartbeat_seconds() -> float:
    return max(0.2, _env_float("ECLAB_SWEEP_HEARTBEAT_S", 10.0))


def grace_seconds() -> float:
    return max(1.0, _env_float("ECLAB_SWEEP_GRACE_S", 30.0))


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def check_study_name(name: str) -> str:
    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name):
        raise ConfigError("study", f"invalid study name {name!r}: letters, digits, '_' or '-' (at most 40), "
                                   f"starting with a letter or digit")
    return name


def sweeps_dir() -> Path:
    path = store.home() / "sweeps"
    path.mkdir(parents=True, exist_ok=True)
    return path


def journal_path(study: str) -> Path:
    return sweeps_dir() / f"{check_study_name(study)}.journal"


def is_url(storage: str) -> bool:
    return "://" in str(storage)


def resolve_storage(storage: str | None, study: str) -> str:
    """The storage a command uses: --storage, else $ECLAB_SWEEP_STORAGE, else the study's journal file."""
    storage = storage or os.environ.get("ECLAB_SWEEP_STORAGE") or None
    if storage is None:
        return str(journal_path(study))
    if is_url(storage):
        return storage
    return str(Path(storage).expanduser().resolve())


def redact(storage: str) -> str:
    """A storage string safe to print: the password of a URL replaced by ***."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(storage))


def db_url(url: str) -> str:
    """The SQLAlchemy URL for a database storage. A plain postgresql:// (or postgres://) URL names no
    driver; SQLAlchemy 2.1 then wants psycopg 3, while EC Lab ships psycopg2-binary: use whichever is
    installed (an explicit postgresql+driver:// is kept as given)."""
    m = re.match(r"^(postgres|postgresql)://", url)
    if not m:
        return url
    rest = url[m.end():]
    for module, driver in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://{rest}"
    return f"postgresql://{rest}"


def _quiet_optuna():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"optuna.*")
    return optuna


def open_storage(storage: str):
    """An Optuna storage for a resolved storage string (journal path or database URL)."""
    optuna = _quiet_optuna()
    if is_url(storage):
        kwargs: dict = {}
        if storage.startswith(("postgresql", "postgres")):
            kwargs["engine_kwargs"] = {"pool_pre_ping": True}
        try:
            return optuna.storages.RDBStorage(db_url(storage),
                                              heartbeat_interval=max(1, int(round(heartbeat_seconds()))),
                                              grace_period=max(1, int(round(grace_seconds()))), **kwargs)
        except Exception as err:
            raise SweepError(f"cannot open the sweep storage {redact(storage)}: {one_line(err)}") from None
    from optuna.storages.journal import JournalStorage
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_journal(path)
    return JournalStorage(_journal_backend()(str(path)))


# -- journal files: a torn last record is set aside, damage before intact records is refused -----------

def _bad_record(line: bytes) -> str | None:
    """Why one line of a journal is not an intact record (None when it is one)."""
    if not line.endswith(b"\n"):
        return "an unfinished last record"
    try:
        rec = json.loads(line)
    except UnicodeDecodeError:
        return "bytes that are not UTF-8 text"
    except json.JSONDecodeError as err:
        return f"a line that is not JSON: {err.msg}"
    return None if isinstance(rec, dict) and "op_code" in rec else "a line that is not a journal record"


def journal_damage(path: Path) -> tuple[int, str, bool] | None:
    """(byte offset, why, torn) of the first bad line of a journal file, or None when every line is an
    intact record. `torn`: only the tail is bad (no intact record follows it, at least one precedes it):
    what a write cut short by kill -9 or a full disk leaves."""
    offset, first = 0, None
    with open(path, "rb") as fh:
        for line in fh:
            why = _bad_record(line)
            if why is not None and first is None:
                first = (offset, why)
            elif why is None and first is not None:
                return first[0], first[1], False  # an intact record after damage: not a torn tail
            offset += len(line)
    return None if first is None else (first[0], first[1], first[0] > 0)


def check_journal(path: Path) -> None:
    """Before Optuna reads a journal: a torn tail is copied to <journal>.torn-<time> and cut off (under
    Optuna's own lock, so no append is in flight), keeping every intact record; a journal damaged
    before intact records is refused with one line naming it and the fix."""
    if not path.is_file() or journal_damage(path) is None:  # the usual case: no lock taken
        return
    from optuna.storages.journal import JournalFileSymlinkLock
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        found = journal_damage(path)  # again under the lock: what looked torn may have been a write in flight
        if found is not None:
            _set_aside_tail(path, *found)
    finally:
        lock.release()


def _set_aside_tail(path: Path, offset: int, why: str, torn: bool) -> None:
    if not torn:
        raise SweepError(f"sweep journal {path} is damaged at byte {offset} ({why}): move it aside "
                         f"(mv {path} {path}.bad) and start a new --study, or restore it from a backup")
    aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while aside.exists():  # a second tear within the second: never overwrite the first one's bytes
        n += 1
        aside = aside.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    try:
        with open(path, "r+b") as fh:
            fh.seek(offset)
            store.atomic_write_bytes(aside, fh.read())
            fh.truncate(offset)
    except OSError as err:
        raise SweepError(f"sweep journal {path} ends in {why} at byte {offset} and it cannot be set aside "
                         f"({one_line(err)}): free disk space and run again") from None
    print(f"warning: sweep journal {path} ended in {why} (a write cut short): moved {aside.stat().st_size} "
          f"bytes to {aside}, kept the intact records before byte {offset}", file=sys.stderr)


def _unfinished_tail(path) -> int | None:
    """Where the unfinished last line of a journal starts; None when the file ends with a newline."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return None
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return None
        fh.seek(0)
        return fh.read().rfind(b"\n") + 1


@functools.cache
def _journal_backend():
    """Optuna's JournalFileBackend whose appends first set aside a torn tail (a worker killed mid-write
    while this one runs), so a record is never glued onto a broken line."""
    from optuna.storages.journal import JournalFileBackend
    from optuna.storages.journal._file import get_lock_file

    class Backend(JournalFileBackend):
        def append_logs(self, logs: list[dict]) -> None:
            with get_lock_file(self._lock):
                start = _unfinished_tail(self._file_path)
                if start is not None:
                    _set_aside_tail(Path(self._file_path), start, "an unfinished last record", True)
                with open(self._file_path, "ab") as fh:
                    fh.write(("\n".join(json.dumps(x, separators=(",", ":")) for x in logs) + "\n").encode())
                    fh.flush()
                    os.fsync(fh.fileno())

    return Backend


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def budget_lock(storage_str: str, raw_storage, study: str) -> Iterator[bool]:
    """Serialises "count trials, then create one" across workers. Yields True when the lock is real."""
    if not is_url(storage_str):
        with _file_lock(Path(storage_str + ".budget-lock")):
            yield True
        return
    if storage_str.startswith("sqlite:///"):
        with _file_lock(Path(storage_str[len("sqlite:///"):] + ".budget-lock")):
            yield True
        return
    engine = getattr(raw_storage, "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        from sqlalchemy import text
        key = int(stable_hash({"eclab-sweep": study}, 15), 16) & 0x7FFFFFFFFFFFFFFF
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield True
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    yield False  # other databases: no lock; the budget is re-checked after the trial is created
