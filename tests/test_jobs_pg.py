"""The job table on PostgreSQL (ECLAB_JOBS_URL): workers on "two machines" (two stores, one database).

Each test gets its own empty database on the test server (pg_helpers). The two machines are two
ECLAB_HOME folders on this host that share nothing but the job database, as two lab machines would:
a job's results must be readable from the store where it did not run.
"""
from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import threading

import pytest

from engine import jobs
from engine.jobs import pg
from jobs_helpers import LONG, ROOT, seed_cache, spec, start_worker, stop, wait_for, worker_env
from pg_helpers import fresh_database, pg_url  # noqa: F401  (a fixture)

STALE = "3"


@pytest.fixture
def jobs_url(pg_url, monkeypatch):  # noqa: F811
    with fresh_database(pg_url) as url:
        monkeypatch.setenv("ECLAB_JOBS_URL", url)
        yield url


@pytest.fixture(scope="module")
def warm_cache(tmp_path_factory):
    """Base models of the tiny digits scenario, built once (no job table involved)."""
    home = tmp_path_factory.mktemp("pg-warm")
    code = ("import json, sys; from engine import runner, store; "
            "runner.execute('run', json.loads(sys.argv[1]), store.run_dir('warm', create=True))")
    env = worker_env(home)
    env.pop("ECLAB_JOBS_URL", None)
    res = subprocess.run([sys.executable, "-c", code, json.dumps(spec("ft"))], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return home


@pytest.fixture
def machines(tmp_path, warm_cache, monkeypatch):
    """Two stores ("machine A" and "machine B") with warm caches; the test process reads as A."""
    homes = []
    for name in ("a", "b"):
        h = tmp_path / name
        h.mkdir()
        seed_cache(warm_cache, h)
        homes.append(h)
    monkeypatch.setenv("ECLAB_HOME", str(homes[0]))
    return homes


def _done_events(job_id: str) -> int:
    return sum(1 for e in jobs.events_since(job_id) if e.get("type") == "job" and e.get("state") == "done")


def _ran_in(home, job_id: str) -> bool:
    """The job's weights are in this store: it ran here (results copied from the database bring none)."""
    return any((home / "runs" / job_id).glob("weights__*.safetensors"))


def test_two_machines_one_worker_killed_every_job_done_once_and_readable_everywhere(jobs_url, machines, monkeypatch):
    a, b = machines
    env = {"ECLAB_JOBS_URL": jobs_url, "ECLAB_STALE_S": STALE}
    early = [jobs.submit("run", spec(m))["id"] for m in ("ft", "ga")]
    workers = {"a": start_worker(a, log_name="a", **env)}
    try:
        wait_for(lambda: all(jobs.get_job(j)["state"] == "done" for j in early), 120, interval=0.3,
                 what="machine A to run the first jobs")
        long_job = jobs.submit("run", spec("ft", **LONG))["id"]
        later = [jobs.submit("run", spec(m, **{m: {"lr": 0.01 + i / 1000}}))["id"]
                 for i, m in enumerate(["ft", "ga", "ft"])]
        workers["b"] = start_worker(b, log_name="b", **env)
        wait_for(lambda: jobs.get_job(long_job)["progress"] > 0.05, 120, what="the long job to progress")
        pid = int(jobs.get_job(long_job)["worker"].split("-")[-2])
        victim = next(name for name, proc in workers.items() if proc.pid == pid)
        workers[victim].send_signal(signal.SIGKILL)  # that machine dies mid-job
        workers[victim].wait(10)
        # the other finds the job (the process is gone from this host at once; on another host after
        # ECLAB_STALE_S without heartbeats) and runs it again, once
        ids = early + [long_job] + later
        wait_for(lambda: all(jobs.get_job(j)["state"] in jobs.FINAL for j in ids), 300,
                 interval=0.5, what="every job to finish")
    finally:
        for proc in workers.values():
            stop(proc)
    final = {j: jobs.get_job(j) for j in ids}
    assert {j: f["state"] for j, f in final.items()} == {j: "done" for j in ids}
    assert all(_done_events(j) == 1 for j in ids)  # none ran twice to the end
    assert final[long_job]["attempts"] == 2 and all(final[j]["attempts"] == 1 for j in ids if j != long_job)
    assert any(e.get("state") == "requeued" for e in jobs.events_since(long_job))
    survivor = b if victim == "a" else a
    assert all(_ran_in(a, j) for j in early) and _ran_in(survivor, long_job)
    # every result is readable from both stores: what ran on one comes to the other through the database
    for home in (a, b):
        monkeypatch.setenv("ECLAB_HOME", str(home))
        for j in ids:
            res = jobs.load_results(j)
            assert res is not None and set(res["runs"]) >= {"original", "retrain"}, (home, j)
            assert jobs.load_arrays(j)  # the features the pages draw
    with jobs._db() as con:
        rows = pg.file_rows(con, long_job)
    by_name = {r["name"]: r for r in rows}
    assert by_name["results.json"]["stored"] and by_name["arrays.npz"]["stored"]
    weights = [r for r in rows if r["name"].endswith(".safetensors")]
    assert weights and not any(r["stored"] for r in weights)  # weights stay where they were made
    assert all(r["path"].startswith(str(survivor)) for r in weights)


def test_claims_skip_rows_another_worker_holds(jobs_url, machines):
    first = jobs.submit("run", spec("ft"))["id"]
    second = jobs.submit("run", spec("ga"))["id"]
    holder = pg.PgConnection(jobs_url)  # another worker, in the middle of its claim
    holder.execute("BEGIN ROWS")
    held = holder.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, rowid LIMIT 1"
                          " FOR UPDATE SKIP LOCKED").fetchone()["id"]
    assert held == first
    got = {}
    t = threading.Thread(target=lambda: got.update(job=jobs.Worker(handle_signals=False, warm=False).claim()))
    t.start()
    t.join(30)
    blocked = t.is_alive()
    holder.execute("ROLLBACK")
    t.join(30)
    assert not blocked, "a claim waited for a row another worker holds"
    assert got["job"]["id"] == second and jobs.get_job(second)["state"] == "running"
    assert jobs.get_job(first)["state"] == "queued"


