"""`python -m engine serve`: what `make run` starts.

A worker (unless one is alive on this home), the default comparisons queued on the first start
(`teach`, where superficial forgetting is plain to see, then `digits`, real handwriting; the pages
fill in while you look), and `streamlit run dashboard/app.py` bound to localhost. Ctrl-C or
SIGTERM stops the server and the worker this command started (the worker requeues its current
job), so the port is free again when it exits.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

from .store import PROJECT_ROOT, home


def queue_defaults_if_empty() -> list[str]:
    """Queue the default comparisons when the store has no comparison yet; returns their job ids."""
    from . import api
    jobs = api.list_jobs(kinds=["compare"], limit=50)
    if any(j["state"] in ("queued", "running", "done") for j in jobs):
        return []
    return api.queue_defaults()


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM takes the same way out as Ctrl-C: children are stopped first


def stop_child(proc: subprocess.Popen | None, sig: int, timeout: float) -> None:
    """Send `sig` to a child this command started, wait for it, SIGKILL it after `timeout` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def cmd_serve(args) -> int:
    from . import api
    root = home()
    signal.signal(signal.SIGTERM, _interrupt)
    worker = server = None
    try:
        if not api.worker_alive():
            log = open(root / "worker.log", "ab")
            worker = subprocess.Popen([sys.executable, "-m", "engine", "worker"], stdout=log, stderr=log,
                                      cwd=PROJECT_ROOT)
            print(f"started a worker (pid {worker.pid}, log {root / 'worker.log'})")
        jobs = queue_defaults_if_empty()
        if jobs:
            print(f"queued the default comparisons ({', '.join(api.DEFAULT_PRESETS)}) as jobs {', '.join(jobs)}; "
                  f"the pages fill in as they run (a few minutes on two CPU cores)")
        print(f"EC Lab: http://{args.address}:{args.port}  (run store: {root})")
        cmd = [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "dashboard" / "app.py"),
               "--server.address", args.address, "--server.port", str(args.port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false"]
        env = {**os.environ, "ECLAB_HOME": str(root)}
        server = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env)
        return server.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal must not cut the clean-up short
            signal.signal(sig, signal.SIG_IGN)
        stop_child(server, signal.SIGTERM, 10)  # frees the port
        stop_child(worker, signal.SIGTERM, 15)  # the worker requeues its current job on SIGTERM


def add_commands(sub) -> None:
    p = sub.add_parser("serve", help="start the dashboard on localhost (and a worker); what `make run` does")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="localhost",
                   help="bind address (default localhost; anything else exposes the dashboard to your network)")
    p.set_defaults(func=cmd_serve)
