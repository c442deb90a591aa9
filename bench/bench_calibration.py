"""What calibration costs: one comparison with `--calibrate off` and one with `--calibrate on`, on
the same warm base models, in one process.

    python bench/bench_calibration.py [--preset digits] [--set forget.classes=[5]] [--set seed=1]

Three comparisons run in a fresh store: a cold one at the recipes (trains the original, retrain
and EC's modules: the first-start cost), then the recipes again and the calibrated one, both on
the cached base models, so their ratio is the price of the search alone. Prints seconds per stage,
the ratio, and the cold calibrated total it implies (cold off + the search's extra). Figures only:
nothing is asserted.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_compare import Timer, compare_spec, scenario_args  # noqa: E402


def main():
    args = scenario_args()
    home = Path(tempfile.mkdtemp(prefix="eclab-bench-calib-"))
    os.environ["ECLAB_HOME"] = str(home)
    import torch

    from engine.compare import format_table
    from engine.runner import execute, prepare

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.1f}")
    totals = {}
    for label, mode in (("cold, recipes", "off"), ("warm, recipes", "off"), ("warm, calibrated", "on")):
        norm, _ = prepare("compare", compare_spec(args, f"calibrate={mode}"))
        timer = Timer()
        out = home / f"out-{label.replace(', ', '-')}"
        execute("compare", norm, out, timer)
        totals[label] = timer.close()
        print(f"\n{label}: {totals[label]:.1f} s (load {os.getloadavg()[0]:.1f})")
        for stage, s in timer.seconds.items():
            print(f"  {stage:<34}{s:8.2f} s")
        print(format_table(json.loads((out / "results.json").read_text())))
    search = totals["warm, calibrated"] - totals["warm, recipes"]
    print(f"\ncalibrated / recipes (warm bases): {totals['warm, calibrated'] / totals['warm, recipes']:.2f}")
    print(f"cold: recipes {totals['cold, recipes']:.1f} s, calibrated ~{totals['cold, recipes'] + search:.1f} s "
          f"(ratio {(totals['cold, recipes'] + search) / totals['cold, recipes']:.2f})")


if __name__ == "__main__":
    main()
