"""Job system latency: seconds from submit to results, through a real background worker.

    python bench/bench_jobs.py                  # fresh temp ECLAB_HOME (cold base-model cache)
    python bench/bench_jobs.py --home runs      # an existing store (its cache and jobs are reused)

Starts `python -m engine worker`, waits until it has warmed (UMAP's numba kernels compiled, one tiny
job run), then submits an EC run on the digits default with custom layer weights and temperature
(--set ec.weights=1,0.5,0.5,1 ec.tau=0.5) and times submit -> results.json readable. Then the same
submission again (a cache hit: answered at submit, no work) and, unless --no-extra, an EC run with
another temperature on the now cached base models. Printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TINY = {"method": "ft", "model": {"width": 8}, "train": {"epochs": 1}, "methods": {"ft": {"epochs": 1}},
        "eval": {"umap": False, "probe_epochs": 1, "max_samples": 64, "epoch_cka": False, "embed_per_class": 5}}


def wait(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def timed_job(api, spec: dict, timeout: float) -> tuple[float, dict]:
    """Seconds from submit until the job's results load (or it ends without them)."""
    t0 = time.perf_counter()
    job = api.submit("run", spec)

    def ready():
        j = api.get_job(job["id"])
        if j["state"] == "done" and api.load_results(job["id"]) is not None:
            return j
        if j["state"] in ("failed", "cancelled"):
            raise SystemExit(f"job {job['id']} {j['state']}: {j['error']}")
        return None

    j = wait(ready, timeout, f"job {job['id']}")
    return time.perf_counter() - t0, j


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="ECLAB_HOME to use (default: a fresh temp dir, removed afterwards)")
    ap.add_argument("--keep", action="store_true", help="keep the temp home")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per job")
    ap.add_argument("--no-extra", action="store_true", help="skip the run on cached base models")
    args = ap.parse_args()
    tmp = None
    if args.home:
        home = Path(args.home).resolve()
        home.mkdir(parents=True, exist_ok=True)
    else:
        tmp = home = Path(tempfile.mkdtemp(prefix="eclab-bench-jobs-"))
    os.environ["ECLAB_HOME"] = str(home)
    from engine import api  # after ECLAB_HOME is set

    from engine.config import apply_sets
    rows: list[tuple[str, float, str]] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = open(home / "bench-worker.log", "ab")
    t_start = time.perf_counter()
    worker = subprocess.Popen([sys.executable, "-m", "engine", "worker", "--poll", "0.1"], cwd=str(ROOT), env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        mine = lambda: [w for w in api.workers() if w["pid"] == worker.pid]  # noqa: E731
        wait(lambda: mine() or worker.poll() is not None, 120, "the worker to register")
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited ({worker.returncode}); see {home / 'bench-worker.log'}")
        rows.append(("worker start -> registered", time.perf_counter() - t_start, "imports, job table"))
        wait(lambda: mine() and mine()[0]["warmed"], 600, "the UMAP warm-up")
        rows.append(("worker start -> UMAP warmed", time.perf_counter() - t_start, "numba kernels (cached on disk)"))
        secs, _ = timed_job(api, {"preset": "digits", "overrides": dict(TINY, seed=int(time.time()) % 1000)},
                            args.timeout)
        rows.append(("tiny job (warm-up)", secs, "tiny config, new seed: base models built"))

        ec_spec = {"preset": "digits", "overrides": apply_sets({"method": "ec"}, ["ec.weights=1,0.5,0.5,1",
                                                                                 "ec.tau=0.5"])}
        secs, job = timed_job(api, ec_spec, args.timeout)
        note = "base models built now" if not args.home else "base models from the store's cache if present"
        rows.append(("EC run, digits default, submit -> results", secs, f"{job['id']} ({note})"))

        t0 = time.perf_counter()
        hit = api.submit("run", ec_spec)
        res = api.load_results(hit["id"])
        secs = time.perf_counter() - t0
        rows.append(("same EC run again (cache hit)", secs,
                     f"cached={hit['cached']} from {hit['cached_from']}, results {'ok' if res else 'missing'}"))

        if not args.no_extra:
            other = {"preset": "digits", "overrides": apply_sets({"method": "ec"}, ["ec.weights=1,0.5,0.5,1",
                                                                                    "ec.tau=0.6"])}
            secs, job = timed_job(api, other, args.timeout)
            rows.append(("EC run, tau=0.6 (base models cached)", secs, job["id"]))
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        log.close()

    import torch
    print(f"\njob latency (home {home}; {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    w = max(len(r[0]) for r in rows)
    print(f"{'step'.ljust(w)}  {'seconds':>9}  note")
    for name, secs, note in rows:
        print(f"{name.ljust(w)}  {secs:9.3f}  {note}")
    if tmp is not None and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
