"""Fashion-MNIST on a fresh machine: `python -m engine compare --preset fashion-mnist --download`,
cold (an empty data folder and an empty run store), timed from the outside.

    python bench/bench_fashion.py [--keep DIR] [--cmd "python -m engine"] [-- extra compare flags]

Prints the command's own progress lines and table, then the wall time: the download (official
source, else Debian's package, both checked), the stratified subset of the preset, the base models,
the ten methods at the preset's recipes, evaluation and UMAP. Figures only: nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="folder for the data, the store and the results (default: a new temp folder)")
    ap.add_argument("--cmd", default=f"{shlex.quote(sys.executable)} -m engine", help="the engine command to time")
    ap.add_argument("extra", nargs="*", help="more `compare` flags, after --")
    args = ap.parse_args()
    base = Path(args.keep or tempfile.mkdtemp(prefix="eclab-fashion-"))
    data, home, out = base / "data", base / "home", base / "out"
    if (data / "FashionMNIST").exists() or home.exists():
        sys.exit(f"{base} is not fresh: give an empty --keep folder")
    env = {**os.environ, "ECLAB_DATA": str(data), "ECLAB_HOME": str(home)}
    cmd = [*shlex.split(args.cmd), "compare", "--preset", "fashion-mnist", "--download", "--out", str(out), *args.extra]
    print("$", " ".join(cmd), f"(ECLAB_DATA={data}, ECLAB_HOME={home}, cpus {os.cpu_count()})", flush=True)
    t = time.perf_counter()
    rc = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, env=env).returncode
    wall = time.perf_counter() - t
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nexit {rc}; wall time {wall:.1f} s ({wall / 60:.2f} min), cold: data fetched into {data}; "
          f"CPU time of the command {used.ru_utime + used.ru_stime:.1f} s (on a shared machine the wall time "
          f"also counts the other processes' share of the cores)")


if __name__ == "__main__":
    main()
