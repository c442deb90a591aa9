"""Where superficial forgetting appears: retrain's inner similarity, probe recovery and each
baseline's per-layer excess over retrain, per scenario, written to assets/where_it_appears.json
(the Teach page's "where it appears and where it does not" section reads it; nothing there is
typed by hand).

    python bench/bench_where.py --scenario teach --scenario digits --scenario fashion-mnist \
        --scenario fashion-mnist:narrow_resnet [--from NAME=results.json ...] [--set key=value ...]

A scenario is PRESET or PRESET:ARCH (the preset's default scenario with that architecture); it is
run as a comparison in a temporary ECLAB_HOME (calibrate auto: the recipes on a preset's own
scenario, calibrated elsewhere), unless `--from NAME=PATH` hands in a finished comparison's
results.json. `--set` applies to every run (e.g. eval.umap=false: the figures do not use UMAP).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "assets" / "where_it_appears.json"
REFERENCE_RUNS = ("original", "retrain", "ec")  # the rest of a comparison's runs are the baselines


def scenario_numbers(res: dict) -> dict:
    """The figures of one comparison: per inner layer, retrain's forget CKA to the original and each
    baseline's excess over it (its forget CKA minus retrain's: > 0 = closer to the original than a
    model that never saw the class); probe recovery (mean over inner layers) of original and retrain."""
    from engine.results import inner_layers, mean_over, num

    layers = inner_layers(res["layers"])
    runs = res["runs"]

    def cka(name):
        return {p: num(((runs[name].get("cka_vs_original") or {}).get("forget") or {}).get(p)) for p in layers}

    retrain = cka("retrain")
    excess = {}
    for name, run in runs.items():
        if name in REFERENCE_RUNS or name.endswith("+ec"):
            continue
        mine = cka(name)
        excess[name] = {p: round(mine[p] - retrain[p], 4) for p in layers if mine[p] is not None and retrain[p] is not None}
    forgot = {name: (runs[name].get("calibration") or {}).get("reached", True) for name in excess}
    median = {p: round(statistics.median(e[p] for e in excess.values() if p in e), 4) for p in layers}
    sc = res["scenario"]
    return {"preset": sc["preset"], "dataset": sc["dataset"], "arch": sc["arch"], "forget": sc["forget_label"],
            "seed": sc["seed"], "n_train": sc["n_train"], "layers": layers,
            "retrain_cka": {p: round(v, 4) for p, v in retrain.items() if v is not None},
            "retrain_cka_mean": round(mean_over(retrain, layers), 4),
            "probe_original": round(mean_over(runs["original"].get("probe_forget_acc"), layers), 4),
            "probe_retrain": round(mean_over(runs["retrain"].get("probe_forget_acc"), layers), 4),
            "excess": excess, "median_excess": median, "baselines_forgot": forgot,
            "ec_gap": {p: round(cka("ec")[p] - retrain[p], 4) for p in layers} if "ec" in runs else None,
            "test_acc_original": runs["original"]["metrics"]["test_acc"]}


def reproduce_command(scenarios: list[str], sets: list[str]) -> str:
    """The command that measures these scenarios again. `--from` and `--out` are left out: their paths
    are the measuring machine's (often temporary) files, meaningless elsewhere."""
    return shlex.join(["python", "bench/bench_where.py", *(a for n in scenarios for a in ("--scenario", n)),
                       *(a for kv in sets for a in ("--set", kv))])


def run_comparison(name: str, sets: list[str]) -> tuple[dict, float]:
    from engine.config import apply_sets
    from engine.events import JobContext
    from engine.runner import execute, prepare, store

    preset, _, arch = name.partition(":")
    over = apply_sets({"model": {"arch": arch}} if arch else {}, sets)
    norm, _ = prepare("compare", {"preset": preset, "overrides": over})
    out = Path(os.environ["ECLAB_HOME"]) / "runs-where" / name.replace(":", "-")
    t = time.perf_counter()
    execute("compare", norm, out, JobContext())
    return store.load_json(out / "results.json"), time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", action="append", required=True, help="PRESET or PRESET:ARCH")
    ap.add_argument("--from", dest="given", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    os.environ.setdefault("ECLAB_HOME", tempfile.mkdtemp(prefix="eclab-where-"))
    given = dict(g.split("=", 1) for g in args.given)
    from engine.results import load

    scenarios = []
    for name in args.scenario:
        if name in given:
            res, seconds = load(given[name]), None
        else:
            res, seconds = run_comparison(name, args.set)
        row = {"name": name, **scenario_numbers(res), "seconds": None if seconds is None else round(seconds, 1)}
        scenarios.append(row)
        print(f"{name:<28} retrain inner CKA {row['retrain_cka_mean']:.3f}  probe original/retrain "
              f"{row['probe_original']:.2f}/{row['probe_retrain']:.2f}  median excess per layer "
              + ", ".join(f"{p} {v:+.3f}" for p, v in row["median_excess"].items()), flush=True)
    doc = {"measured": datetime.date.today().isoformat(), "command": reproduce_command(args.scenario, args.set),
           "scenarios": scenarios}
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
