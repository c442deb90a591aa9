"""Server-side run time of each dashboard page (streamlit AppTest), cold cache and cached.

    python bench/bench_pages.py                 # against a fresh fixture store (synthetic numbers)
    python bench/bench_pages.py --home runs     # against a real store (read only; nothing is queued)

For each page: "first" = the page's run right after st.cache_data is cleared (results and arrays
read from disk, figures built), "cached" = the median of the following runs (the usual case: a
widget change, a rerun, a second tab). AppTest's own overhead (script thread, message parsing) is
included, so the numbers slightly overstate what a browser session costs. Printed, never asserted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PAGES = [p for p in ["overview", "launch", "layers", "embeddings", "compare", "sweep", "teach"]
         if (ROOT / "dashboard" / "views" / f"{p}.py").is_file()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="an existing ECLAB_HOME (default: build a fixture store in a temp dir)")
    ap.add_argument("--repeat", type=int, default=5, help="cached runs per page (median reported)")
    args = ap.parse_args()
    os.environ["ECLAB_NO_AUTOSTART"] = "1"
    if args.home:
        os.environ["ECLAB_HOME"] = str(Path(args.home).resolve())
        source = f"store {os.environ['ECLAB_HOME']}"
    else:
        tmp = tempfile.mkdtemp(prefix="eclab-bench-")
        os.environ["ECLAB_HOME"] = tmp
        # in a child process: building the fixture imports the engine's runner (and torch), the pages must not
        import subprocess
        subprocess.run([sys.executable, str(ROOT / "tests" / "fixtures_store.py"), tmp, "full"], check=True,
                       stdout=subprocess.DEVNULL, env=dict(os.environ))
        source = f"fixture store {tmp} (synthetic numbers)"

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    t0 = time.perf_counter()
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    boot = time.perf_counter() - t0
    rows = []
    for page in PAGES:
        st.cache_data.clear()
        at.switch_page(f"views/{page}.py")
        t = time.perf_counter()
        at.run()
        first = time.perf_counter() - t
        if at.exception:
            print(f"{page}: exception {[e.value for e in at.exception]}", file=sys.stderr)
        cached = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            at.run()
            cached.append(time.perf_counter() - t)
        rows.append((page, first, statistics.median(cached), max(cached), len(at.get("plotly_chart"))))

    print(f"EC Lab page run times ({source}; {os.cpu_count()} CPUs, python {sys.version.split()[0]})")
    print(f"first app run (imports, overview, cold cache): {boot:.3f} s")
    print(f"{'page':<12} {'first (s)':>10} {'cached median (s)':>18} {'cached max (s)':>15} {'figures':>8}")
    for page, first, med, mx, nfig in rows:
        print(f"{page:<12} {first:>10.3f} {med:>18.3f} {mx:>15.3f} {nfig:>8}")
    worst = max(r[2] for r in rows)
    print(f"slowest cached page: {worst:.3f} s (budget 0.5 s: {'within' if worst < 0.5 else 'OVER'})")
    print(f"torch imported by the pages: {'torch' in sys.modules}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
