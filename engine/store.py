"""The run store: one home folder (ECLAB_HOME), plain files written atomically.

Layout:
    $ECLAB_HOME/jobs.sqlite          job table (engine.jobs)
    $ECLAB_HOME/runs/<job id>/       config.json, results.json, arrays.npz, model.safetensors, log.txt
    $ECLAB_HOME/cache/<key>/         base models (original, retrain, EC auxiliary modules), splits

Every artifact is written to a temporary name in the same folder and renamed into place, so a
crash never leaves a half-written file under its real name. Nothing is ever unpickled: JSON for
scalars, .npz (allow_pickle=False) for arrays, safetensors for weights.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # used with fullmatch: `$` also matches before "\n"


class CheckpointError(RuntimeError):
    """A stored file is missing, truncated or corrupt."""


def home() -> Path:
    path = Path(os.environ.get("ECLAB_HOME") or PROJECT_ROOT / "runs").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(key: str) -> Path:
    check_id(key)
    path = home() / "cache" / key
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def cache_lock(key: str, wait: Callable[[], None] | None = None) -> Iterator[Path]:
    """Hold the build lock of one cache key (flock on cache/<key>/.lock) so that two workers never
    build the same base model at once: the second waits, then finds the first one's files. The
    kernel drops the lock when its holder dies. `wait` is called between tries (e.g. ctx.check,
    so a waiting job can still be cancelled). Without fcntl (Windows) there is no lock."""
    folder = cache_dir(key)
    with open(folder / ".lock", "a+") as fh:
        try:
            import fcntl
        except ImportError:
            yield folder
            return
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if wait is not None:
                    wait()
                time.sleep(0.2)
        try:
            yield folder
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def remove_stale_tmp(root: Path, older_than_s: float = 3600.0) -> list[Path]:
    """Delete the temporary files of atomic writes (`.*.tmp`) under `root` older than `older_than_s`:
    left behind by a process killed mid-write; a write in progress is never that old."""
    removed = []
    cutoff = time.time() - older_than_s
    for p in Path(root).rglob(".*.tmp") if Path(root).is_dir() else []:
        with contextlib.suppress(OSError):
            if p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink()
                removed.append(p)
    return removed


def runs_without_results(names=("results.json", "embed.json")) -> list[Path]:
    """Run folders (runs/<id>/) holding none of `names`: what a failed, cancelled or killed run leaves
    (config.json and log.txt). Hidden folders (attempts, trash) are the worker's own business."""
    runs = home() / "runs"
    found = sorted(runs.iterdir()) if runs.is_dir() else []
    return [p for p in found if p.is_dir() and not p.name.startswith(".")
            and not any((p / n).is_file() for n in names)]


def check_id(run_id: str) -> str:
    """Run ids and cache keys come from URLs and forms: letters, digits, '_' and '-' only."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r}: use letters, digits, '_' or '-' (at most 64)")
    return run_id


def run_dir(run_id: str, create: bool = False) -> Path:
    path = home() / "runs" / check_id(run_id)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return _atomic(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_bytes(path, json.dumps(obj, indent=1, allow_nan=True, default=_jsonable).encode())


def _jsonable(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN or infinite float replaced by None: strict JSON (what `--json` prints
    for other programs) has neither; results.json itself keeps NaN for the engine's own readers."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    return _atomic(path, lambda fh: np.savez_compressed(fh, **arrays))


def atomic_save_safetensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    return atomic_write_bytes(path, data)


def load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt ({err}); delete it and rerun the job") from None


def load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except Exception as err:  # zipfile.BadZipFile, ValueError, OSError ...
        raise CheckpointError(f"{path} is corrupt ({err}); delete it and rerun the job") from None


def load_safetensors(path: Path, device: str = "cpu") -> dict:
    from safetensors.torch import load_file
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file {path} is missing")
    try:
        return load_file(str(path), device=device)
    except Exception as err:
        raise CheckpointError(f"weights file {path} is corrupt or not a safetensors file ({err}); "
                              f"delete it (or its cache folder) and run again to rebuild it") from None


def load_state_strict(module, path: Path) -> None:
    """Load weights strictly: a missing or unexpected key is an error, never silently skipped."""
    state = load_safetensors(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"weights file {path} does not match the model ({str(err)[:300]}); "
                              f"delete it and run again to rebuild it") from None
