"""Helpers for the job-system tests: tiny real configurations, worker subprocesses, polling."""
from __future__ import annotations

import copy
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A real digits run that takes well under a second once the base models are cached.
TINY_EVAL = {"umap": False, "probe_epochs": 1, "max_samples": 64, "epoch_cka": False, "embed_per_class": 5,
             "cka_batch": 32}
TINY = {"model": {"width": 8}, "train": {"epochs": 1}, "ec": {"aux_epochs": 1}, "eval": TINY_EVAL,
        "methods": {"ft": {"epochs": 1}, "ec": {"epochs": 1}, "ga": {"epochs": 1}}}


def tiny(method: str = "ft", **methods_over) -> dict:
    """Overrides of a tiny real run; methods_over e.g. ft={"lr": 0.02, "epochs": 120}."""
    over = copy.deepcopy(TINY)
    over["method"] = method
    for name, opts in methods_over.items():
        over["methods"].setdefault(name, {}).update(opts)
    return over


def spec(method: str = "ft", **methods_over) -> dict:
    return {"preset": "digits", "overrides": tiny(method, **methods_over)}


LONG = dict(ft={"epochs": 150})  # ~0.1 s per epoch on one thread: long enough to kill or cancel


def worker_env(home: Path, **extra) -> dict:
    env = dict(os.environ)
    env.update({"ECLAB_HOME": str(home), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ECLAB_NO_WARM": "1",
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_worker(home: Path, *args: str, log_name: str = "w", **env) -> subprocess.Popen:
    log = open(home / f"test-{log_name}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "worker", "--poll", "0.2", *args], cwd=str(ROOT),
                            env=worker_env(home, **env), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc


def cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=str(ROOT), env=worker_env(home),
                          capture_output=True, text=True, timeout=timeout)


def wait_for(pred, timeout: float, interval: float = 0.1, what: str = "condition"):
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15) -> int:
    """Stop a worker this test started (by its own pid) and reap it."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def pause_unlocked(proc: subprocess.Popen, db: Path, tries: int = 20) -> None:
    """SIGSTOP a worker at a moment it holds no write lock on the job table (else every other worker
    would wait for it): stop, try to take the lock, resume and try again a moment later if it was held."""
    for _ in range(tries):
        proc.send_signal(signal.SIGSTOP)
        con = sqlite3.connect(str(db), timeout=0.2, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.02)
        finally:
            con.close()
    raise AssertionError("the worker always held the job table's write lock")


def worker_log(home: Path, name: str = "w") -> str:
    p = home / f"test-{name}.log"
    return p.read_text(errors="replace") if p.exists() else ""


def seed_cache(warm_home: Path, home: Path) -> None:
    """Copy the warm base-model cache into a fresh home (each test owns its home)."""
    if (warm_home / "cache").exists():
        shutil.copytree(warm_home / "cache", home / "cache")


def integrity_ok(home: Path) -> bool:
    con = sqlite3.connect(str(home / "jobs.sqlite"))
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()


def check_run_folders(home: Path) -> list[str]:
    """Every artifact under runs/ loads; temporary files only under temporary names. Returns problems."""
    import json

    import numpy as np
    from safetensors.torch import load_file

    problems = []
    runs = home / "runs"
    for f in sorted(runs.rglob("*")) if runs.exists() else []:
        if not f.is_file():
            continue
        if f.name.endswith(".tmp"):
            if not f.name.startswith("."):
                problems.append(f"temporary file under a real name: {f}")
            continue
        try:
            if f.suffix == ".json":
                json.loads(f.read_text())
            elif f.suffix == ".npz":
                with np.load(f, allow_pickle=False) as z:
                    [z[k] for k in z.files]
            elif f.suffix == ".safetensors":
                load_file(str(f))
        except Exception as err:  # noqa: BLE001
            problems.append(f"{f}: {err}")
    return problems
