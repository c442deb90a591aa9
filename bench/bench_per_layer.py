"""Per-layer truth on teach (issue 20): retrain's tolerance, default EC, tuned EC and every baseline, per
supervision point, on several scenarios (forget class : seed).

    python bench/bench_per_layer.py [--scenarios 3:0,0:1,8:2] [--trials 48] [--workers 2]
                                    [--spaces wide] [--compare-spaces narrow,wide,ft-ec] [--out FILE]

Per scenario: the default comparison (every baseline and EC at the teach recipes, with the second
retrained model that gives each point its tolerance), then a sweep per space (`python -m engine sweep`,
objective: the worst inner layer's gap to retrain). "Tuned EC" is the trial with the smallest distance
among the feasible ones (forget accuracy within 0.05 of retrain's) that keep retain accuracy within 0.02 of
the original's. The first scenario is swept with every space of --compare-spaces (to choose the default
space by measurement), the others with --spaces. Printed per scenario: per point the tolerance and every
run's signed gap to retrain (forget CKA to the original minus retrain's), and two answers: is tuned EC
within the tolerance at every inner point, and is its worst inner gap smaller than every baseline's?
Figures only: nothing here is a test.
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
sys.path.insert(0, str(ROOT / "bench"))

from bench_claims import FORGET_TOL, RETAIN_TOL, forget_request, run_scenario  # noqa: E402

# the spaces compared (engine/sweep/__init__.py: the space file format)
WEIGHTS = {"low": 0.0, "high": 3.0}
TAU = {"low": 0.05, "high": 5.0, "log": True}
SPACES = {
    "narrow": ({"weights": WEIGHTS, "tau": TAU}, []),  # the space of sweep formats 1 and 2
    "wide": ({"weights": WEIGHTS, "tau": TAU, "lambda_cu": {"low": 0.3, "high": 10.0, "log": True},
              "lr": {"low": 0.002, "high": 0.05, "log": True}, "epochs": {"low": 3, "high": 12}}, []),
    "ft-ec": ({"weights": WEIGHTS, "tau": TAU, "lambda_cu": {"low": 0.3, "high": 10.0, "log": True},
               "beta": {"low": 0.1, "high": 3.0}, "lr": {"low": 0.002, "high": 0.05, "log": True},
               "epochs": {"low": 3, "high": 12}}, ["method=ft", "plugin=ec"]),
}


def comparison(preset: str, cls: str, seed: int) -> tuple[dict, float]:
    """The scenario's default comparison: read back when this store already ran it (same configuration
    hash), else run now (bench_claims.run_scenario)."""
    from engine.config import apply_sets
    from engine.runner import prepare
    sets = ["eval.retrain_band=on"]
    _, key = prepare("compare", {"preset": preset, "overrides": apply_sets({"seed": seed, "forget": forget_request(cls)},
                                                                           sets)})
    done = Path(os.environ["ECLAB_HOME"]) / f"claims-{key}" / "results.json"
    if done.is_file():
        return json.loads(done.read_text()), 0.0
    return run_scenario(preset, cls, seed, sets)


def sweep(preset: str, cls: str, seed: int, space: str, trials: int, workers: int) -> tuple[dict, float]:
    """Run (or continue) one study; returns sweep-show's JSON and the wall time."""
    spec, sets = SPACES[space]
    home = Path(os.environ["ECLAB_HOME"])
    path = home / f"space-{space}.json"
    path.write_text(json.dumps(spec))
    study = f"pl-{preset}-{cls.replace('+', '_')}-{seed}-{space}"
    forget = forget_request(cls)
    flags = (["--forget-classes", ",".join(map(str, forget["classes"]))] if "classes" in forget
             else ["--forget-random", str(forget["random"])])
    cmd = [sys.executable, "-m", "engine", "sweep", "--preset", preset, *flags, "--seed", str(seed),
           "--trials", str(trials), "--workers", str(workers), "--space", str(path), "--study", study]
    for s in sets:
        cmd += ["--set", s]
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t
    out = subprocess.run([sys.executable, "-m", "engine", "sweep-show", "--study", study, "--json"], cwd=ROOT,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out), dt


def tuned(rows: list[dict], original_retain: float) -> dict | None:
    """The trial closest to retrain at its worst inner layer among the feasible ones keeping retain."""
    ok = [r for r in rows if r["state"] == "COMPLETE" and r["feasible"] and r.get("distance") is not None
          and original_retain - r["retain_acc"] <= RETAIN_TOL]
    return min(ok, key=lambda r: (r["distance"], -r["retain_acc"])) if ok else None


