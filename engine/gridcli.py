"""The grid commands: `python -m engine grid | grid-show | grid-cancel | grids` (engine/grid.py), and
run_grid, which starts local workers for a grid, follows it to the end and stops them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import store
from .compare import add_set_flag
from .config import apply_sets
from .grid import (SYNTAX, _FINAL, cancel_grid, format_markdown, format_table, get_grid, grid_csv, grid_dir,
                   grid_table, list_grids, parse_scenarios, submit_grid, write_results)


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_worker(k: int) -> int:
    """Torch threads of each of k local workers: the machine's cores shared out, at least one."""
    return max(1, cpus() // max(1, int(k)))


def start_workers(k: int, log_dir: Path, env: dict | None = None, threads: int | None = None) -> list[subprocess.Popen]:
    """k `python -m engine worker` processes on this machine's $ECLAB_HOME, each with `threads`
    (default threads_per_worker(k)) torch threads (OMP_NUM_THREADS, read by torch at start), in their own
    session (a Ctrl-C in the terminal reaches this process only, which cancels the grid first), each
    logging to log_dir/worker-<i>.log."""
    threads = str(threads or threads_per_worker(k))
    base = dict(os.environ if env is None else env)
    base.update({"ECLAB_HOME": str(store.home()), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    root = str(store.PROJECT_ROOT)
    base["PYTHONPATH"] = root + (os.pathsep + base["PYTHONPATH"] if base.get("PYTHONPATH") else "")
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(int(k)):
        with open(log_dir / f"worker-{i + 1}.log", "ab") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", "engine", "worker"], cwd=root, env=base,
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, close_fds=True))
    return procs


def stop_workers(procs: list[subprocess.Popen], timeout: float = 30.0) -> None:
    """SIGTERM each worker this process started (by its own pid), then wait; SIGKILL one that hangs."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    end = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def _cell_line(grid: dict, cell: dict, t0: float) -> str:
    done = sum(c["state"] in _FINAL for c in grid["cells"])
    text = f"[{time.monotonic() - t0:6.0f}s] {done}/{len(grid['cells'])} {cell['scenario']:<10} {cell['state']}"
    text += f" (job {cell['job_id']}{', cache hit' if cell.get('cached') else ''})"
    if cell.get("error"):
        text += f": {cell['error']}"
    return text


def follow(grid_id: str, procs: list[subprocess.Popen] | None = None, poll: float = 1.0, out=None,
           cancel_wait: float = 60.0) -> dict:
    """Print a line per finished cell until every cell is final; returns the final get_grid. Ctrl-C
    cancels the grid's cells (and waits up to cancel_wait s for running ones to stop), then re-raises.
    RuntimeError when the workers this process started have all exited with cells left."""
    out = out or sys.stdout
    t0, seen, warned, checked = time.monotonic(), set(), False, time.monotonic()
    try:
        while True:
            grid = get_grid(grid_id)
            for cell in grid["cells"]:
                if cell["state"] in _FINAL and cell["job_id"] not in seen:
                    seen.add(cell["job_id"])
                    print(_cell_line(grid, cell, t0), file=out, flush=True)
            if all(c["state"] in _FINAL for c in grid["cells"]):
                return grid
            if procs and all(p.poll() is not None for p in procs):
                raise RuntimeError(f"every worker started for grid {grid_id} exited with cells left "
                                   f"(logs: {grid_dir(grid_id)}/worker-*.log)")
            if not procs and not warned and time.monotonic() - checked > 10:
                from .jobs import worker_alive
                checked = time.monotonic()
                if not worker_alive():
                    warned = True
                    print("note: no worker is running; start one with `python -m engine worker` (or rerun with "
                          "--workers K)", file=out, flush=True)
            time.sleep(poll)
    except KeyboardInterrupt:
        n = cancel_grid(grid_id)
        print(f"\ninterrupted: grid {grid_id} cancelled ({n} cell(s) cancelled); waiting for running cells to stop",
              file=out, flush=True)
        end = time.monotonic() + cancel_wait
        while time.monotonic() < end and any(c["state"] == "running" for c in get_grid(grid_id)["cells"]):
            time.sleep(0.5)
        raise


def run_grid(grid_id: str, workers: int | None = None, out=None, env: dict | None = None,
             threads: int | None = None) -> dict:
    """Start `workers` local workers (None: make sure one background worker runs, as the dashboard
    does, and leave it running), follow the grid to the end, stop the workers started, write the
    results file. Returns grid_table."""
    from .jobs import ensure_worker
    out = out or sys.stdout
    procs: list[subprocess.Popen] = []
    if workers:
        procs = start_workers(workers, grid_dir(grid_id), env, threads)
        print(f"started {workers} worker(s), {threads or threads_per_worker(workers)} torch thread(s) each "
              f"(logs: {grid_dir(grid_id)}/worker-*.log)", file=out, flush=True)
    elif ensure_worker():
        print(f"started a background worker (log: {store.home() / 'worker.log'})", file=out, flush=True)
    try:
        follow(grid_id, procs, out=out)
    finally:
        stop_workers(procs)
    path = write_results(grid_id)
    print(f"wrote {path} and {path.with_suffix('.csv').name}", file=out, flush=True)
    return grid_table(grid_id)


# -- commands -------------------------------------------------------------------------------------
def add_commands(sub) -> None:
    p = sub.add_parser("grid", help="a scenario grid: one comparison per scenario, run by K workers",
                       description="Queue one comparison per scenario (" + SYNTAX + "), run them with local workers, "
                                   "print each finished cell, write $ECLAB_HOME/grids/<id>/results.json and .csv and "
                                   "print the scenario x method table. Ctrl-C cancels the grid's cells.")
    p.add_argument("--preset", default="digits", help="the preset every scenario runs (default digits)")
    p.add_argument("--scenarios", required=True, metavar="S[,S...]", help=SYNTAX.replace("%", "%%"))
    p.add_argument("--methods", metavar="M[,M...]", help="methods of each comparison (default: the default compare)")
    add_set_flag(p)
    p.add_argument("--workers", type=int, metavar="K",
                   help="start K local workers (each with cpus // K torch threads) and stop them at the end "
                        "(default: make sure one background worker runs, as the dashboard does)")
    p.add_argument("--threads", type=int, metavar="T",
                   help="torch threads of each worker --workers starts (default cpus // K; on a machine other "
                        "processes load, fewer threads than cores avoid threads fighting over them)")
    p.add_argument("--no-wait", action="store_true", help="queue the grid, print its id and return")
    p.add_argument("--no-cache", action="store_true",
                   help="run every cell again even where the same configuration already finished")
    p.set_defaults(func=_cmd_grid)

    p = sub.add_parser("grid-show", help="a grid's scenario x method table (or --csv, --json, --markdown)")
    p.add_argument("id")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--csv", action="store_true", help="one row per (scenario, method)")
    g.add_argument("--json", action="store_true", help="the whole table as JSON")
    g.add_argument("--markdown", action="store_true",
                   help="a markdown row per scenario: tolerances, EC's distance, the closest forgetting baseline")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("grid-cancel", help="cancel a grid's queued and running cells")
    p.add_argument("id")
    p.set_defaults(func=_cmd_cancel)

    p = sub.add_parser("grids", help="list scenario grids")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_list)


def _cmd_grid(args) -> int:
    for flag, value in (("--workers", args.workers), ("--threads", args.threads)):
        if value is not None and value < 1:
            print(f"error: {flag} needs at least 1", file=sys.stderr)
            return 2
    overrides = apply_sets({}, args.sets) if args.sets else None
    grid = submit_grid(args.preset, parse_scenarios(args.scenarios), args.methods, overrides,
                       use_cache=not args.no_cache)
    cached = sum(c["cached"] for c in grid["cells"])
    print(f"grid {grid['id']}: {len(grid['cells'])} scenario(s) of {grid['preset']}, methods "
          f"{','.join(grid['methods'] or [])}" + (f"; {cached} from the cache" if cached else ""), flush=True)
    if args.no_wait:
        from .jobs import worker_alive
        if any(c["state"] == "queued" for c in grid["cells"]) and not worker_alive():
            print("note: no worker is running; start one with `python -m engine worker`", file=sys.stderr)
        return 0
    table = run_grid(grid["id"], args.workers, threads=args.threads)
    print(format_table(table))
    return 0 if table["state"] == "done" else 1


def _find(grid_id: str):
    try:
        return grid_table(grid_id), 0
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return None, 2


def _cmd_show(args) -> int:
    table, rc = _find(args.id)
    if rc:
        return rc
    if table is None:
        print(f"error: no grid {args.id}", file=sys.stderr)
        return 1
    if args.csv:
        sys.stdout.write(grid_csv(table))
    elif args.json:
        print(json.dumps(store.json_safe(table), indent=1, allow_nan=False))
    elif args.markdown:
        print(format_markdown(table))
    else:
        print(format_table(table))
    return 0


def _cmd_cancel(args) -> int:
    try:
        n = cancel_grid(args.id)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1 if str(err).startswith("no grid") else 2
    print(f"grid {args.id} cancelled: {n} cell(s) cancelled")
    return 0


def _cmd_list(args) -> int:
    grids = list_grids(args.limit)
    if args.json:
        print(json.dumps(store.json_safe(grids), indent=1, allow_nan=False))
        return 0
    if not grids:
        print("no grids")
        return 0
    rows = [("ID", "PRESET", "STATE", "PROG", "CELLS", "CREATED")]
    for g in grids:
        done = sum(c["state"] == "done" for c in g["cells"])
        rows.append((g["id"], g["preset"] or "", g["state"], f"{100 * g['progress']:.0f}%",
                     f"{done}/{len(g['cells'])}", time.strftime("%Y-%m-%d %H:%M", time.localtime(g["created"]))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0
