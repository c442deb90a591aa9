"""The job system: SQLite job table, worker processes, cancellation, crash recovery, cache hits.

Process-level tests start real `python -m engine worker` subprocesses on a private ECLAB_HOME each
and run real (tiny) digits jobs through engine.runner; the base models are built once per session
and copied into every home. Unit tests at the top use an in-process fake runner for the edge cases.
"""
from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from engine import api, cachecheck, jobs, store
from engine.results import Metrics
from engine.cli import build_parser
from engine.cli import main as cli_main
from engine.config import ConfigError, stable_hash
from engine.events import DivergenceError

from jobs_helpers import (LONG, TINY, check_run_folders, cli, integrity_ok, seed_cache, spec, start_worker, stop,
                          wait_for, worker_log)


# -- fixtures --------------------------------------------------------------------------------------
@pytest.fixture
def home(tmp_path, monkeypatch):
    h = (tmp_path / "home").resolve()
    h.mkdir()
    monkeypatch.setenv("ECLAB_HOME", str(h))
    return h


@pytest.fixture
def procs():
    """Worker subprocesses of one test; any still running at the end are stopped (by their own pid)."""
    started = []
    yield started
    for p in started:
        stop(p, signal.SIGKILL if p.poll() is None else signal.SIGTERM, timeout=10)


@pytest.fixture(scope="session")
def warm_home(tmp_path_factory):
    """A home whose cache holds the tiny scenario's base models (original, retrain, aux, references),
    built by a real worker."""
    h = tmp_path_factory.mktemp("warm").resolve()
    old = os.environ.get("ECLAB_HOME")
    os.environ["ECLAB_HOME"] = str(h)
    try:
        job = api.submit("run", spec("ec"))
        w = start_worker(h, "--once")
        assert w.wait(120) == 0, worker_log(h)
        assert api.get_job(job["id"])["state"] == "done", (api.get_job(job["id"]), worker_log(h))
    finally:
        if old is None:
            os.environ.pop("ECLAB_HOME", None)
        else:
            os.environ["ECLAB_HOME"] = old
    return h


@pytest.fixture
def warm(home, warm_home):
    seed_cache(warm_home, home)
    return home


def epochs_of(job_id, run="ft", after_seq=0):
    return [e for e in api.events_since(job_id, after_seq) if e.get("type") == "epoch" and e.get("run") == run]


def job_events(job_id, state):
    return [e for e in api.events_since(job_id) if e.get("type") == "job" and e.get("state") == state]


# -- unit tests with a fake runner (in-process) ----------------------------------------------------
def fake_results(kind: str, do: str) -> dict:
    """A cache hit is served only from results that pass the basic schema: one run with its metrics."""
    return {"kind": kind, "runs": {"ft": {"metrics": dict.fromkeys(Metrics.model_fields)}}, "do": do}


class FakeRunner:
    """prepare/execute with the runner's signatures; spec["do"] says what execute does."""
    JOB_KINDS = ("run", "compare", "base", "embed")

    @staticmethod
    def prepare(kind, spec):
        if kind == "embed":
            return {"job": store.check_id(spec["job"]), "layer": spec["layer"]}, stable_hash({"kind": kind, **spec})
        if spec.get("bad"):
            raise ConfigError("ec.tau", "must be > 0")
        return {"config": dict(spec)}, stable_hash({"kind": kind, **spec})

    @staticmethod
    def execute(kind, spec, run_dir, ctx):
        do = spec["config"].get("do", "ok")
        for i in range(int(spec["config"].get("epochs", 2))):
            ctx.check()
            ctx.emit({"type": "epoch", "run": "ft", "epoch": i + 1, "epochs": 2, "losses": {"loss": 1.0},
                      "forget_acc": 0.5, "retain_acc": 0.9, "fraction": (i + 1) / 2})
            if do == "wait":
                time.sleep(0.05)
        if do == "fail":
            raise DivergenceError("ga: loss became nan at epoch 2, step 3; lower methods.ga.lr")
        if do == "boom":
            raise RuntimeError("line one\nline two")
        store.atomic_write_json(run_dir / "results.json", fake_results(kind, do))
        return {"ok": True}


