"""What a new process pays for UMAP before its first embedding, with and without EC Lab's numba setup.

    python bench/bench_umap_warm.py

Each figure is a fresh Python process running engine.embed.warm_umap() (one small fit + transform):
'stock' imports umap first, so its kernels keep umap's own cache settings; 'eclab' lets
engine.embed make every kernel cacheable. Both start from an empty NUMBA_CACHE_DIR, then run again
on the cache the first run filled. Figures only: nothing is asserted.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = """
import time
t = time.perf_counter()
{pre}
from engine.embed import warm_umap
warm_umap()
print(time.perf_counter() - t)
"""


def one(pre: str, cache: str) -> float:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CODE.format(pre=pre)], env=env, capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def main():
    print(f"python {sys.version.split()[0]}, cpus {os.cpu_count()}")
    rows = {}
    for label, pre in (("stock", "import umap"), ("eclab", "")):
        cache = tempfile.mkdtemp(prefix=f"numba-{label}-")
        rows[label] = (one(pre, cache), one(pre, cache), one(pre, cache))
        print(f"{label:<6} empty cache {rows[label][0]:6.1f} s   warm cache {rows[label][1]:6.1f} s, "
              f"{rows[label][2]:6.1f} s", flush=True)
    print(f"\nnew process on a warm cache, eclab / stock: {rows['eclab'][1] / rows['stock'][1]:.2f}")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t:.0f} s")
