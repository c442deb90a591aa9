"""Check the engine's headline claims on several scenarios (forget classes x seeds) of a preset.

    python bench/bench_claims.py [--preset teach] [--classes 3,0,8] [--seeds 0,1] [--set key=value ...]
    python bench/bench_claims.py --preset teach --scenarios 3:0,0:1,8:2    # class:seed pairs
    python bench/bench_claims.py --preset digits --scenarios 3:0,3+5:0,r0.1:0 --workers 2

A thin caller of the product's scenario grid (engine/grid.py, `python -m engine grid`): it queues the
grid (one default comparison per scenario, through the job table and its cache), runs it with
--workers local workers (default 1), then for each scenario prints the comparison table and, per
run, THE distance to retrain (engine/results.py: the largest |gap| of the forget CKA to the original
over the inner supervision points, so no layer hides in a mean) with the signed gap at every point,
then:

  A. every baseline forgets at the logits (forget accuracy within 0.05 of the retrained model's);
  B. EC keeps retain accuracy within 0.02 of the original's;
  C. EC's distance to retrain is the smallest among the methods that keep retain within 0.02;
  P. the paper's reading, per layer: at every inner layer EC's forget CKA to the original is the lowest
     among the methods that keep retain within 0.02 (it erases deepest; below retrain's it distorts);
and the superficial-forgetting checks (issue `teach`):
  R. the retrained oracle's forget CKA to the original is at most 0.90 at some inner layer and its
     probe recovery of the forget class is clearly (>= 0.05) below the original's at some inner layer;
  S. at least three baselines reach logit-level forgetting while some inner layer's gap to retrain is
     at least +0.08 (superficial forgetting there);
  E. EC reaches logit-level forgetting, keeps retain within 0.02, and its distance to retrain is at
     most half the median forgetting baseline's.
The thresholds of A and B are the grid's (engine.grid FORGET_TOL, RETAIN_TOL), and so is the closing
scenario x method table (engine.grid.format_table; the grid's results file is written too).
Figures only; nothing here is a test (tests/test_claims.py checks the default digits scenario).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.grid import FORGET_TOL, RETAIN_TOL, run_flags  # noqa: E402  (bench_per_layer reads them here)

SUPERFICIAL_EXCESS = 0.08


def check_claims(results: dict) -> dict:
    from engine import results as R
    rows = {r["name"]: r for r in R.summary(results)}
    runs, inner = results["runs"], R.inner_layers(results["layers"])
    methods = [n for n in rows if rows[n]["role"] == "method"]
    baselines = [n for n in methods if n not in ("ec", "cu") and "+" not in n]
    flags = {n: run_flags(rows, n) for n in methods}
    forgets = {n for n in methods if flags[n]["forgets"]}
    keeps = [n for n in methods if flags[n]["keeps_retain"]]
    not_forgotten = [n for n in methods if n != "ec" and n not in forgets]
    dist = {n: rows[n]["distance"] for n in methods}
    ec_dist = dist.get("ec")
    beaten_by = [n for n in keeps if n != "ec" and dist[n] <= ec_dist] if ec_dist is not None else []
    cka = {n: {g["point"]: g["value"] for g in rows[n]["gaps"] if g["inner"]} for n in methods}
    deeper_somewhere = [n for n in keeps if n != "ec" and "ec" in cka
                        and any(cka[n][p] < cka["ec"][p] for p in inner)]
    kept_most = {n: max(g["gap"] for g in rows[n]["gaps"] if g["inner"]) for n in methods}
    superficial = [n for n in baselines if n in forgets and kept_most[n] >= SUPERFICIAL_EXCESS]
    median_dist = statistics.median([dist[n] for n in baselines if n in forgets] or [float("nan")])
    r_cka = {p: runs["retrain"]["cka_vs_original"]["forget"][p] for p in inner}
    probe_gain = max(runs["original"]["probe_forget_acc"][p] - runs["retrain"]["probe_forget_acc"][p] for p in inner)
    return {"A_baselines_forget": not not_forgotten, "A_failures": not_forgotten,
            "B_ec_keeps_retain": "ec" in keeps,
            "C_ec_closest": "ec" in keeps and not beaten_by, "C_beaten_by": beaten_by,
            "P_ec_erases_deepest": "ec" in keeps and not deeper_somewhere, "P_deeper_somewhere": deeper_somewhere,
            "keeps_retain": keeps,
            "R_retrain_differs": min(r_cka.values()) <= 0.90 and probe_gain >= 0.05,
            "retrain_cka_min": min(r_cka.values()), "probe_gain": probe_gain,
            "S_superficial": len(superficial) >= 3, "superficial": superficial,
            "E_ec_near_retrain": ("ec" in forgets and "ec" in keeps and ec_dist is not None
                                  and ec_dist <= 0.5 * median_dist),
            "ec_distance": ec_dist, "median_baseline_distance": median_dist, "distance": dist,
            "gaps": {n: R.gaps_text(rows[n]["gaps"]) for n in methods}}


def print_readings(results: dict, verdict: dict) -> None:
    """Per run: THE distance to retrain (worst inner layer), the signed gap at every point, a reading."""
    from engine import results as R
    rows = {r["name"]: r for r in R.summary(results)}
    print(f"{'run':<16} {'distance':>8}  gaps to retrain per point (inner | last)  reading")
    for n, d in sorted(verdict["distance"].items(), key=lambda kv: kv[1]):
        flags = run_flags(rows, n)
        word = ("did not forget at the logits" if not flags["forgets"] else
                "damaged retain" if not flags["keeps_retain"] else
                "superficial: an inner layer still holds the class" if n in verdict["superficial"] else
                "distorted: an inner layer further from the original than retrain" if d >= SUPERFICIAL_EXCESS else
                "close to retrain")
        print(f"{n:<16} {d:>8.3f}  {verdict['gaps'][n]}  {word}")


def forget_request(text: str) -> dict:
    """'3' -> class 3, '3+5' -> classes 3 and 5, 'r0.1' -> a random 10% of the training samples
    (engine.grid's scenario syntax without the seed)."""
    from engine.grid import scenario_overrides
    return scenario_overrides(f"{text}:0")["forget"]


def run_scenario(preset: str, cls: str, seed: int, sets: list[str]) -> tuple[dict, float]:
    """One scenario's default comparison in this process, outside the job table (bench_per_layer
    reuses its claims-<key> folder); main() runs the scenarios as a grid instead."""
    from engine.config import apply_sets
    from engine.events import JobContext
    from engine.runner import execute, prepare
    spec = {"preset": preset, "overrides": apply_sets({"seed": seed, "forget": forget_request(str(cls))}, sets)}
    norm, key = prepare("compare", spec)
    out = Path(os.environ["ECLAB_HOME"]) / f"claims-{key}"
    t = time.perf_counter()
    execute("compare", norm, out, JobContext())
    return json.loads((out / "results.json").read_text()), time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="teach")
    ap.add_argument("--classes", default="3,0,8")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--scenarios", default="", help="class:seed pairs instead of the classes x seeds grid")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--workers", type=int, default=1, help="local workers running the grid (default 1)")
    args = ap.parse_args()
    os.environ.setdefault("ECLAB_HOME", tempfile.mkdtemp(prefix="eclab-claims-"))
    from engine import jobs
    from engine.compare import format_table
    from engine.config import apply_sets
    from engine.grid import format_table as grid_text
    from engine.grid import parse_scenarios, submit_grid
    from engine.gridcli import run_grid

    pairs = [f"{c}:{s}" for s in args.seeds.split(",") for c in args.classes.split(",")]
    labels = parse_scenarios(args.scenarios or pairs)
    grid = submit_grid(args.preset, labels, None, apply_sets({}, args.set) if args.set else None)
    print(f"grid {grid['id']} in {os.environ['ECLAB_HOME']}: {', '.join(labels)}", flush=True)
    table = run_grid(grid["id"], workers=args.workers)
    keys = ("A_baselines_forget", "B_ec_keeps_retain", "C_ec_closest", "P_ec_erases_deepest", "R_retrain_differs",
            "S_superficial", "E_ec_near_retrain")
    summary = []
    for cell in table["cells"]:
        c, seed = cell["scenario"].rsplit(":", 1)
        if cell["state"] != "done":
            print(f"\n== {args.preset}: forget {c}, seed {seed}: {cell['state']} {cell.get('error') or ''}")
            continue
        res, job = jobs.load_results(cell["job_id"]), jobs.get_job(cell["job_id"])
        v = check_claims(res)
        secs = (job["finished"] or 0) - (job["started"] or 0)
        print(f"\n== {args.preset}: forget class {c}, seed {seed} (job {cell['job_id']}, {secs:.0f} s)")
        print(format_table(res))
        print_readings(res, v)
        print({k: v[k] for k in keys}, "superficial:", ",".join(v["superficial"]) or "-",
              "| not forgotten:", ",".join(v["A_failures"]) or "-", flush=True)
        summary.append((c, seed, v))
    print(f"\n{args.preset}: class seed  retrain min CKA  probe gain  superficial  EC distance  median baseline  "
          + "  ".join(k.split("_")[0] for k in keys))
    for c, seed, v in summary:
        print(f"{'':>{len(args.preset) + 1}} {c:>5} {seed:>4}  {v['retrain_cka_min']:>15.3f}  {v['probe_gain']:>10.2f}  "
              f"{len(v['superficial']):>11}  {v['ec_distance'] if v['ec_distance'] is not None else float('nan'):>11.3f}  "
              f"{v['median_baseline_distance']:>15.3f}  " + "  ".join("y" if v[k] else "n" for k in keys))
    print()
    print(grid_text(table))


if __name__ == "__main__":
    main()
