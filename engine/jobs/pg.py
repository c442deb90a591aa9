"""The job table on PostgreSQL, for workers on many machines (ECLAB_JOBS_URL=postgresql://...).

The job code is written once, against sqlite3's interface (`con.execute(sql, params)`, rows by name
and index, `?` placeholders, `BEGIN IMMEDIATE`); PgConnection gives a psycopg2 connection that
interface, translating the few SQLite-only spellings:

    ?                      -> %s (literal % doubled)
    BEGIN IMMEDIATE        -> BEGIN + a transaction-scoped advisory lock: every writer is serialized,
                              as SQLite's write lock serializes them (events' MAX(seq) + 1, the
                              duplicate check of submit, crash recovery stay correct as written)
    BEGIN ROWS             -> plain BEGIN: the worker's claim, which locks only the row it takes
                              (SELECT ... FOR UPDATE SKIP LOCKED, db.lock_rows), so workers on many
                              machines claim side by side without waiting for one another
    rowid                  -> seq (a BIGSERIAL column of the PostgreSQL schema: insertion order)

Every psycopg2 error becomes dbguard.DatabaseUnavailable (a sqlite3.DatabaseError), so the worker's
"wait and retry" handlers and the CLI's one-line errors work unchanged; the message names the server
(password removed) and the fix. Connections are kept one per thread and process, and dropped after
an error (a server restart costs one failed call, then a new connection).

What goes into the database besides the job rows: a finished job's results and arrays (the `files`
table: results.json, arrays.npz, embed.json, ...), so a dashboard on any machine shows every job;
model weights stay where they were made, with their host and path recorded (data NULL).
"""
from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .. import dbguard

ADVISORY_KEY = 0x45434C6162  # "ECLab": the one lock every writing transaction takes

# the results of finished jobs, for machines other than the one that ran them (see store_files)
FILES_TABLE = """
CREATE TABLE IF NOT EXISTS files (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size BIGINT NOT NULL,
    data BYTEA,
    host TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (job_id, name)
)
"""


def schema() -> str:
    """The SQLite schema (db._SCHEMA, the one definition of the tables) in PostgreSQL's types, with the
    jobs' insertion order as a column (SQLite's implicit rowid) and the files table."""
    from .db import _SCHEMA
    text = re.sub(r"\bREAL\b", "DOUBLE PRECISION", _SCHEMA)
    text = text.replace("CREATE TABLE IF NOT EXISTS jobs (\n", "CREATE TABLE IF NOT EXISTS jobs (\n    seq BIGSERIAL UNIQUE,\n", 1)
    assert "seq BIGSERIAL" in text, "db._SCHEMA's jobs table changed shape: update pg.schema()"
    return text + ";" + FILES_TABLE


# files of a finished run folder stored in the database (all but the weights, which stay on disk)
STORED_SUFFIXES = (".json", ".npz", ".csv", ".txt")
MAX_STORED_MB = 512  # a bytea value is at most 1 GB; larger files stay on disk, like the weights


def url() -> str | None:
    """The job table's PostgreSQL URL (ECLAB_JOBS_URL), or None for the embedded SQLite file."""
    value = os.environ.get("ECLAB_JOBS_URL", "").strip()
    if not value:
        return None
    if not re.match(r"^postgres(ql)?(\+\w+)?://", value):
        raise dbguard.DatabaseUnavailable(
            f"ECLAB_JOBS_URL={public(value)} is not a PostgreSQL URL: use postgresql://user@host:port/db, "
            f"or unset it for the embedded SQLite job table", "error")
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", value)


def public(value: str) -> str:
    """A URL with its password removed (for messages)."""
    try:
        parts = urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return value