def test_cancel_waits_for_a_claim_in_flight_and_never_cancels_a_running_job_silently(jobs_url, machines):
    job = jobs.submit("run", spec("ft"))["id"]
    claimer = pg.PgConnection(jobs_url)
    claimer.execute("BEGIN ROWS")
    claimer.execute("SELECT id FROM jobs WHERE id = ? FOR UPDATE", (job,))
    done = {}
    t = threading.Thread(target=lambda: done.update(ok=jobs.cancel(job)))
    t.start()
    probe = pg.PgConnection(jobs_url)  # not the claimer's: activity is read once per transaction
    wait_for(lambda: probe.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                                     "AND wait_event_type = 'Lock'").fetchone(), 30, what="cancel to wait for the row")
    claimer.execute("UPDATE jobs SET state = 'running', worker = 'w-x', attempts = 1 WHERE id = ?", (job,))
    claimer.execute("COMMIT")
    t.join(30)
    row = jobs.get_job(job)
    assert done["ok"] and row["state"] == "running" and row["cancel_requested"]  # a flag, not a lost job


def test_a_bad_or_unreachable_jobs_url_is_one_line_naming_it_and_the_fix(tmp_path):
    for url, words in (("postgresql://postgres:secret@127.0.0.1:1/none", ("cannot be reached", "ECLAB_JOBS_URL")),
                       ("mysql://x@y/z", ("is not a PostgreSQL URL", "unset it"))):
        env = worker_env(tmp_path, ECLAB_JOBS_URL=url)
        res = subprocess.run([sys.executable, "-m", "engine", "jobs"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 1, res.stderr
        err = res.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert all(w in err for w in words) and "secret" not in err, err


def test_a_grid_on_two_machines_one_killed_mid_cell_every_cell_done_once_and_readable_everywhere(
        jobs_url, machines, monkeypatch):
    """Issue 24's test: one grid, a worker on each machine, the one running a cell SIGKILLed mid-job;
    the other takes that cell over, every cell ends done exactly once, and the grid reads the same from
    both machines (what ran on one reaches the other through the database)."""
    from engine import grid
    from test_grid import GRID_TINY
    a, b = machines
    slow = copy.deepcopy(GRID_TINY)
    slow["methods"]["ft"]["epochs"] = LONG["ft"]["epochs"]  # each cell lasts long enough to die in
    g = grid.submit_grid("digits", "3:0,5:1,8:0", methods=["ft", "ga"], overrides=slow)  # from machine A
    env = {"ECLAB_JOBS_URL": jobs_url, "ECLAB_STALE_S": STALE}
    workers = {"a": start_worker(a, log_name="a", **env), "b": start_worker(b, log_name="b", **env)}
    cells = [c["job_id"] for c in grid.get_grid(g["id"])["cells"]]
    try:
        def running_mid_job():
            for j in cells:
                job = jobs.get_job(j)
                if job["state"] == "running" and job["worker"] and 0.3 < job["progress"] < 0.9:
                    return j, job
            return None
        victim_job, job = wait_for(running_mid_job, 300, interval=0.2, what="a cell to be mid-job")
        pid = int(job["worker"].split("-")[-2])
        victim = next(name for name, proc in workers.items() if proc.pid == pid)
        workers[victim].send_signal(signal.SIGKILL)  # that machine dies mid-cell
        workers[victim].wait(10)
        wait_for(lambda: grid.get_grid(g["id"])["state"] in ("done", "failed", "cancelled", "partial"), 600,
                 interval=0.5, what="the grid to finish on the other machine")
    finally:
        for proc in workers.values():
            stop(proc)
    survivor = b if victim == "a" else a
    final = {j: jobs.get_job(j) for j in cells}
    assert {j: f["state"] for j, f in final.items()} == {j: "done" for j in cells}
    assert all(_done_events(j) == 1 for j in cells)  # no cell ran twice to the end
    assert final[victim_job]["attempts"] == 2 and all(final[j]["attempts"] == 1 for j in cells if j != victim_job)
    assert _ran_in(survivor, victim_job)
    tables = {}
    for home in (a, b):  # the same grid, read on each machine
        monkeypatch.setenv("ECLAB_HOME", str(home))
        tables[home.name] = table = grid.grid_table(g["id"])
        assert table["state"] == "done" and [c["scenario"] for c in table["cells"]] == ["3:0", "5:1", "8:0"]
        for cell in table["cells"]:
            assert set(cell["rows"]) >= {"original", "retrain", "ft", "ga"}
            assert cell["rows"]["ft"]["forget_acc"] == jobs.load_results(cell["job_id"])["runs"]["ft"]["metrics"][
                "forget_acc"]
        assert {m: c["of"] for m, c in table["per_method"].items()} == {"ft": 3, "ga": 3}
        assert len(grid.grid_csv(table).strip().splitlines()) == 1 + 3 * 2
    assert grid.grid_csv(tables["a"]) == grid.grid_csv(tables["b"])
