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

from . import results as results_schema


def folder_problem(folder: Path, kind: str, name: str) -> str | None:
    """Why the finished job folder `folder` (its result file `name`) cannot answer a cache hit, or None."""
    path = Path(folder) / name
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return f"{name} is missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{name} does not parse ({' '.join(str(err).split())})"
    if kind in ("run", "compare", "audit"):
        bad = results_schema.problem(data)  # the one schema the writer and every reader use
        return f"{name}: {bad}" if bad else None
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
