"""Benchmark of sweeps (not a test): trials per minute with one worker and with two worker processes,
and the best trade-off of each against the default EC settings.

    python bench/bench_sweep.py [--trials 24] [--home DIR] [--preset digits] [--set KEY=VALUE ...]

Runs on the preset's default recipe (digits: the full default config) in its own run store
(default: a fresh temporary folder, so the timings include building the base models once, reported
separately). Two sweeps with separate study names: `sweep --workers 1` and `sweep --workers 2`; trials
per minute counts the trials' wall time only (first trial start to last trial end), not the shared
start-up (base models, reference run). Prints one line per sweep and the comparison with the defaults.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run_sweep(study: str, workers: int, args, env: dict) -> dict:
    cmd = [sys.executable, "-m", "engine", "sweep", "--preset", args.preset, "--study", study,
           "--trials", str(args.trials), "--workers", str(workers), "--sampler", args.sampler]
    for s in args.set:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        print(res.stdout[-3000:], res.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"sweep {study} failed (exit {res.returncode})")
    from engine import sweep as S
    os.environ["ECLAB_HOME"] = env["ECLAB_HOME"]
    st, _, _ = S.load_study(study)
    rows = S.trial_rows(st)
    starts = [r["start"] for r in rows if r["start"]]
    ends = [r["complete"] for r in rows if r["complete"]]
    span = (max(ends) - min(starts)) if starts and ends else float("nan")
    done = sum(r["state"] in ("COMPLETE", "FAIL") for r in rows)
    return {"study": study, "workers": workers, "trials": done, "wall_s": wall, "trial_span_s": span,
            "per_min": 60.0 * done / span if span and span == span else float("nan"),
            "failed": sum(r["state"] == "FAIL" for r in rows),
            "compare": S.compare_text(rows, st.user_attrs["reference"]) if st.user_attrs.get("reference") else "",
            "summary": res.stdout}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=24, help="trials per sweep (default 24)")
    p.add_argument("--preset", default="digits")
    p.add_argument("--sampler", default="tpe", choices=["tpe", "nsga2", "grid"])
    p.add_argument("--home", help="run store to use (default: a fresh temporary folder)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides for both sweeps")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = p.parse_args()
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="eclab-bench-sweep-"))
    env = dict(os.environ, ECLAB_HOME=str(home), PYTHONPATH=str(ROOT))
    print(f"run store: {home}; {os.cpu_count()} CPU cores; {args.trials} trials per sweep; preset {args.preset}",
          flush=True)

    # base models and the reference once, so neither sweep pays for them
    t0 = time.perf_counter()
    tag = str(int(time.time()))
    warm = subprocess.run([sys.executable, "-m", "engine", "sweep", "--preset", args.preset, "--study", f"warm-{tag}",
                           "--trials", "0"] + [a for s in args.set for a in ("--set", s)],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    if warm.returncode != 0:
        print(warm.stderr[-3000:], file=sys.stderr)
        return 1
    print(f"base models + default EC reference: {time.perf_counter() - t0:.1f} s", flush=True)

    results = []
    for workers in (1, 2):
        r = run_sweep(f"bench-{tag}-w{workers}", workers, args, env)
        results.append(r)
        print(f"workers={workers}: {r['trials']} trials ({r['failed']} failed) in {r['trial_span_s']:.1f} s of trials "
              f"({r['wall_s']:.1f} s wall) = {r['per_min']:.1f} trials/min", flush=True)
        print(f"  {r['compare']}", flush=True)
    if results[0]["per_min"] == results[0]["per_min"]:
        print(f"speed-up with two workers: {results[1]['per_min'] / results[0]['per_min']:.2f}x")
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "summary"} for r in results], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
