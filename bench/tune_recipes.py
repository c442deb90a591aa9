"""Grid over each method's strength knobs on a scenario, the same rule and budget for every method.

    python bench/tune_recipes.py [--preset teach] [--methods ft,ga] [--seeds 0] [--forget 3] \
        [--grid lr=0.01,0.05 epochs=5,10] [--set key=value ...]

Prints forget / retain / test accuracy and the mean intermediate forget CKA for each setting, then
the choice under the rule the presets' recipes follow: among the settings that reach logit-level
forgetting (forget accuracy within 0.05 of the retrained model's), keep the one with the highest
retain accuracy; none qualifying is printed as such. Both accuracies are on the training splits
(forget / retain), never on test data.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.catalog import default_compare  # noqa: E402
from engine.config import apply_sets, make_config  # noqa: E402
from engine.evaluate import evaluate, prepare_references  # noqa: E402
from engine.events import JobContext  # noqa: E402
from engine import results as R  # noqa: E402
from engine.runner import base_models, eval_set, load_scenario  # noqa: E402
from engine.unlearning import unlearn  # noqa: E402


def gaps_to_retrain(entry: dict, retrain: dict, points: list[str]) -> str:
    """'block1 +0.028, ... | block4 -0.427': a run entry's signed gaps to retrain per point."""
    return R.gaps_text(R.layer_gaps({"layers": points, "runs": {"retrain": retrain, "x": entry}}, "x"))


def choose(rows: list[dict], retrain_forget: float, tol: float = 0.05) -> dict | None:
    """The tuning rule: highest retain accuracy among the rows whose forget accuracy is within `tol`
    of retrain's; None when no row qualifies."""
    ok = [r for r in rows if abs(r["forget_acc"] - retrain_forget) <= tol]
    return max(ok, key=lambda r: r["retain_acc"]) if ok else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--methods", default=",".join(default_compare()), help="default: the default comparison's methods")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--forget", default="3")
    ap.add_argument("--grid", nargs="*", default=[], help="key=v1,v2 or key=a,b|c,d for list values (key relative to methods.<m>. unless it has a dot)")
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    grid = {k: v.split("|" if "|" in v else ",") for k, v in (g.split("=", 1) for g in args.grid)}
    for seed in map(int, args.seeds.split(",")):
        base = apply_sets({"seed": seed, "forget": {"classes": [int(c) for c in args.forget.split(",")]}}, args.set)
        cfg = make_config(args.preset, base)
        sc = load_scenario(cfg)
        bases = base_models(sc, JobContext())
        ev = eval_set(sc)
        prepare_references(ev, {"original": bases.original, "retrain": bases.retrain})
        ref, _ = evaluate(bases.retrain, ev)
        orig, _ = evaluate(bases.original, ev)
        rf = ref["metrics"]["forget_acc"]
        print(f"{args.preset} seed {seed} forget {args.forget}: retrain forget {rf:.3f} "
              f"retain {ref['metrics']['retain_acc']:.3f} forget CKA {R.inner_cka(ref, ev.points):.3f} (mean) "
              f"probe {ref['probe_forget_acc'][ev.points[-2]]:.3f} (original probe "
              f"{orig['probe_forget_acc'][ev.points[-2]]:.3f})", flush=True)
        for m in args.methods.split(","):
            rows = []
            for combo in itertools.product(*grid.values()) if grid else [()]:
                sets = [f"{k if '.' in k else f'methods.{m}.{k}'}={v}" for k, v in zip(grid, combo)]
                sc.cfg = make_config(args.preset, apply_sets(base, sets))
                t = time.perf_counter()
                model, _ = unlearn(sc, ev, bases, m, JobContext())
                e, _ = evaluate(model, ev)
                mm = e["metrics"]
                rows.append({"sets": " ".join(sets), "forget_acc": mm["forget_acc"], "retain_acc": mm["retain_acc"]})
                print(f"  {m:<16}{' '.join(sets):<50} forget {mm['forget_acc']:.3f} retain {mm['retain_acc']:.3f} "
                      f"test {mm['test_acc']:.3f} gaps to retrain {gaps_to_retrain(e, ref, ev.points)} "
                      f"probe {e['probe_forget_acc'][ev.points[-2]]:.3f} ({time.perf_counter() - t:.1f}s)", flush=True)
            pick = choose(rows, rf)
            print(f"  -> {m}: {pick['sets'] + ' (retain %.3f)' % pick['retain_acc'] if pick else 'none reached logit-level forgetting'}",
                  flush=True)


if __name__ == "__main__":
    main()
