"""A scenario grid with 1 worker vs 2 workers on this machine: wall time and the ratio (issue 24).

    python bench/bench_grid.py                       # teach, 3:0,0:1,8:2,5:0, default compare, 1 then 2 workers
    python bench/bench_grid.py --only 2 --jobs-url postgresql://user@host/db   # the job table on PostgreSQL

Each worker count runs `python -m engine grid --preset P --scenarios S --workers K --no-cache` as a
subprocess on a fresh ECLAB_HOME (so the base models of every scenario are trained in each run, as a
user's first grid does), with ECLAB_JOBS_URL set for it and its workers when --jobs-url is given
(--no-cache: a job table that outlives the homes must not serve the second run from the first's
results). The wall time is the command's, from the submit to the results file: Python and torch
start-up of the command and of its K workers included. Each worker gets cpus // K torch threads.
Prints the grid's table of each run, per cell the job's own time and worker, then the wall times and
the ratio. Figures only, no asserts.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(k: int, args) -> dict:
    home = Path(tempfile.mkdtemp(prefix=f"eclab-grid-{k}w-"))
    env = dict(os.environ, ECLAB_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    if args.jobs_url:
        env["ECLAB_JOBS_URL"] = args.jobs_url
    cmd = [sys.executable, "-m", "engine", "grid", "--preset", args.preset, "--scenarios", args.scenarios,
           "--workers", str(k), "--no-cache"]
    if args.methods:
        cmd += ["--methods", args.methods]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.set:
        cmd += ["--set", *args.set]
    print(f"\n== {k} worker(s), ECLAB_HOME={home}" + (" (job table on PostgreSQL)" if args.jobs_url else ""),
          flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, stdout=sys.stdout, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    out = {"workers": k, "wall": wall, "rc": proc.returncode, "home": home, "load": load, "cells": []}
    grids = home / "grids"
    folders = sorted(grids.iterdir()) if grids.is_dir() else []
    if folders:
        import json
        table = json.loads((folders[-1] / "results.json").read_text())
        out["cells"] = cells(table["cells"], env)
    return out


def cells(grid_cells: list[dict], env: dict) -> list[tuple]:
    """(scenario, job seconds, worker) per cell, read from the run's job table."""
    old = {k: os.environ.get(k) for k in ("ECLAB_HOME", "ECLAB_JOBS_URL")}
    os.environ["ECLAB_HOME"] = env["ECLAB_HOME"]
    if env.get("ECLAB_JOBS_URL"):
        os.environ["ECLAB_JOBS_URL"] = env["ECLAB_JOBS_URL"]
    try:
        from engine import jobs
        rows = []
        for c in grid_cells:
            job = jobs.get_job(c["job_id"]) or {}
            secs = (job.get("finished") or 0) - (job.get("started") or 0) if job.get("started") else float("nan")
            rows.append((c["scenario"], secs, job.get("worker") or "-"))
        return rows
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="teach")
    ap.add_argument("--scenarios", default="3:0,0:1,8:2,5:0")
    ap.add_argument("--methods", help="default: the default compare")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--threads", type=int, help="torch threads per worker (default: the grid's, cpus // K)")
    ap.add_argument("--only", default="1,2", help="worker counts to run, in order (default 1,2)")
    ap.add_argument("--jobs-url", help="set ECLAB_JOBS_URL (e.g. postgresql://...) for every process started")
    args = ap.parse_args()
    counts = [int(k) for k in args.only.split(",") if k.strip()]
    print(f"bench_grid {time.strftime('%Y-%m-%d %H:%M:%S')}: {args.preset} {args.scenarios}, workers {counts}, "
          f"{os.cpu_count()} cpus, threads per worker {args.threads or 'cpus // K'}"
          + (", ECLAB_JOBS_URL set" if args.jobs_url else ""), flush=True)
    results = [run(k, args) for k in counts]
    print("\nworkers  wall s  load at start  rc  per cell: scenario job-seconds worker")
    for r in results:
        per = "; ".join(f"{s} {t:.0f} s {w}" for s, t, w in r["cells"])
        print(f"{r['workers']:>7}  {r['wall']:>6.0f}  {r['load']:>13.1f}  {r['rc']:>2}  {per}")
    walls = {r["workers"]: r["wall"] for r in results}
    if 1 in walls and 2 in walls:
        print(f"ratio 1 worker / 2 workers: {walls[1] / walls[2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
