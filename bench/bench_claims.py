"""Check the engine's headline claims on several scenarios (forget classes x seeds) of a preset.

    python bench/bench_claims.py [--preset teach] [--classes 3,0,8] [--seeds 0,1] [--set key=value ...]
    python bench/bench_claims.py --preset teach --scenarios 3:0,0:1,8:2    # class:seed pairs
    python bench/bench_claims.py --preset digits --scenarios 3:0,3+5:0,r0.1:0  # two classes, random 10%

For each scenario it runs the full default comparison and prints the table and, per run, THE
distance to retrain (engine/results.py: the largest |gap| of the forget CKA to the original over the
inner supervision points, so no layer hides in a mean) with the signed gap at every point, then:

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

FORGET_TOL = 0.05  # forget accuracy within this of retrain's = logit-level forgetting
RETAIN_TOL = 0.02  # retain accuracy within this of the original's = retain kept
SUPERFICIAL_EXCESS = 0.08


def check_claims(results: dict) -> dict:
    from engine import results as R
    rows = {r["name"]: r for r in R.summary(results)}
    runs, inner = results["runs"], R.inner_layers(results["layers"])
    orig, ret = rows["original"], rows["retrain"]
    methods = [n for n in rows if rows[n]["role"] == "method"]
    baselines = [n for n in methods if n not in ("ec", "cu") and "+" not in n]
    forgets = {n for n in methods if abs(rows[n]["forget_acc"] - ret["forget_acc"]) <= FORGET_TOL}
    keeps = [n for n in methods if orig["retain_acc"] - rows[n]["retain_acc"] <= RETAIN_TOL]
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
    runs = results["runs"]
    print(f"{'run':<16} {'distance':>8}  gaps to retrain per point (inner | last)  reading")
    for n, d in sorted(verdict["distance"].items(), key=lambda kv: kv[1]):
        m = runs[n]["metrics"]
        forgot = abs(m["forget_acc"] - runs["retrain"]["metrics"]["forget_acc"]) <= FORGET_TOL
        kept = runs["original"]["metrics"]["retain_acc"] - m["retain_acc"] <= RETAIN_TOL
        word = ("did not forget at the logits" if not forgot else
                "damaged retain" if not kept else
                "superficial: an inner layer still holds the class" if n in verdict["superficial"] else
                "distorted: an inner layer further from the original than retrain" if d >= SUPERFICIAL_EXCESS else
                "close to retrain")
        print(f"{n:<16} {d:>8.3f}  {verdict['gaps'][n]}  {word}")


def forget_request(text: str) -> dict:
    """'3' -> class 3, '3+5' -> classes 3 and 5, 'r0.1' -> a random 10% of the training samples."""
    if text.startswith("r"):
        return {"random": float(text[1:])}
    return {"classes": [int(c) for c in text.split("+")]}


def run_scenario(preset: str, cls: str, seed: int, sets: list[str]) -> tuple[dict, float]:
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
    args = ap.parse_args()
    pairs = ([(p.split(":")[0], int(p.split(":")[1])) for p in args.scenarios.split(",")] if args.scenarios else
             [(c, s) for s in map(int, args.seeds.split(",")) for c in args.classes.split(",")])
    os.environ.setdefault("ECLAB_HOME", tempfile.mkdtemp(prefix="eclab-claims-"))
    from engine.compare import format_table

    keys = ("A_baselines_forget", "B_ec_keeps_retain", "C_ec_closest", "P_ec_erases_deepest", "R_retrain_differs",
            "S_superficial", "E_ec_near_retrain")
    summary, grid = [], []
    for c, seed in pairs:
        res, secs = run_scenario(args.preset, c, seed, args.set)
        v = check_claims(res)
        print(f"\n== {args.preset}: forget class {c}, seed {seed} ({secs:.0f} s)")
        print(format_table(res))
        print_readings(res, v)
        print({k: v[k] for k in keys}, "superficial:", ",".join(v["superficial"]) or "-",
              "| not forgotten:", ",".join(v["A_failures"]) or "-", flush=True)
        summary.append((c, seed, v))
        grid.append((f"{c}:{seed}", res))
    print(f"\n{args.preset}: class seed  retrain min CKA  probe gain  superficial  EC distance  median baseline  "
          + "  ".join(k.split("_")[0] for k in keys))
    for c, seed, v in summary:
        print(f"{'':>{len(args.preset) + 1}} {c:>5} {seed:>4}  {v['retrain_cka_min']:>15.3f}  {v['probe_gain']:>10.2f}  "
              f"{len(v['superficial']):>11}  {v['ec_distance'] if v['ec_distance'] is not None else float('nan'):>11.3f}  "
              f"{v['median_baseline_distance']:>15.3f}  " + "  ".join("y" if v[k] else "n" for k in keys))
    print_grid(grid)


def print_grid(grid: list[tuple[str, dict]]) -> None:
    """Scenarios x methods: forget / retain accuracy and the signed gap to retrain at the worst inner
    layer, and how many cells reach logit-level forgetting (forget accuracy within 0.05 of retrain's)."""
    from engine import results as R
    if not grid:
        return
    methods = [n for n in grid[0][1]["runs"] if n not in ("original", "retrain")]
    print("\nscenario x method: forget acc / retain acc / signed gap to retrain at the worst inner layer "
          "(* = did not reach logit-level forgetting; c = calibrated setting)")
    print(f"{'scenario':<10}" + "".join(f"{m[:15]:>19}" for m in methods))
    ok = total = 0
    for name, res in grid:
        runs = res["runs"]
        r_f = runs["retrain"]["metrics"]["forget_acc"]
        worst = {r["name"]: r["worst_gap"] for r in R.summary(res)}
        cells = []
        for m in methods:
            run = runs.get(m)
            if run is None:
                cells.append(f"{'-':>19}")
                continue
            f, ret = run["metrics"]["forget_acc"], run["metrics"]["retain_acc"]
            hit = abs(f - r_f) <= FORGET_TOL
            ok, total = ok + hit, total + 1
            cal = "c" if (run.get("calibration") or {}).get("used") else " "
            cells.append(f"{f:.2f}/{ret:.2f}/{worst[m]:+.2f}{'' if hit else '*'}{cal}".rjust(19))
        print(f"{name:<10}" + "".join(cells))
    print(f"{ok} of {total} cells reach logit-level forgetting")


if __name__ == "__main__":
    main()