@pytest.fixture
def fake(home, monkeypatch):
    monkeypatch.setattr(jobs, "_runner", lambda: FakeRunner)
    return FakeRunner


def test_ids_and_validation(fake):
    job = api.submit("run", {"do": "ok"})
    assert re.fullmatch(r"j-\d{8}-\d{4}-[0-9a-f]{6}", job["id"])
    assert store.check_id(job["id"]) == job["id"]
    assert job["state"] == "queued" and job["spec"] == {"config": {"do": "ok"}} and not job["cached"]
    json.dumps(job)  # plain JSON-able
    for bad in ("../etc", "a/b", "", "x" * 65):
        with pytest.raises(ValueError):
            api.get_job(bad)
        with pytest.raises(ValueError):
            api.cancel(bad)
    with pytest.raises(ValueError):
        api.load_arrays(job["id"], "../jobs.sqlite")
    with pytest.raises(ValueError, match="kind"):
        api.submit("nonsense", {})
    with pytest.raises(ConfigError) as err:
        api.submit("run", {"bad": True})
    assert err.value.option == "ec.tau"
    assert [j["id"] for j in api.list_jobs()] == [job["id"]]
    assert api.get_job("j-20000101-0000-000000") is None


def test_submit_flags_build_the_spec():
    args = build_parser().parse_args(["submit", "--method", "ec", "--forget-classes", "3,5", "--seed", "4", "--set",
                                      "ec.tau=0.5", "ec.weights=1,0.5,0.5,1", "--set", "train.epochs=3"])
    assert jobs.build_spec(args) == {"preset": "digits", "overrides": {
        "ec": {"tau": 0.5, "weights": [1, 0.5, 0.5, 1]}, "train": {"epochs": 3}, "method": "ec",
        "forget": {"classes": [3, 5]}, "seed": 4}}
    args = build_parser().parse_args(["submit", "--kind", "compare", "--methods", "ec,ft", "--forget-random", "0.1"])
    assert jobs.build_spec(args) == {"preset": "digits", "overrides": {"forget": {"random": 0.1}},
                                     "methods": ["ec", "ft"]}
    with pytest.raises(ConfigError) as err:
        jobs.build_spec(build_parser().parse_args(["submit", "--forget-classes", "3,x"]))
    assert err.value.option == "forget.classes"
    with pytest.raises(SystemExit):  # argparse: --forget-classes and --forget-random exclude each other
        build_parser().parse_args(["submit", "--forget-classes", "3", "--forget-random", "0.1"])


def test_duplicate_submission_returns_the_queued_job(fake):
    a = api.submit("run", {"do": "ok"})
    b = api.submit("run", {"do": "ok"})
    assert b["id"] == a["id"] and b["duplicate_of"] == a["id"]
    assert len(api.list_jobs()) == 1
    c = api.submit("compare", {"do": "ok"})  # same spec, other kind: a different job
    assert c["id"] != a["id"]


def test_cancel_queued_job(fake):
    job = api.submit("run", {"do": "ok"})
    assert api.cancel(job["id"]) is True
    j = api.get_job(job["id"])
    assert j["state"] == "cancelled" and j["finished"]
    assert api.cancel(job["id"]) is False  # already final
    assert jobs.Worker(handle_signals=False).claim() is None


