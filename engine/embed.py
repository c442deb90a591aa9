"""2-D embeddings of layer features: UMAP fit on the original's features, others transformed onto
the same axes (so positions are comparable), PCA as the fallback. Deterministic given the seed.

UMAP spends long stretches in numba code (and in numba's compiler on first use), where a Python
signal handler cannot run and an exception raised from one can be swallowed. With `check` given,
the embedding runs in a helper thread while the calling thread calls check() every 0.1 s: a cancel
or a SIGTERM (check raises) takes effect at once, and the helper stops at its next fit/transform.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np


def _numba_cache():
    if "NUMBA_CACHE_DIR" not in os.environ:
        from .store import home
        os.environ["NUMBA_CACHE_DIR"] = str(Path(home()) / "numba_cache")


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
        _numba_cache()
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
