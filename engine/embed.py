"""2-D embeddings of layer features: UMAP fit on the original's features, others transformed onto
the same axes (so positions are comparable), PCA as the fallback. Deterministic given the seed."""
from __future__ import annotations

import os
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


def embed(feats: dict[str, np.ndarray], reference: str = "original", method: str = "umap", seed: int = 0,
          n_neighbors: int = 15) -> dict[str, np.ndarray]:
    """Fit on feats[reference], transform every other entry; returns float32 (n, 2) per name."""
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
            out = {reference: reducer.fit_transform(scaled[reference])}
            for k, v in scaled.items():
                if k != reference:
                    out[k] = reducer.transform(v)
    else:
        from sklearn.decomposition import PCA
        pca = PCA(n_components=2, random_state=seed).fit(scaled[reference])
        out = {k: pca.transform(v) for k, v in scaled.items()}
    return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}
