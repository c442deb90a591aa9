"""2-D embeddings of layer features: UMAP fit on the original's features, others transformed onto
the same axes (so positions are comparable), PCA as the fallback. Deterministic given the seed.

UMAP spends long stretches in numba code (and in numba's compiler on first use), where a Python
signal handler cannot run and an exception raised from one can be swallowed. With `check` given,
the embedding runs in a helper thread while the calling thread calls check() every 0.1 s: a cancel
or a SIGTERM (check raises) takes effect at once, and the helper stops at its next fit/transform.
"""
from __future__ import annotations

import functools
import os
import sys
import threading
from pathlib import Path

import numpy as np


def numba_cache_dir() -> Path:
    """Where numba caches umap's compiled kernels: NUMBA_CACHE_DIR, else inside the virtual
    environment (the cache belongs to the installed numba/umap; `make venv` fills it), else the run
    store's home."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    venv = Path(sys.prefix)
    if sys.prefix != sys.base_prefix and os.access(venv, os.W_OK):
        return venv / "numba_cache"
    from .store import home
    return Path(home()) / "numba_cache"


_numba_ready = False
_numba_lock = threading.Lock()


def _prepare_numba() -> None:
    """Point numba at its cache and make every kernel umap and pynndescent define cacheable. They
    leave many uncached (`numba.njit` without cache=True), so each new process spent ~18 s of one core
    recompiling them even with a warm cache; with cache=True it is ~2-3 s (bench/results/umap_warm.txt).
    A kernel numba cannot cache still compiles as before (numba warns and goes on)."""
    global _numba_ready
    with _numba_lock:  # the worker's warm-up thread and a job may both get here first
        if not _numba_ready:
            _patch_and_import()
            _numba_ready = True


def _patch_and_import() -> None:
    os.environ["NUMBA_CACHE_DIR"] = str(numba_cache_dir())
    import numba
    if "umap" not in sys.modules and "pynndescent" not in sys.modules:
        plain = {name: getattr(numba, name) for name in ("njit", "jit")}
        try:
            for name, decorator in plain.items():
                setattr(numba, name, _cache_by_default(decorator))
            import umap  # noqa: F401 - defines its kernels under the patched decorators
        finally:
            for name, decorator in plain.items():
                setattr(numba, name, decorator)


def _cache_by_default(decorator):
    @functools.wraps(decorator)
    def wrapper(*args, **kwargs):
        kwargs.setdefault("cache", True)
        return decorator(*args, **kwargs)
    return wrapper


def warm_umap() -> float:
    """Compile umap's numba kernels once (cached on disk via NUMBA_CACHE_DIR); returns seconds."""
    import time
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    embed({"original": rng.normal(size=(60, 8)).astype(np.float32),
           "other": rng.normal(size=(60, 8)).astype(np.float32)}, method="umap", seed=0)
    return time.perf_counter() - t


class _Halted(Exception):
    """The caller gave up on this embedding; raised in the helper thread between fits."""


def embed(feats: dict[str, np.ndarray], reference: str = "original", method: str = "umap", seed: int = 0,
          n_neighbors: int = 15, check=None) -> dict[str, np.ndarray]:
    """Fit on feats[reference], transform every other entry; returns float32 (n, 2) per name.
    check: called in this thread every 0.1 s while the embedding runs in a helper thread; whatever it
    raises (engine.events.Cancelled, a signal's exception) is raised here at once."""
    if check is None:
        return _embed(feats, reference, method, seed, n_neighbors, threading.Event())
    return polled(lambda halt: _embed(feats, reference, method, seed, n_neighbors, halt), check)


def polled(fn, check, interval: float = 0.1):
    """fn(halt) in a daemon thread; this thread calls check() until it ends. When check (or a signal
    handler) raises, halt is set, so fn stops at its next safe point, and the exception goes on at once."""
    halt = threading.Event()
    box: dict = {}

    def target():
        try:
            box["value"] = fn(halt)
        except BaseException as err:  # noqa: BLE001 - handed to the caller below
            box["error"] = err

    t = threading.Thread(target=target, name="eclab-embed", daemon=True)
    t.start()
    try:
        while t.is_alive():
            check()
            t.join(interval)
    except BaseException:
        halt.set()
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]


def _embed(feats: dict[str, np.ndarray], reference: str, method: str, seed: int, n_neighbors: int,
           halt: threading.Event) -> dict[str, np.ndarray]:
    def safe_point():
        if halt.is_set():
            raise _Halted()

    ref = np.asarray(feats[reference], dtype=np.float32)
    mean, std = ref.mean(0), ref.std(0) + 1e-6
    scaled = {k: (np.asarray(v, dtype=np.float32) - mean) / std for k, v in feats.items()}
    if method == "umap" and len(ref) > n_neighbors + 1:
        _prepare_numba()
        import warnings
        import umap
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" and numba notices
            reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=0.1, random_state=seed, n_components=2)
            safe_point()
            out = {reference: reducer.fit_transform(scaled[reference])}
            for k, v in scaled.items():
                if k != reference:
                    safe_point()
                    out[k] = reducer.transform(v)
    else:
        from sklearn.decomposition import PCA
        pca = PCA(n_components=2, random_state=seed).fit(scaled[reference])
        out = {k: pca.transform(v) for k, v in scaled.items()}
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
