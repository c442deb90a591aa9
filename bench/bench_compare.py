"""Time the default digits comparison, cold (base models trained) and warm (cached), by stage.

    python bench/bench_compare.py [--preset digits] [--methods ...] [--set key=value ...]

Prints a table of seconds per stage (from the engine's own progress events) and the total; the
warm/cold ratio is measured in the same process. Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.events import JobContext  # noqa: E402


class Timer(JobContext):
    """Seconds per stage, from the engine's own progress events."""

    def __init__(self):
        self.t0 = self.last = time.perf_counter()
        self.stage = "load data"
        self.seconds: dict[str, float] = {}

    def emit(self, e):
        if e.get("type") != "stage":
            return
        name = e["stage"] if e["stage"] in ("original", "retrain", "aux", "embed") else f"{e['stage']}: {e['name']}"
        if name != self.stage:
            now = time.perf_counter()
            self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + now - self.last
            self.stage, self.last = name, now

    def close(self):
        now = time.perf_counter()
        self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + now - self.last
        return now - self.t0


def scenario_args() -> argparse.Namespace:
    """--preset, --methods, --set: the scenario a bench compares on (shared by the bench scripts)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="digits")
    ap.add_argument("--methods", default=None)
    ap.add_argument("--set", action="append", default=[])
    return ap.parse_args()


def compare_spec(args: argparse.Namespace, *extra_sets: str) -> dict:
    """The compare job spec of those flags, with `extra_sets` applied after --set."""
    from engine.config import apply_sets
    spec = {"preset": args.preset, "overrides": apply_sets({}, [*args.set, *extra_sets])}
    if args.methods:
        spec["methods"] = args.methods.split(",")
    return spec


def main():
    args = scenario_args()
    os.environ["ECLAB_HOME"] = tempfile.mkdtemp(prefix="eclab-bench-")
    import torch

    from engine.runner import execute, prepare

    norm, _ = prepare("compare", compare_spec(args))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"cuda {torch.cuda.is_available()}")
    totals = {}
    for label in ("cold", "warm"):
        timer = Timer()
        execute("compare", norm, Path(os.environ["ECLAB_HOME"]) / f"out-{label}", timer)
        totals[label] = timer.close()
        print(f"\n{label} run: {totals[label]:.1f} s")
        for stage, s in timer.seconds.items():
            print(f"  {stage:<34}{s:8.2f} s")
    print(f"\nwarm / cold: {totals['warm'] / totals['cold']:.2f}")


if __name__ == "__main__":
    main()