def explain(err: BaseException, where: str) -> dbguard.DatabaseUnavailable:
    """One line naming the server and the fix for a psycopg2 error."""
    if isinstance(err, dbguard.DatabaseUnavailable):
        return err
    detail = " ".join(str(err).split()) or type(err).__name__
    import psycopg2
    if isinstance(err, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return dbguard.DatabaseUnavailable(
            f"the job database {public(where)} cannot be reached ({detail}): start the PostgreSQL server or fix "
            f"ECLAB_JOBS_URL (unset it for the embedded SQLite job table), then run again", "busy")
    return dbguard.DatabaseUnavailable(f"the job database {public(where)} refused a query ({detail})", "error")


def _translate(sql: str) -> str:
    sql = sql.replace("%", "%%").replace("?", "%s")
    return re.sub(r"\browid\b", "seq", sql)


class Cursor:
    """The part of sqlite3.Cursor the job code uses."""

    def __init__(self, cur):
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def fetchone(self):
        return self._cur.fetchone() if self._cur.description else None

    def fetchall(self):
        return self._cur.fetchall() if self._cur.description else []

    def __iter__(self):
        return iter(self.fetchall())


class PgConnection:
    """A psycopg2 connection with the part of sqlite3.Connection's interface the job code uses."""

    dialect = "postgresql"

    def __init__(self, where: str):
        import psycopg2
        self.where = where
        try:
            self.raw = psycopg2.connect(where, connect_timeout=10, application_name="eclab")
            self.raw.autocommit = True  # transactions are explicit (BEGIN ... COMMIT), as with SQLite
        except psycopg2.Error as err:
            raise explain(err, where) from err
        self.broken = False

    def execute(self, sql: str, params=()):
        import psycopg2
        import psycopg2.extras
        head = sql.strip().upper()
        try:
            cur = self.raw.cursor(cursor_factory=psycopg2.extras.DictCursor)
            if head == "BEGIN IMMEDIATE":
                cur.execute("BEGIN")
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_KEY,))
            elif head == "BEGIN ROWS":
                cur.execute("BEGIN")
            else:
                cur.execute(_translate(sql), tuple(_bytes(p) for p in params))
            return Cursor(cur)
        except psycopg2.Error as err:
            if isinstance(err, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                self.broken = True
            raise explain(err, self.where) from err

    def close(self) -> None:
        """Kept for the next call of this thread (see connect); closed when broken."""
        if self.broken or self.raw.closed:
            _local.__dict__.pop(_key(self.where), None)
            try:
                self.raw.close()
            except Exception:  # noqa: BLE001
                pass


def _bytes(value):
    if isinstance(value, (bytes, bytearray, memoryview)):
        import psycopg2
        return psycopg2.Binary(bytes(value))
    return value


_local = threading.local()
_schema_ready: set[str] = set()
_schema_lock = threading.Lock()


def _key(where: str) -> str:
    return f"{os.getpid()}|{where}"


def connect(where: str) -> PgConnection:
    """This thread's connection to `where` (made, and the schema created, on first use)."""
    con = _local.__dict__.get(_key(where))
    if con is None or con.raw.closed or con.broken:
        con = PgConnection(where)
        _local.__dict__[_key(where)] = con
    if where not in _schema_ready:
        with _schema_lock:
            if where not in _schema_ready:
                con.execute("BEGIN IMMEDIATE")  # two first workers must not create the tables at once
                try:
                    for stmt in schema().split(";"):
                        if stmt.strip():
                            con.execute(stmt)
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
                _schema_ready.add(where)
    return con


# -- results in the database ----------------------------------------------------------------------
def store_files(con: PgConnection, job_id: str, folder: Path) -> None:
    """Inside the caller's transaction: every results file of a finished run folder into `files`,
    weights (and anything too large) as host and path only."""
    host = socket.gethostname()
    con.execute("DELETE FROM files WHERE job_id = ?", (job_id,))
    for f in sorted(Path(folder).iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        size = f.stat().st_size
        keep = f.suffix in STORED_SUFFIXES and size <= MAX_STORED_MB * 2 ** 20
        con.execute("INSERT INTO files (job_id, name, size, data, host, path) VALUES (?, ?, ?, ?, ?, ?)",
                    (job_id, f.name, size, f.read_bytes() if keep else None, host, str(f.resolve())))


def fetch_file(con: PgConnection, job_id: str, name: str) -> bytes | None:
    row = con.execute("SELECT data FROM files WHERE job_id = ? AND name = ?", (job_id, name)).fetchone()
    return None if row is None or row["data"] is None else bytes(row["data"])


def file_rows(con: PgConnection, job_id: str) -> list[dict]:
    """name, size, host, path and whether the data is in the database, per file of a job."""
    return [{"name": r["name"], "size": r["size"], "host": r["host"], "path": r["path"],
             "stored": bool(r["stored"])}
            for r in con.execute("SELECT name, size, host, path, data IS NOT NULL AS stored FROM files "
                                 "WHERE job_id = ? ORDER BY name", (job_id,))]
