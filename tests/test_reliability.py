"""Nothing lost, nothing stale (issue 11, items 1, 2, 4 and 6): real worker processes, real damaged files.

1. a damaged cached results file (also its hard-linked copy in a cache hit's folder) is not served;
   `submit --no-cache` and the Launch page's "Run again" bypass the cache;
2. a worker paused past the stale limit that resumes after another worker finished the job leaves
   the finished job's files alone (attempt folders, switched in only by the owner);
4. a corrupt or unwritable job database gives one readable line in the CLI and the dashboard, and a
   worker that starts on one waits and retries instead of dying;
6. SIGTERM to `serve` stops Streamlit and its worker; SIGTERM and cancel during the UMAP stage take
   effect within seconds (requeued / cancelled, never done, no attempt spent).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import api, jobs, store

from test_jobs import _set_args, home, job_events, procs, warm, warm_home  # noqa: F401 - shared fixtures
from jobs_helpers import (ROOT, check_run_folders, cli, integrity_ok, pause_unlocked, spec, start_worker,
                          stop, wait_for, worker_env, worker_log)


def stage_seen(job_id, stage, name=None):
    return any(e.get("type") == "stage" and e.get("stage") == stage and (name is None or e.get("name") == name)
               for e in api.events_since(job_id))


def run_once(home: Path, name: str = "once") -> None:
    w = start_worker(home, "--once", log_name=name)
    assert w.wait(240) == 0, worker_log(home, name)


# -- 1. cache hits are validated; --no-cache and "Run again" bypass the cache -------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_damaged_cached_results_are_dropped_with_their_linked_copies(warm):
    s = spec("ft", ft={"lr": 0.02})
    first = api.submit("run", s)["id"]
    run_once(warm)
    hit = api.submit("run", s)
    assert hit["cached"] and hit["cached_from"] == first
    a, b = warm / "runs" / first / "results.json", warm / "runs" / hit["id"] / "results.json"
    assert a.samefile(b)  # the cache hit's folder holds a hard link of the same file
    good = a.read_bytes()
    with open(a, "r+b") as fh:  # damaged in place (a crash of an editor, a bad disk): both names see it
        fh.truncate(len(good) // 2)
    a.unlink()  # the user deletes the broken file; the linked copy in the cache hit's folder remains
    assert b.is_file()

    r = cli(warm, "submit", "--json", "--set", *_set_args(s["overrides"]))
    assert r.returncode == 0, r.stderr
    rerun = json.loads(r.stdout)
    assert not rerun["cached"] and rerun["state"] == "queued"  # not served from the damaged copy
    assert "damaged" in r.stderr and hit["id"] in r.stderr and "does not parse" in r.stderr
    assert not b.exists() and list(b.parent.glob(".results.json.bad-*"))  # set aside, not served again
    assert any("damaged" in e.get("message", "") for e in api.events_since(hit["id"]))
    run_once(warm, "rerun")
    assert api.get_job(rerun["id"])["state"] == "done"
    again = api.submit("run", s)
    assert again["cached"] and again["cached_from"] == rerun["id"]
    assert api.load_results(again["id"])["runs"]["ft"]["params"]["lr"] == 0.02

    # valid JSON of the wrong shape is no better: runs as a list
    bad = warm / "runs" / rerun["id"] / "results.json"
    doc = json.loads(bad.read_text())
    bad.unlink()  # atomic replace, as a careless tool would: the linked copies keep the good bytes ...
    store.atomic_write_json(bad, {**doc, "runs": list(doc["runs"])})
    p = warm / "runs" / again["id"] / "results.json"  # ... so damage that one too, through its own name
    p.unlink()
    store.atomic_write_json(p, {**doc, "runs": {"ft": {"metrics": {"forget_acc": "high"}}}})
    third = api.submit("run", s)
    assert not third["cached"] and third["state"] == "queued"

    # --no-cache runs a configuration again although valid results exist
    cancelled = api.cancel(third["id"])
    assert cancelled
    run_once(warm, "third")  # nothing queued: the worker exits at once
    other = spec("ft", ft={"lr": 0.03})
    done = api.submit("run", other)["id"]
    run_once(warm, "other")
    assert api.submit("run", other)["cached"]
    r = cli(warm, "submit", "--no-cache", "--json", "--set", *_set_args(other["overrides"]))
    assert r.returncode == 0, r.stderr
    forced = json.loads(r.stdout)
    assert forced["state"] == "queued" and not forced["cached"] and forced["id"] != done
    assert integrity_ok(warm)


def test_run_again_button_queues_the_same_configuration_bypassing_the_cache(home, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests import fixtures_store as FS
    monkeypatch.setenv("ECLAB_NO_AUTOSTART", "1")
    ids = FS.build_store(home, "full")
    done = api.get_job(ids["run"])
    assert api.submit("run", done["spec"])["cached"]  # a plain submit is answered from the cache
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    at.query_params["job"] = done["id"]
    at.switch_page("views/launch.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key=f"again_{done['id']}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    queued = [j for j in api.list_jobs(states=["queued"]) if j["hash"] == done["hash"]]
    assert len(queued) == 1 and not queued[0]["cached"]
    assert at.query_params["job"] in (queued[0]["id"], [queued[0]["id"]])


# -- 2. a paused worker that resumes never touches the finished job's files -------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_paused_worker_resuming_after_takeover_leaves_the_finished_files_alone(warm, procs):
    # a slow evaluation (many probe epochs) gives a wide window after the last cancellation check
    over = spec("ft")
    over["overrides"]["eval"] = dict(over["overrides"]["eval"], probe_epochs=200)
    job = api.submit("run", over)["id"]
    a = start_worker(warm, log_name="a", ECLAB_STALE_S=2)
    procs.append(a)
    wait_for(lambda: stage_seen(job, "eval", "ft"), 120, interval=0.05, what="the evaluation of the method")
    pause_unlocked(a, warm / "jobs.sqlite")  # paused after its last check: it writes its results when resumed
    try:
        b = start_worker(warm, log_name="b", ECLAB_STALE_S=2)
        procs.append(b)
        wait_for(lambda: api.get_job(job)["state"] == "done", 150, interval=0.2, what="the takeover to finish")
    finally:
        a.send_signal(signal.SIGCONT)
    j = api.get_job(job)
    assert j["attempts"] == 2 and f"-{b.pid}-" in j["worker"]  # finished by the second worker
    folder = warm / "runs" / job
    before = {n: ((folder / n).stat().st_ino, (folder / n).read_bytes()) for n in ("results.json", "arrays.npz")}
    wait_for(lambda: "lost (taken over" in worker_log(warm, "a"), 120, interval=0.2,
             what="the resumed worker to give up its attempt")
    after = {n: ((folder / n).stat().st_ino, (folder / n).read_bytes()) for n in ("results.json", "arrays.npz")}
    assert after == before  # same files, same bytes: the resumed attempt wrote only into its own folder
    assert len(job_events(job, "done")) == 1
    assert not list((warm / "runs").glob(f".attempt-{job}-*"))  # the dropped attempt's folder is gone
    assert (folder / "log.txt").read_text().count("started by worker") == 1  # the owner's log only
    for w in (a, b):
        assert stop(w) == 0
    assert integrity_ok(warm) and check_run_folders(warm) == []


# -- 4. corrupt or unwritable database: one readable line, and a worker that waits ---------------------
def _one_readable_line(r: subprocess.CompletedProcess, db: Path, words: str) -> str:
    assert r.returncode != 0, (r.stdout, r.stderr)
    # (warnings of libraries that also hit the file size limit may come before it)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
    assert "Traceback" not in r.stderr and len(lines) == 1 and r.stderr.rstrip().endswith(lines[0]), r.stderr
    assert str(db) in lines[0] and words in lines[0] and "kept" in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_corrupt_database_gives_one_readable_line_in_every_command(home):
    db = home / "jobs.sqlite"
    db.write_bytes(b"this is not an SQLite file\n" * 200)
    for args in (["jobs"], ["show", "j-20260101-0000-abcdef"], ["cancel", "j-20260101-0000-abcdef"],
                 ["submit", "--method", "ft"], ["jobs", "--json"]):
        line = _one_readable_line(cli(home, *args, timeout=240), db, "is corrupt")
        assert "move it aside" in line
    assert db.read_bytes().startswith(b"this is not")  # never overwritten


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_full_disk_gives_one_readable_line(home):
    api.list_jobs()  # an empty, valid job table
    limit = 16  # bytes: a full disk as SQLite sees it (the first write to the WAL file fails)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([sys.executable, "-m", "engine", "submit", "--method", "ft"], cwd=str(ROOT),
                       env=worker_env(home), capture_output=True, text=True, timeout=240, preexec_fn=small_files)
    _one_readable_line(r, home / "jobs.sqlite", "cannot be written")
    assert api.list_jobs() == [] and integrity_ok(home)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_worker_waits_on_a_corrupt_database_and_starts_once_it_is_moved_aside(warm, procs):
    db = warm / "jobs.sqlite"
    db.write_bytes(b"\x00garbage" * 512)
    w = start_worker(warm, log_name="w")
    procs.append(w)
    wait_for(lambda: worker_log(warm, "w").count("cannot start") >= 2, 60, what="the worker to report and retry")
    assert w.poll() is None, worker_log(warm, "w")  # still alive, waiting
    log = worker_log(warm, "w")
    assert "Traceback" not in log and str(db) in log and "is corrupt" in log
    aside = warm / "db-aside"
    aside.mkdir()
    for f in warm.glob("jobs.sqlite*"):
        shutil.move(str(f), aside / f.name)
    job = api.submit("run", spec("ft"))["id"]
    wait_for(lambda: api.get_job(job)["state"] == "done", 120, interval=0.2, what="the job on the new table")
    assert stop(w) == 0


def test_dashboard_shows_the_database_problem_instead_of_a_traceback(home, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("ECLAB_NO_AUTOSTART", "1")
    db = home / "jobs.sqlite"
    db.write_bytes(b"this is not an SQLite file\n" * 200)
    for page in ("overview", "launch", "compare"):
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
        at.run()
        if page != "overview":
            at.switch_page(f"views/{page}.py")
            at.run()
        assert not at.exception, [e.value for e in at.exception]
        errors = [str(e.value) for e in at.error]
        assert any(str(db) in e and "is corrupt" in e and "move it aside" in e for e in errors), errors


# -- 6. SIGTERM to serve; SIGTERM and cancel during the UMAP stage --------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as fh:
            out += [int(x) for x in fh.read().split()]
    return out


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc to find the server's children")
def test_sigterm_to_serve_stops_streamlit_and_its_worker(home):
    # a comparison already counts as there: serve queues no default comparison (no training here)
    with jobs._db() as con, jobs.transaction(con):
        con.execute("INSERT INTO jobs (id, kind, state, spec, hash, created) VALUES "
                    "('j-20260101-0000-000001', 'compare', 'done', '{}', 'x', 0)")
    port = _free_port()
    log = open(home / "serve.log", "ab")
    serve = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--port", str(port)], cwd=str(ROOT),
                             env=worker_env(home), stdout=log, stderr=subprocess.STDOUT)
    kids: list[int] = []

    def both_started() -> bool:
        kids[:] = _children(serve.pid)
        return len(kids) >= 2

    try:
        wait_for(both_started, 120, interval=0.3, what="serve to start its worker and streamlit")
        wait_for(lambda: _port_open(port), 240, interval=0.3, what="the dashboard to listen")
        wait_for(lambda: api.worker_alive(), 240, interval=0.3, what="serve's worker to register")
        assert len(kids) == 2, kids  # the worker and streamlit
        t0 = time.monotonic()
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
        print(f"serve exited {time.monotonic() - t0:.1f} s after SIGTERM")
        for pid in kids:
            wait_for(lambda: not jobs._pid_alive(pid), 10, what=f"child {pid} to exit")
        assert not _port_open(port)
        with socket.socket() as s:  # the port is free again
            s.bind(("127.0.0.1", port))
        assert not api.worker_alive()
    finally:  # whatever happened, leave no process of this test behind (by their own pids)
        stop(serve, signal.SIGTERM, timeout=30)
        for pid in kids:
            if jobs._pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
    assert "Traceback" not in (home / "serve.log").read_text(errors="replace")


def _umap_spec(seed: int) -> dict:
    s = spec("ft")
    s["overrides"]["eval"] = dict(s["overrides"]["eval"], umap=True, embed_per_class=20)
    s["overrides"]["seed"] = seed
    return s


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cancel_and_sigterm_during_umap_take_effect_within_seconds(warm, procs):
    # a fresh numba cache: the first UMAP in the worker compiles for many seconds, inside numba
    first = api.submit("run", _umap_spec(0))["id"]
    w = start_worker(warm, log_name="w", NUMBA_CACHE_DIR=warm / "numba-fresh")
    procs.append(w)
    wait_for(lambda: stage_seen(first, "embed"), 150, interval=0.1, what="the first job's embedding")
    time.sleep(1.0)  # well inside UMAP
    t0 = time.monotonic()
    assert api.cancel(first)
    wait_for(lambda: api.get_job(first)["state"] in jobs.FINAL, 10, interval=0.1, what="the cancel to take effect")
    print(f"cancelled {time.monotonic() - t0:.2f} s after the request, during UMAP")
    assert api.get_job(first)["state"] == "cancelled"
    assert not (warm / "runs" / first / "results.json").exists()

    second = api.submit("run", _umap_spec(1))["id"]
    wait_for(lambda: stage_seen(second, "embed"), 150, interval=0.1, what="the second job's embedding")
    time.sleep(1.0)
    t0 = time.monotonic()
    w.send_signal(signal.SIGTERM)
    wait_for(lambda: api.get_job(second)["state"] != "running", 5, interval=0.1, what="the job to be requeued")
    took = time.monotonic() - t0
    w.wait(30)  # then the process exits by itself (interpreter shutdown is slow on a loaded machine)
    print(f"requeued {took:.2f} s after SIGTERM during UMAP; worker exited after {time.monotonic() - t0:.1f} s")
    assert w.returncode == 0, worker_log(warm, "w")  # a clean exit, not a SIGKILL
    j = api.get_job(second)
    assert j["state"] == "queued" and j["attempts"] == 0, j  # requeued, no attempt spent
    assert "was stopped" in job_events(second, "requeued")[0]["message"]
    assert not (warm / "runs" / second / "results.json").exists()
    assert integrity_ok(warm)