def scenario_report(res: dict, tuned_by_space: dict[str, dict | None]) -> dict:
    """Per point: tolerance, default EC's, tuned EC's (per space) and every baseline's signed gap."""
    from engine import results as R
    layers, inner = res["layers"], R.inner_layers(res["layers"])
    tol, measured = R.tolerances(res)
    rows = {r["name"]: r for r in R.summary(res)}
    orig_retain, ret_forget = rows["original"]["retain_acc"], rows["retrain"]["forget_acc"]
    baselines = [n for n in rows if rows[n]["role"] == "method" and n != "ec"]
    forgets = {n for n in baselines if abs(rows[n]["forget_acc"] - ret_forget) <= FORGET_TOL}
    gaps = {n: {g["point"]: g["gap"] for g in rows[n]["gaps"]} for n in rows}
    for space, t in tuned_by_space.items():
        if t is not None:
            gaps[f"EC tuned ({space})"] = t["gaps"]
    out = {"layers": layers, "tolerance": tol, "tolerance_measured": measured, "gaps": gaps,
           "forget_acc": {n: rows[n]["forget_acc"] for n in rows}, "retain_acc": {n: rows[n]["retain_acc"] for n in rows},
           "baselines_forgetting": sorted(forgets), "answers": {}}
    worst = lambda g: max(abs(g[p]) for p in inner)  # noqa: E731
    for space, t in tuned_by_space.items():
        if t is None:
            out["answers"][space] = None
            continue
        within = all(abs(t["gaps"][p]) <= tol[p] + 1e-12 for p in inner)
        beaten = [n for n in baselines if worst(gaps[n]) <= worst(t["gaps"])]
        out["answers"][space] = {"trial": t["number"], "distance": worst(t["gaps"]), "retain_acc": t["retain_acc"],
                                 "forget_acc": t["forget_acc"], "params": t["params"], "within_everywhere": within,
                                 "smaller_than_every_baseline": not beaten, "baselines_as_close": beaten,
                                 "default_ec_distance": worst(gaps["ec"]), "orig_retain": orig_retain}
    return out


def print_report(name: str, rep: dict) -> None:
    from engine.results import inner_layers
    layers, inner = rep["layers"], inner_layers(rep["layers"])
    print(f"\n== teach {name}: signed gap to retrain per point (forget CKA to the original minus retrain's; "
          f"the last point shown apart){'' if rep['tolerance_measured'] else ' [tolerance ASSUMED]'}")
    print(f"{'run':<22}" + "".join(f"{p:>9}" for p in layers) + f"{'worst inner':>13}{'forget':>8}{'retain':>8}")
    print(f"{'tolerance (2 retrains)':<22}" + "".join(f"{rep['tolerance'][p]:>9.3f}" for p in layers))
    order = ["ec"] + [n for n in rep["gaps"] if n.startswith("EC tuned")] + [
        n for n in rep["gaps"] if n not in ("original", "retrain", "ec") and not n.startswith("EC tuned")]
    for n in order:
        g = rep["gaps"][n]
        worst = max(abs(g[p]) for p in inner)
        fa, ra = rep["forget_acc"].get(n), rep["retain_acc"].get(n)
        label = "EC default" if n == "ec" else n
        print(f"{label:<22}" + "".join(f"{g[p]:>+9.3f}" for p in layers) + f"{worst:>13.3f}"
              + (f"{fa:>8.3f}{ra:>8.3f}" if fa is not None else ""))
    for space, a in rep["answers"].items():
        if a is None:
            print(f"tuned EC ({space}): no feasible trial kept retain within {RETAIN_TOL} of the original's")
            continue
        print(f"tuned EC ({space}, trial {a['trial']}): worst inner gap {a['distance']:.3f} (default EC "
              f"{a['default_ec_distance']:.3f}); within the tolerance at every inner point: "
              f"{'yes' if a['within_everywhere'] else 'no'}; smaller than every baseline's: "
              f"{'yes' if a['smaller_than_every_baseline'] else 'no (as close or closer: ' + ', '.join(a['baselines_as_close']) + ')'}"
              f"; retain {a['retain_acc']:.3f}, forget {a['forget_acc']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="teach")
    ap.add_argument("--scenarios", default="3:0,0:1,8:2")
    ap.add_argument("--trials", type=int, default=48)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--spaces", default="wide", help="spaces swept on every scenario after the first")
    ap.add_argument("--compare-spaces", default="narrow,wide,ft-ec", help="spaces swept on the first scenario")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "per_layer_teach.json"))
    args = ap.parse_args()
    os.environ.setdefault("ECLAB_HOME", tempfile.mkdtemp(prefix="eclab-per-layer-"))
    print(f"ECLAB_HOME={os.environ['ECLAB_HOME']}", flush=True)
    pairs = [(p.split(":")[0], int(p.split(":")[1])) for p in args.scenarios.split(",")]
    report = {}
    for i, (cls, seed) in enumerate(pairs):
        res, secs = comparison(args.preset, cls, seed)
        print(f"\n[{cls}:{seed}] comparison in {secs:.0f} s", flush=True)
        spaces = (args.compare_spaces if i == 0 else args.spaces).split(",")
        tuned_by_space, sweeps = {}, {}
        orig_retain = res["runs"]["original"]["metrics"]["retain_acc"]
        for space in spaces:
            show, dt = sweep(args.preset, cls, seed, space, args.trials, args.workers)
            rows = show["trials"]
            tuned_by_space[space] = tuned(rows, orig_retain)
            done = [r for r in rows if r["state"] == "COMPLETE"]
            hidden = sum(1 for r in done if r["distance"] < max(abs(r["gaps"][p]) for p in list(r["gaps"])[:-1]) - 1e-12)
            sweeps[space] = {"seconds": dt, "trials": len(rows), "complete": len(done),
                             "reported_below_own_worst_layer": hidden}
            print(f"[{cls}:{seed}] sweep {space}: {len(done)}/{len(rows)} trials complete in {dt:.0f} s; "
                  f"trials reporting a distance below their own worst inner gap: {hidden}", flush=True)
        rep = scenario_report(res, tuned_by_space)
        rep["sweeps"], rep["compare_seconds"] = sweeps, secs
        report[f"{cls}:{seed}"] = rep
        print_report(f"class {cls}, seed {seed}", rep)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
