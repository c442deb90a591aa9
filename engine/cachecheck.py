"""Is a finished job's folder still good enough to answer a cache hit from?

A cache hit used to be decided by results.json existing. A truncated or hand-edited file was then
served to every later identical submission, and deleting it did not help: cache-hit folders are
hard links of the source's files, so a linked copy was found next. Before serving a hit the
submitter now parses the file and checks the basic schema; a bad entry is moved aside (in every
folder that holds a copy: each is a done job with the same hash, tried in turn) and the job runs.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

METRIC_KEYS = ("forget_acc", "retain_acc", "test_acc", "forget_test_acc", "retain_test_acc", "mia_efficacy",
               "knn_forget_acc", "avg_gap")


def results_problem(results) -> str | None:
    """Why a parsed results.json (run / compare job) is unusable, or None when it passes the basic schema:
    a "runs" dict of runs, each with a "metrics" dict holding every metric key (numbers or null)."""
    if not isinstance(results, dict):
        return "results.json does not hold a JSON object"
    runs = results.get("runs")
    if not isinstance(runs, dict) or not runs:
        return 'results.json has no "runs" (a dict with one entry per run)'
    for name, run in runs.items():
        metrics = run.get("metrics") if isinstance(run, dict) else None
        if not isinstance(metrics, dict):
            return f'run {name!r} in results.json has no "metrics"'
        missing = [k for k in METRIC_KEYS if k not in metrics]
        if missing:
            return f"run {name!r} in results.json lacks the metrics {', '.join(missing)}"
        bad = [k for k in METRIC_KEYS if metrics[k] is not None
               and (isinstance(metrics[k], bool) or not isinstance(metrics[k], (int, float)))]
        if bad:
            return f"run {name!r} in results.json has non-numeric metrics {', '.join(bad)}"
    return None


def folder_problem(folder: Path, kind: str, name: str) -> str | None:
    """Why the finished job folder `folder` (its result file `name`) cannot answer a cache hit, or None."""
    path = Path(folder) / name
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return f"{name} is missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{name} does not parse ({' '.join(str(err).split())})"
    if kind in ("run", "compare"):
        return results_problem(data)
    if not isinstance(data, dict):
        return f"{name} does not hold a JSON object"
    return None


def set_aside(folder: Path, name: str) -> Path | None:
    """Rename a bad result file to a hidden name in its folder (kept for a post-mortem, never served)."""
    src = Path(folder) / name
    dst = src.with_name(f".{name}.bad-{secrets.token_hex(3)}")
    try:
        os.replace(src, dst)
    except OSError:
        return None
    return dst
