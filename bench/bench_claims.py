"""Check the engine's headline claims on several scenarios (forget classes x seeds) of a preset.

    python bench/bench_claims.py [--preset teach] [--classes 3,0,8] [--seeds 0,1] [--set key=value ...]
    python bench/bench_claims.py --preset teach --scenarios 3:0,0:1,8:2    # class:seed pairs
    python bench/bench_claims.py --preset digits --scenarios 3:0,3+5:0,r0.1:0  # two classes, random 10%

For each scenario it runs the full default comparison and prints the table, both readings of the
inner-layer forget CKA (the paper's, lower CKA to the original; and the gold standard's, distance
to the retrained model's CKA either way), then these checks:

  A. every baseline forgets at the logits (forget accuracy within 0.05 of the retrained model's);
  B. EC keeps retain accuracy within 0.02 of the original's;
  C. EC's inner forget CKA is the lowest among the methods that keep retain within 0.02;
and the superficial-forgetting checks (issue `teach`):
  R. the retrained oracle's inner forget CKA is at most 0.90 and its probe recovery of the forget
     class is clearly (>= 0.05) below the original's;
  S. at least three baselines reach logit-level forgetting while their inner forget CKA is at least
     0.08 above retrain's (superficial forgetting);
  E. EC reaches logit-level forgetting, keeps retain within 0.02, and its distance to retrain is at
     most half the median forgetting baseline's excess: |EC - retrain| <= 0.5 x median(b - retrain).
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


def _mid(run: dict, layers: list[str]) -> float:
    from engine.runner import mean_mid_cka
    return mean_mid_cka(run, layers)


def _mid_probe(run: dict, layers: list[str]) -> float:
    vals = [run["probe_forget_acc"][l] for l in layers[:-1]]
    return sum(vals) / len(vals)


def check_claims(results: dict) -> dict:
    runs, layers = results["runs"], results["layers"]
    orig, ret = runs["original"]["metrics"], runs["retrain"]["metrics"]
    methods = [n for n in runs if n not in ("original", "retrain")]
    baselines = [n for n in methods if n not in ("ec", "cu") and "+" not in n]
    forgets = {n for n in methods if abs(runs[n]["metrics"]["forget_acc"] - ret["forget_acc"]) <= FORGET_TOL}
    keeps = [n for n in methods if orig["retain_acc"] - runs[n]["metrics"]["retain_acc"] <= RETAIN_TOL]
    not_forgotten = [n for n in methods if n != "ec" and n not in forgets]
    mid = {n: _mid(runs[n], layers) for n in runs}
    ec_cka = mid.get("ec")
    beaten_by = [n for n in keeps if n != "ec" and mid[n] <= ec_cka] if ec_cka is not None else []
    r_mid = mid["retrain"]
    superficial = [n for n in baselines if n in forgets and mid[n] - r_mid >= SUPERFICIAL_EXCESS]
    excess = [mid[n] - r_mid for n in baselines if n in forgets]
    median_excess = statistics.median(excess) if excess else None
    ec_dist = abs(ec_cka - r_mid) if ec_cka is not None else None
    probe_orig, probe_ret = _mid_probe(runs["original"], layers), _mid_probe(runs["retrain"], layers)
    return {"A_baselines_forget": not not_forgotten, "A_failures": not_forgotten,
            "B_ec_keeps_retain": "ec" in keeps,
            "C_ec_lowest_cka": "ec" in keeps and not beaten_by, "C_beaten_by": beaten_by,
            "keeps_retain": keeps,
            "R_retrain_differs": r_mid <= 0.90 and probe_ret <= probe_orig - 0.05,
            "retrain_cka": r_mid, "probe_original": probe_orig, "probe_retrain": probe_ret,
            "S_superficial": len(superficial) >= 3, "superficial": superficial,
            "E_ec_near_retrain": ("ec" in forgets and "ec" in keeps and median_excess is not None
                                  and ec_dist <= 0.5 * median_excess),
            "ec_distance": ec_dist, "median_baseline_excess": median_excess,
            "distance_to_retrain": {n: mid[n] - r_mid for n in methods}}


def print_readings(results: dict, verdict: dict) -> None:
    """Both readings side by side: CKA to the original (paper) and signed distance to retrain (gold)."""
    runs = results["runs"]
    r = verdict["retrain_cka"]
    print(f"{'run':<16} {'CKA mid':>8} {'- retrain':>10}  reading")
    for n, d in sorted(verdict["distance_to_retrain"].items(), key=lambda kv: abs(kv[1])):
        m = runs[n]["metrics"]
        forgot = abs(m["forget_acc"] - runs["retrain"]["metrics"]["forget_acc"]) <= FORGET_TOL
        kept = runs["original"]["metrics"]["retain_acc"] - m["retain_acc"] <= RETAIN_TOL
        word = ("did not forget at the logits" if not forgot else
                "damaged retain" if not kept else
                "superficial: inner layers still hold the class" if d >= SUPERFICIAL_EXCESS else
                "over-erased: further from the original than retrain" if d <= -SUPERFICIAL_EXCESS else
                "close to retrain")
        print(f"{n:<16} {r + d:>8.3f} {d:>+10.3f}  {word}")


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

    keys = ("A_baselines_forget", "B_ec_keeps_retain", "C_ec_lowest_cka", "R_retrain_differs", "S_superficial",
            "E_ec_near_retrain")
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
    print(f"\n{args.preset}: class seed  retrain  probe o/r    superficial  EC-retrain  median excess  "
          + "  ".join(k.split("_")[0] for k in keys))
    for c, seed, v in summary:
        print(f"{'':>{len(args.preset) + 1}} {c:>5} {seed:>4}  {v['retrain_cka']:.3f}  "
              f"{v['probe_original']:.2f}/{v['probe_retrain']:.2f}  {len(v['superficial']):>11}  "
              f"{v['distance_to_retrain'].get('ec', float('nan')):>+10.3f}  {v['median_baseline_excess'] or float('nan'):>13.3f}  "
              + "  ".join("y" if v[k] else "n" for k in keys))
    print_grid(grid)


def print_grid(grid: list[tuple[str, dict]]) -> None:
    """Scenarios x methods: forget / retain accuracy and inner forget CKA (minus retrain's), and how
    many cells reach logit-level forgetting (forget accuracy within 0.05 of retrain's)."""
    if not grid:
        return
    methods = [n for n in grid[0][1]["runs"] if n not in ("original", "retrain")]
    print("\nscenario x method: forget acc / retain acc / inner forget CKA - retrain's "
          "(* = did not reach logit-level forgetting; c = calibrated setting)")
    print(f"{'scenario':<10}" + "".join(f"{m[:15]:>19}" for m in methods))
    ok = total = 0
    for name, res in grid:
        runs, layers = res["runs"], res["layers"]
        r_f, r_mid = runs["retrain"]["metrics"]["forget_acc"], _mid(runs["retrain"], layers)
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
            cells.append(f"{f:.2f}/{ret:.2f}/{_mid(run, layers) - r_mid:+.2f}{'' if hit else '*'}{cal}".rjust(19))
        print(f"{name:<10}" + "".join(cells))
    print(f"{ok} of {total} cells reach logit-level forgetting")


if __name__ == "__main__":
    main()
