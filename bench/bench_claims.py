"""Check the engine's headline claims on several digits scenarios (forget classes x seeds).

    python bench/bench_claims.py [--classes 3,0,8] [--seeds 0,1] [--set key=value ...]

For each scenario it runs the full default comparison and prints, per method, forget / retain
accuracy and the mean forget-split CKA to the original over the intermediate supervision points,
then whether these hold:
  A. every baseline forgets at the logits (forget accuracy within 0.05 of the retrained model's);
  B. EC keeps retain accuracy within 0.02 of the original's;
  C. EC's intermediate forget CKA is lower than that of every method that also keeps retain
     accuracy within 0.02 of the original's.
Figures only; nothing here is a test (tests/test_claims.py checks the default scenario).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def check_claims(results: dict) -> dict:
    from engine.runner import mean_mid_cka
    runs, layers = results["runs"], results["layers"]
    orig, ret = runs["original"]["metrics"], runs["retrain"]["metrics"]
    methods = [n for n in runs if n not in ("original", "retrain")]
    baselines = [n for n in methods if n != "ec"]
    not_forgotten = [n for n in baselines if abs(runs[n]["metrics"]["forget_acc"] - ret["forget_acc"]) > 0.05]
    keeps = [n for n in methods if orig["retain_acc"] - runs[n]["metrics"]["retain_acc"] <= 0.02]
    ec_cka = mean_mid_cka(runs["ec"], layers)
    beaten_by = [n for n in keeps if n != "ec" and mean_mid_cka(runs[n], layers) <= ec_cka]
    return {"A_baselines_forget": not not_forgotten, "A_failures": not_forgotten,
            "B_ec_keeps_retain": "ec" in keeps,
            "C_ec_lowest_cka": "ec" in keeps and not beaten_by, "C_beaten_by": beaten_by,
            "keeps_retain": keeps}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", default="3,0,8")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    os.environ.setdefault("ECLAB_HOME", tempfile.mkdtemp(prefix="eclab-claims-"))
    from engine.compare import format_table
    from engine.config import apply_sets
    from engine.events import JobContext
    from engine.runner import execute, prepare

    summary = []
    for seed in map(int, args.seeds.split(",")):
        for c in map(int, args.classes.split(",")):
            spec = {"preset": "digits", "overrides": apply_sets({"seed": seed, "forget": {"classes": [c]}}, args.set)}
            norm, key = prepare("compare", spec)
            out = Path(os.environ["ECLAB_HOME"]) / f"claims-{key}"
            t = time.perf_counter()
            execute("compare", norm, out, JobContext())
            import json
            res = json.loads((out / "results.json").read_text())
            verdict = check_claims(res)
            print(f"\n== forget class {c}, seed {seed} ({time.perf_counter() - t:.0f} s)")
            print(format_table(res))
            print({k: v for k, v in verdict.items()})
            summary.append((c, seed, verdict))
    print("\nclass seed  A(baselines forget)  B(EC retain)  C(EC lowest CKA)")
    for c, seed, v in summary:
        print(f"{c:>5} {seed:>4}  {str(v['A_baselines_forget']):<20} {str(v['B_ec_keeps_retain']):<13} "
              f"{v['C_ec_lowest_cka']}  {'' if v['C_ec_lowest_cka'] else 'beaten by ' + ','.join(v['C_beaten_by'])}"
              f"{'' if v['A_baselines_forget'] else ' not forgotten: ' + ','.join(v['A_failures'])}")


if __name__ == "__main__":
    main()
