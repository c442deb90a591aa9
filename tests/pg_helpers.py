"""A PostgreSQL server for the tests that need one (sweeps on PostgreSQL, the job table on PostgreSQL).

ECLAB_TEST_PG_URL (set by .ci/run through .ci/postgres.sh) or, when unset, a private server started
with .ci/postgres.sh (no install attempted); the tests are skipped only when neither works.
`fresh_database(url)` makes an empty database on that server for one test (and drops it after).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pg_problem(url: str) -> str | None:
    try:
        import psycopg2
        psycopg2.connect(url, connect_timeout=5).close()
        return None
    except Exception as err:  # noqa: BLE001
        return f"{type(err).__name__}: {str(err).strip()[:200]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def pg_url():
    url = os.environ.get("ECLAB_TEST_PG_URL")
    why = "ECLAB_TEST_PG_URL is unset"
    if url:
        err = pg_problem(url)
        if not err:
            yield url
            return
        why = f"ECLAB_TEST_PG_URL={url} does not answer ({err})"
    port = _free_port()
    pgdir = f"/tmp/eclab-pg-test-{port}"  # under /tmp itself: the postgres user must reach it
    env = {**os.environ, "ECLAB_PG_NO_INSTALL": "1", "ECLAB_PG_PORT": str(port), "ECLAB_PG_DIR": pgdir}
    script = ROOT / ".ci" / "postgres.sh"
    try:
        res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"no PostgreSQL server: {why}, and .ci/postgres.sh could not run ({err})")
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines or pg_problem(lines[-1]):
        subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(pgdir, ignore_errors=True)
        pytest.skip(f"no PostgreSQL server: {why}, and .ci/postgres.sh could not start one "
                    f"(exit {res.returncode}: {res.stderr.strip()[-300:]})")
    try:
        yield lines[-1]
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, timeout=60)
        shutil.rmtree(pgdir, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(url: str):
    """The URL of a new empty database on the server of `url`; dropped afterwards."""
    import psycopg2
    name = f"eclab_t_{secrets.token_hex(4)}"
    admin = psycopg2.connect(url, connect_timeout=5)
    admin.autocommit = True
    try:
        admin.cursor().execute(f"CREATE DATABASE {name}")
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with contextlib.suppress(Exception):
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