def test_claims_are_exclusive_across_threads(fake):
    ids = {api.submit("run", {"do": "ok", "n": i})["id"] for i in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer():
        w = jobs.Worker(handle_signals=False)
        w.register()
        while (job := w.claim()) is not None:
            with lock:
                claimed.append(job["id"])

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    with jobs._db() as con:
        assert con.execute("SELECT COUNT(*) FROM jobs WHERE state = 'running' AND attempts = 1").fetchone()[0] == 40


def test_worker_in_process_runs_fails_and_goes_on(fake):
    a = api.submit("run", {"do": "fail"})
    b = api.submit("run", {"do": "boom"})
    c = api.submit("run", {"do": "ok"})
    jobs.Worker(handle_signals=False, warm=False).run(once=True)
    ja, jb, jc = (api.get_job(x["id"]) for x in (a, b, c))
    assert ja["state"] == "failed"
    assert ja["error"] == "DivergenceError: ga: loss became nan at epoch 2, step 3; lower methods.ga.lr"
    assert jb["state"] == "failed" and jb["error"] == "RuntimeError: line one line two"  # one line
    assert jc["state"] == "done" and jc["progress"] == 1.0 and jc["summary"] == {"ok": True}
    log = (Path(ja["run_dir"]) / "log.txt").read_text()
    assert "Traceback" in log and "DivergenceError" in log
    assert api.load_results(c["id"])["do"] == "ok"
    assert api.load_results(a["id"]) is None
    assert api.workers() == []  # unregistered on exit


def test_cache_hit_and_list_results(fake):
    a = api.submit("run", {"do": "ok"})
    jobs.Worker(handle_signals=False, warm=False).run(once=True)
    b = api.submit("run", {"do": "ok"})
    assert b["cached"] and b["state"] == "done" and b["cached_from"] == a["id"] and b["id"] != a["id"]
    c = api.submit("run", {"do": "ok"})
    assert c["cached_from"] == a["id"]  # the job that really ran, not the previous cache hit
    assert api.load_results(b["id"]) == api.load_results(a["id"])
    assert (Path(b["run_dir"]) / "results.json").samefile(Path(a["run_dir"]) / "results.json")
    # cache hits of a listed job are not listed twice
    assert [j["id"] for j, _ in api.list_results()] == [a["id"]]
    # loading follows cached_from when the copy is missing
    (Path(b["run_dir"]) / "results.json").unlink()
    assert api.load_results(b["id"])["do"] == "ok"
    # the job that ran lost its folder: a cache hit still finds the files in a linked copy
    import shutil
    shutil.rmtree(a["run_dir"])
    d = api.submit("run", {"do": "ok"})
    assert d["cached"] and d["cached_from"] == c["id"] and api.load_results(d["id"])["do"] == "ok"
    ev = api.events_since(b["id"])
    assert ev[0]["message"] == f"cache hit: same configuration as job {a['id']}" and ev[0]["seq"] == 1


def test_embed_needs_a_job_with_results_and_record_external(fake, tmp_path):
    with pytest.raises(ConfigError) as err:
        api.submit("embed", {"job": "j-20000101-0000-000000", "layer": "block2"})
    assert err.value.option == "job" and api.list_jobs() == []
    # a run that happened outside the queue (a sweep trial) becomes a done job, and a cache source
    folder = tmp_path / "trial"
    folder.mkdir()
    store.atomic_write_json(folder / "results.json", fake_results("run", "ok"))
    rec = api.record_external("run", {"do": "ok"}, folder, {"ok": 1})
    assert rec["state"] == "done" and rec["summary"] == {"ok": 1}
    assert api.load_results(rec["id"])["do"] == "ok"
    hit = api.submit("run", {"do": "ok"})
    assert hit["cached"] and hit["cached_from"] == rec["id"]
    emb = api.submit("embed", {"job": hit["id"], "layer": "block2"})
    assert emb["state"] == "queued"
    inside = store.run_dir("swref-abc", create=True)  # a folder of the run store keeps its name
    store.atomic_write_json(inside / "results.json", {"kind": "run", "runs": {}, "do": "in"})
    rec2 = api.record_external("run", {"do": "in"}, inside)
    assert rec2["id"] == "swref-abc" and api.load_results("swref-abc")["do"] == "in"
    with pytest.raises(ValueError, match="no results.json"):
        api.record_external("run", {"do": "other"}, tmp_path)


def _running_row(job_id, worker, host, pid, heartbeat, attempts):
    with jobs._db() as con, jobs.transaction(con):
        con.execute("UPDATE jobs SET state = 'running', worker = ?, heartbeat = ?, started = ?, attempts = ? "
                    "WHERE id = ?", (worker, heartbeat, heartbeat, attempts, job_id))
        con.execute("INSERT OR REPLACE INTO workers (id, pid, host, started, heartbeat) VALUES (?, ?, ?, ?, ?)",
                    (worker, pid, host, heartbeat, heartbeat))


def test_stale_heartbeat_requeues_once_then_fails(fake):
    job = api.submit("run", {"do": "ok"})
    now = time.time()
    # a worker on another machine, silent for 5 s: not stale yet with the 15 s default
    _running_row(job["id"], "w-far", "elsewhere", 1, now - 5, 1)
    assert jobs.recover_stale() == []
    _running_row(job["id"], "w-far", "elsewhere", 1, now - 100, 1)
    assert jobs.recover_stale(by="w-me") == [(job["id"], "queued")]
    j = api.get_job(job["id"])
    assert j["state"] == "queued" and j["worker"] is None and j["attempts"] == 1
    assert "requeued after worker w-far stopped heartbeating" in job_events(job["id"], "requeued")[0]["message"]
    _running_row(job["id"], "w-far2", "elsewhere", 1, now - 40, 2)
    assert jobs.recover_stale() == [(job["id"], "failed")]
    j = api.get_job(job["id"])
    assert j["state"] == "failed"
    assert re.fullmatch(r"worker w-far2 stopped \(no heartbeat for 4\d s\): killed or out of memory", j["error"])


def test_dead_process_on_this_host_is_recovered_at_once(fake):
    job = api.submit("run", {"do": "ok"})
    dead = 2 ** 22 + 12345  # above the default pid_max: no such process
    _running_row(job["id"], "w-dead", socket.gethostname(), dead, time.time(), 1)
    assert jobs.recover_stale() == [(job["id"], "queued")]
    assert all(w["id"] != "w-dead" for w in api.workers())  # its worker row is pruned
    other = api.submit("run", {"do": "ok", "n": 2})
    _running_row(other["id"], "w-dead2", socket.gethostname(), dead, time.time(), 1)
    assert api.cancel(other["id"]) is True  # flag set; then the worker dies: cancelled, not requeued
    assert jobs.recover_stale() == [(other["id"], "cancelled")]


def test_progress_is_overall_and_monotonic():
    p = jobs.Progress(n_methods=2)
    seq = [{"type": "stage", "stage": "original", "fraction": 0.5},
           {"type": "stage", "stage": "original", "fraction": 1.0},
           {"type": "stage", "stage": "retrain", "fraction": 1.0},
           {"type": "stage", "stage": "method", "fraction": 0.0, "name": "ft"},
           {"type": "epoch", "fraction": 0.5},
           {"type": "stage", "stage": "method", "fraction": 0.5, "name": "ec"},
           {"type": "step", "fraction": 0.5},
           {"type": "stage", "stage": "eval", "fraction": 0.5},
           {"type": "epoch", "fraction": 0.1},  # relearning inside eval: never goes back
           {"type": "stage", "stage": "embed", "fraction": 0.0}]
    vals = [p.update(e) for e in seq]
    span = jobs.Progress.SPANS
    (o0, o1), (_, r1), (m0, m1) = span["original"], span["retrain"], span["method"]
    assert vals[0] == pytest.approx(o0 + 0.5 * (o1 - o0)) and vals[2] == pytest.approx(r1)
    assert vals[4] == pytest.approx(m0 + (m1 - m0) * 0.25) and vals[6] == pytest.approx(m0 + (m1 - m0) * 0.75)
    assert all(b >= a for a, b in zip(vals, vals[1:])) and vals[-1] == pytest.approx(span["embed"][0])
    assert p.update({"type": "log", "message": "x"}) is None


def test_progress_moves_through_calibration_and_the_noise_references():
    """The bar sat at 90% for minutes while the second original and the second retrain trained (they had
    no share of it), and did not move while a method was calibrated."""
    p = jobs.Progress(n_methods=2)
    span = jobs.Progress.SPANS
    m0, m1 = span["method"]
    p.update({"type": "stage", "stage": "method", "fraction": 0.0, "name": "ft"})
    cal = [p.update({"type": "stage", "stage": "calibrate", "name": "ft", "fraction": i / 4}) for i in range(1, 4)]
    assert cal == pytest.approx([m0 + (m1 - m0) * i / 8 for i in range(1, 4)])  # ft's half of the span
    assert p.update({"type": "epoch", "fraction": 1.0}) is None  # a candidate's epochs are not progress
    assert p.update({"type": "stage", "stage": "method", "fraction": 0.5, "name": "ec"}) == pytest.approx(
        m0 + (m1 - m0) / 2)
    assert p.update({"type": "epoch", "fraction": 0.5}) == pytest.approx(m0 + (m1 - m0) * 0.75)  # not calibrating
    noise = [p.update({"type": "stage", "stage": s, "name": s, "fraction": f})
             for s in ("original_seed2", "retrain_seed2") for f in (0.5, 1.0)]
    lo, hi = span["original_seed2"][0], span["retrain_seed2"][1]
    assert all(b > a for a, b in zip(noise, noise[1:])) and lo < noise[0] and noise[-1] == pytest.approx(hi)


def test_cancel_flag_is_read_by_the_context(fake):
    job = api.submit("run", {"do": "wait", "epochs": 1000})
    w = jobs.Worker(handle_signals=False, warm=False)
    w.register()

    def cancel_soon():
        wait_for(lambda: len(api.events_since(job["id"])) > 3, 20)
        api.cancel(job["id"])

    t = threading.Thread(target=cancel_soon)
    t.start()
    claimed = w.claim()
    w.run_job(claimed)
    t.join()
    j = api.get_job(job["id"])
    assert j["state"] == "cancelled" and j["cancel_requested"]
    assert len(epochs_of(job["id"])) < 30  # stopped within a few steps of the flag


_STUCK_WORKER = """
import sys, time
from engine import jobs
class Stuck:
    JOB_KINDS = ("run", "compare", "base", "embed")
    @staticmethod
    def execute(kind, spec, run_dir, ctx):
        ctx.emit({"type": "log", "message": "busy without checking"})
        time.sleep(120)  # never calls ctx.check()
jobs._runner = lambda: Stuck
sys.exit(jobs.run_worker(once=True, poll=0.2))
"""


@pytest.mark.timeout(60)
def test_sigterm_interrupts_a_job_that_never_checks(fake, procs):
    import subprocess
    import sys
    from jobs_helpers import ROOT, worker_env
    job = api.submit("run", {"do": "ok"})["id"]
    home = Path(os.environ["ECLAB_HOME"])
    w = subprocess.Popen([sys.executable, "-c", _STUCK_WORKER], cwd=str(ROOT), env=worker_env(home))
    procs.append(w)
    wait_for(lambda: any(e.get("message") == "busy without checking" for e in api.events_since(job)), 30,
             what="the job to start")
    t0 = time.monotonic()
    w.send_signal(signal.SIGTERM)
    assert w.wait(20) == 0
    elapsed = time.monotonic() - t0
    assert elapsed > jobs.STOP_GRACE_S - 0.5  # it waited for the job to reach a check first
    j = api.get_job(job)
    assert j["state"] == "queued" and j["attempts"] == 0 and j["worker"] is None
    assert api.workers() == []


# -- process-level tests with the real runner on digits ---------------------------------------------
@pytest.mark.timeout(150)
def test_sigkill_mid_job_requeues_once_then_fails_cleanly(warm, procs):
    job = api.submit("run", spec("ft", **LONG))["id"]
    a = start_worker(warm, log_name="a")
    procs.append(a)
    wait_for(lambda: len(epochs_of(job)) >= 3, 90, what="epochs of the first attempt")
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    assert api.get_job(job)["state"] == "running"  # nobody knows yet
    assert (warm / "runs" / job / "log.txt").exists()  # the partial folder of attempt 1

    b = start_worker(warm, log_name="b")  # finds the dead worker's job at start, reruns it
    procs.append(b)
    wait_for(lambda: api.get_job(job)["attempts"] == 2 and api.get_job(job)["state"] == "running", 60,
             what="the requeued job to be claimed again")
    requeued = job_events(job, "requeued")
    assert len(requeued) == 1 and "stopped heartbeating" in requeued[0]["message"]
    wait_for(lambda: len(epochs_of(job, after_seq=requeued[0]["seq"])) >= 3, 60, what="epochs of attempt 2")
    log = (warm / "runs" / job / "log.txt").read_text()
    assert "attempt 2" in log and "attempt 1" not in log  # the partial folder was cleared before the rerun
    b.send_signal(signal.SIGKILL)
    b.wait(10)

    c = start_worker(warm, "--once", log_name="c")
    procs.append(c)
    assert c.wait(60) == 0, worker_log(warm, "c")
    j = api.get_job(job)
    assert j["state"] == "failed", j
    assert re.fullmatch(r"worker w-\S+ stopped \(no heartbeat for \d+ s\): killed or out of memory", j["error"])
    assert integrity_ok(warm)
    assert check_run_folders(warm) == []
    assert not list((warm / "runs").glob(".trash-*"))


@pytest.mark.timeout(150)
def test_two_workers_run_twenty_jobs_exactly_once(warm, procs):
    w1 = start_worker(warm, log_name="w1")
    w2 = start_worker(warm, log_name="w2")
    procs += [w1, w2]
    wait_for(lambda: len(api.workers()) == 2, 60, what="both workers to register")
    ids = [api.submit("run", spec("ft", ft={"lr": round(0.004 * (i + 1), 4)}))["id"] for i in range(20)]
    assert len(set(ids)) == 20
    wait_for(lambda: all(j["state"] in jobs.FINAL for j in api.list_jobs()), 120, interval=0.5,
             what="all 20 jobs to finish")
    done = api.list_jobs()
    assert [j["state"] for j in done] == ["done"] * 20, [(j["id"], j["state"], j["error"]) for j in done]
    for job_id in ids:
        assert len(job_events(job_id, "started")) == 1
        log = (warm / "runs" / job_id / "log.txt").read_text()
        assert log.count("started by worker") == 1
        assert api.load_results(job_id)["runs"]["ft"]["params"]["lr"] > 0
    # an embed job (PCA here: these runs have eval.umap off) on one of them, in the same workers
    emb = api.submit("embed", {"job": ids[0], "layer": "block2"})["id"]
    wait_for(lambda: api.get_job(emb)["state"] in jobs.FINAL, 60, what="the embed job")
    assert api.get_job(emb)["state"] == "done", api.get_job(emb)
    coords = api.load_arrays(emb, "embed__block2.npz")
    assert coords["umap__ft"].shape[1] == 2
    done = [j for j in api.list_jobs() if j["kind"] == "run"]
    per_worker = {}
    for j in done:
        per_worker[j["worker"]] = per_worker.get(j["worker"], 0) + 1
    print("jobs per worker:", per_worker)
    assert len(per_worker) == 2  # both workers took part
    for w in (w1, w2):
        assert stop(w) == 0
    assert integrity_ok(warm)


@pytest.mark.timeout(120)
def test_cancel_running_job_stops_it_and_worker_goes_on(warm, procs):
    long_job = api.submit("run", spec("ft", **LONG))["id"]
    next_job = api.submit("run", spec("ft"))["id"]
    w = start_worker(warm, log_name="w")
    procs.append(w)
    wait_for(lambda: len(epochs_of(long_job)) >= 3, 90, what="progress events")
    assert api.get_job(long_job)["progress"] > 0
    t0 = time.monotonic()
    assert api.cancel(long_job) is True
    wait_for(lambda: api.get_job(long_job)["state"] == "cancelled", 15, what="the job to stop")
    elapsed = time.monotonic() - t0
    asked = [e for e in api.events_since(long_job) if e.get("message") == "cancel requested"][0]["seq"]
    # The worker reads the flag at most CANCEL_CACHE_S late, so the epochs written after the request are the
    # one in progress, the next, and as many as fit into that cache time at the pace measured before it
    # (a fixed count failed in CI where epochs ran faster than 0.1 s).
    times = [e["time"] for e in epochs_of(long_job) if e["seq"] < asked]
    fastest = min(b - a for a, b in zip(times, times[1:]))
    allowed = 2 + math.ceil(jobs.CANCEL_CACHE_S / max(fastest, 1e-3))
    assert len(epochs_of(long_job, after_seq=asked)) <= allowed, (fastest, allowed)
    before = api.get_job(long_job)
    n_events = len(api.events_since(long_job))
    wait_for(lambda: api.get_job(next_job)["state"] == "done", 60, what="the next job")
    after = api.get_job(long_job)
    assert after["progress"] == before["progress"] and len(api.events_since(long_job)) == n_events
    assert w.poll() is None  # the worker goes on
    assert api.cancel(long_job) is False
    print(f"cancelled {elapsed:.2f} s after the request; epochs every {fastest:.3f} s or more, {allowed} allowed")
    assert stop(w) == 0


@pytest.mark.timeout(90)
def test_corrupt_cached_weights_fail_with_the_file_named(warm, procs):
    weights = sorted((warm / "cache").glob("orig-*/model.safetensors"))
    assert weights, "the warm cache holds the original model"
    weights[0].write_bytes(b"this is not a safetensors file" * 10)
    bad = api.submit("run", spec("ft"))["id"]
    w = start_worker(warm, "--once", log_name="w")
    procs.append(w)
    assert w.wait(60) == 0, worker_log(warm)
    j = api.get_job(bad)
    assert j["state"] == "failed"
    assert j["error"].startswith("CheckpointError: weights file ")
    assert str(weights[0]) in j["error"] and "corrupt" in j["error"]
    assert "\n" not in j["error"]


@pytest.mark.timeout(90)
def test_invalid_submissions_are_refused_with_the_option_named(home, capsys):
    # through the CLI (a subprocess imports torch: one case; the others in-process through the same code)
    r = cli(home, "submit", "--method", "ec", "--set", "ec.tau=-1")
    assert r.returncode == 2, r
    assert "error: invalid option ec.tau" in r.stderr and r.stdout == ""
    for args, option in [(["--set", "ec.weights=0,0,0,0"], "ec.weights"), (["--forget-classes", "12"], "forget.classes")]:
        assert cli_main(["submit", "--method", "ec", *args]) == 2
        assert f"error: invalid option {option}" in capsys.readouterr().err
    for overrides, option in [({"ec": {"tau": -1}}, "ec.tau"), ({"ec": {"weights": [0, 0, 0, 0]}}, "ec.weights"),
                              ({"forget": {"classes": [12]}}, "forget.classes")]:
        with pytest.raises(ConfigError) as err:
            api.submit("run", {"preset": "digits", "overrides": overrides})
        assert err.value.option == option
    assert api.list_jobs() == []
    r = cli(home, "jobs", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == []


@pytest.mark.timeout(150)
def test_queue_survives_restart_and_sigterm_requeues(warm, procs):
    # queued while no worker runs
    first = api.submit("run", spec("ft", ft={"epochs": 30}))["id"]
    second = api.submit("run", spec("ec"))["id"]
    a = start_worker(warm, log_name="a")
    procs.append(a)
    wait_for(lambda: len(epochs_of(first)) >= 2, 90, what="the first job to run")
    t0 = time.monotonic()
    assert stop(a, signal.SIGTERM) == 0
    print(f"worker exited {time.monotonic() - t0:.2f} s after SIGTERM")
    assert time.monotonic() - t0 < 10
    j = api.get_job(first)
    assert j["state"] == "queued" and j["attempts"] == 0 and j["worker"] is None
    assert "was stopped" in job_events(first, "requeued")[0]["message"]
    assert api.get_job(second)["state"] == "queued"
    assert api.workers() == []
    b = start_worker(warm, "--once", log_name="b")  # the restarted worker takes up the queue
    procs.append(b)
    assert b.wait(90) == 0, worker_log(warm, "b")
    assert [api.get_job(x)["state"] for x in (first, second)] == ["done", "done"]
    assert (warm / "runs" / first / "log.txt").read_text().count("started by worker") == 1
    assert check_run_folders(warm) == []


def _set_args(over: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in over.items():
        if isinstance(v, dict):
            out += _set_args(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}={json.dumps(v)}")
    return out


@pytest.mark.timeout(120)
def test_diverging_job_fails_readably_worker_goes_on_then_cache_hit(warm, procs):
    """(one worker start for two properties: a failing job does not stop the worker; a cache hit)"""
    bad = api.submit("run", spec("ga", ga={"lr": 10, "epochs": 20, "weight_decay": 0}))["id"]
    first = api.submit("run", spec("ft"))
    assert api.submit("run", spec("ft"))["id"] == first["id"]  # queued: no duplicate work
    w = start_worker(warm, "--once", log_name="w")
    procs.append(w)
    assert w.wait(60) == 0, worker_log(warm)
    j = api.get_job(bad)
    assert j["state"] == "failed"
    assert re.match(r"DivergenceError: ga: loss became (nan|-?inf) at epoch \d+, step \d+; .*methods\.ga\.lr",
                    j["error"]), j["error"]
    assert "Traceback" in (warm / "runs" / bad / "log.txt").read_text()
    assert api.get_job(first["id"])["state"] == "done"  # the worker went on to the next job
    r = cli(warm, "show", bad)
    assert r.returncode == 0 and "DivergenceError" in r.stdout

    # the same configuration again: answered at submit, no work
    t0 = time.perf_counter()
    hit = api.submit("run", spec("ft"))
    seconds = time.perf_counter() - t0
    print(f"cache hit answered in {seconds * 1000:.0f} ms")
    assert hit["cached"] is True and hit["state"] == "done" and hit["cached_from"] == first["id"]
    assert api.load_results(hit["id"]) == api.load_results(first["id"])
    assert set(api.load_arrays(hit["id"])) == set(api.load_arrays(first["id"]))
    # the same configuration through the CLI flags
    over = dict(TINY)
    r = cli(warm, "submit", "--method", "ft", "--set", *_set_args({k: v for k, v in over.items()}))
    assert r.returncode == 0, r.stderr
    assert f"cache hit: same configuration as job {first['id']}" in r.stderr
    assert api.get_job(r.stdout.strip())["cached_from"] == first["id"]
    r = cli(warm, "show", r.stdout.strip())
    assert r.returncode == 0 and "forget_acc" in r.stdout and "ft" in r.stdout
    assert [j["id"] for j, _ in api.list_results()] == [first["id"]]


@pytest.mark.timeout(90)
def test_ensure_worker_starts_one_detached_worker(home):
    assert api.worker_alive() is False
    assert api.ensure_worker() is True
    pid = int((home / "worker.spawned").read_text().split()[0])  # the worker this test started
    try:
        assert api.ensure_worker() is False  # starting: not a second one
        wait_for(api.worker_alive, 60, what="the worker's heartbeat")
        assert api.ensure_worker() is False
        (w,) = api.workers()
        assert w["alive"] and w["pid"] == pid
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not jobs._pid_alive(pid), 20, what="the worker to exit")
        assert api.workers() == [] and api.worker_alive() is False
        assert "started" in (home / "worker.log").read_text()
    finally:
        if jobs._pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_cli_jobs_cancel_show(home, monkeypatch):
    monkeypatch.setattr(jobs, "_runner", lambda: FakeRunner)
    job = api.submit("run", {"do": "ok"})["id"]
    r = cli(home, "jobs")
    assert r.returncode == 0 and job in r.stdout and "queued" in r.stdout
    r = cli(home, "cancel", job)
    assert r.returncode == 0 and "cancelled" in r.stdout
    r = cli(home, "cancel", job)
    assert r.returncode == 1 and "already cancelled" in r.stdout
    r = cli(home, "show", job)
    assert r.returncode == 0 and "state     cancelled" in r.stdout
    r = cli(home, "show", "../x")
    assert r.returncode == 2 and "invalid run id" in r.stderr
    r = cli(home, "jobs", "--json", "--limit", "1")
    assert json.loads(r.stdout)[0]["id"] == job
