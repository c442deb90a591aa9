"""Where a study lives: study names, resolving the storage (journal file or database URL), opening an
Optuna storage, the heartbeat settings, and the budget lock that keeps workers within the trial budget."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import re
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
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    path = Path(storage)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


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
