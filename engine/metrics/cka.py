"""Linear centred kernel alignment (CKA).

Three estimators are provided:

* :func:`linear_cka` -- full-batch CKA between two representations of the same
  ``n`` samples, biased (Kornblith et al. 2019) or unbiased (HSIC U-statistic of
  Song et al. 2012, as used by Nguyen, Raghu & Kornblith 2021).
* :class:`MinibatchCKA` -- the minibatch estimator of Nguyen, Raghu & Kornblith
  (arXiv 2010.15327): unbiased HSIC is accumulated over minibatches and the
  sums are normalised at the end.
* :func:`cka_matrix` / :func:`minibatch_cka` -- convenience wrappers that split
  features into fixed-size minibatches (see :func:`batch_slices`).

All arithmetic is done in float64 on the device of the input tensor.  Inputs can
be torch tensors or numpy arrays; every dimension after the first is flattened,
so ``(n, C, H, W)`` activations are accepted directly.

Degenerate inputs: if either representation is constant (every sample has the
same feature vector, so it has zero variance) CKA is undefined (0/0) and
``float('nan')`` is returned.  Ordinary (non-constant) inputs never give NaN.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .inputs import as_2d, as_tensor

__all__ = [
    "linear_cka",
    "MinibatchCKA",
    "cka_matrix",
    "minibatch_cka",
    "batch_slices",
    "hsic1",
]


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _to_2d(x, device=None) -> torch.Tensor:
    """Return ``x`` as a float64 tensor of shape (n, d) (trailing dims flattened)."""
    return as_2d(x, torch.float64, device)


def _is_constant(x: torch.Tensor) -> bool:
    """True when all rows of ``x`` are identical (zero variance in every feature)."""
    return bool((x == x[:1]).all())


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"CKA inputs must have the same number of samples, got {x.shape[0]} and {y.shape[0]}"
        )


def _unbiased_terms(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """Unbiased HSIC_1(K,L), HSIC_1(K,K), HSIC_1(L,L) for linear kernels.

    ``x`` (n, d1), ``y`` (n, d2) float64, n >= 4.  Features are centred first
    (the U-statistic is invariant to shifting the features; centring only
    improves numerical conditioning).  Uses feature space (O(n d^2)) when both
    widths are below n, otherwise Gram matrices (O(n^2 d)).
    """
    n = x.shape[0]
    x_const = _is_constant(x)
    y_const = _is_constant(y)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)

    if max(x.shape[1], y.shape[1]) < n:
        # K~ = XX^T with zero diagonal, expressed through feature-space sums.
        dk = (x * x).sum(1)  # diag K
        dl = (y * y).sum(1)
        sx = x.sum(0)
        sy = y.sum(0)
        rk = x @ sx - dk  # K~ 1
        rl = y @ sy - dl
        sk = sx.dot(sx) - dk.sum()  # 1' K~ 1
        sl = sy.dot(sy) - dl.sum()
        tr_kl = (x.T @ y).pow(2).sum() - (dk * dl).sum()
        tr_kk = (x.T @ x).pow(2).sum() - (dk * dk).sum()
        tr_ll = (y.T @ y).pow(2).sum() - (dl * dl).sum()
    else:
        k = x @ x.T
        l = y @ y.T
        k.fill_diagonal_(0.0)
        l.fill_diagonal_(0.0)
        rk = k.sum(1)
        rl = l.sum(1)
        sk = rk.sum()
        sl = rl.sum()
        tr_kl = (k * l).sum()
        tr_kk = (k * k).sum()
        tr_ll = (l * l).sum()

    def h(tr, s1, s2, r1, r2):
        val = (tr + s1 * s2 / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * r1.dot(r2)) / (n * (n - 3))
        return float(val)

    hxy = h(tr_kl, sk, sl, rk, rl)
    hxx = h(tr_kk, sk, sk, rk, rk)
    hyy = h(tr_ll, sl, sl, rl, rl)
    # Constant representations have exactly zero HSIC; avoid rounding residue.
    if x_const:
        hxy, hxx = 0.0, 0.0
    if y_const:
        hxy, hyy = 0.0, 0.0
    return hxy, hxx, hyy


def _ratio(num: float, a: float, b: float) -> float:
    denom = a * b
    if not (denom > 0.0) or not math.isfinite(denom):
        return float("nan")
    return float(num / math.sqrt(denom))


def hsic1(x, y) -> float:
    """Unbiased linear-kernel HSIC_1 (Song et al. 2012) between ``x`` and ``y`` (n >= 4)."""
    xt, yt = _to_2d(x), _to_2d(y)
    _check_pair(xt, yt)
    if xt.shape[0] < 4:
        raise ValueError(f"unbiased HSIC needs at least 4 samples, got n={xt.shape[0]}")
    yt = yt.to(xt.device)
    return _unbiased_terms(xt, yt)[0]


# --------------------------------------------------------------------------- #
# full-batch CKA
# --------------------------------------------------------------------------- #
def linear_cka(x, y, unbiased: bool = False) -> float:
    """Linear CKA between representations ``x`` (n, ...) and ``y`` (n, ...).

    Biased: ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on centred features
    (Gram form ``<K, L> / (||K|| ||L||)`` when a width is >= n).
    Unbiased: ``HSIC_1(K,L) / sqrt(HSIC_1(K,K) HSIC_1(L,L))`` with the U-statistic
    HSIC_1 of Song et al.; requires n >= 4 (ValueError otherwise).

    Returns ``nan`` when either input is constant across samples (CKA undefined).
    """
    xt = _to_2d(x)
    yt = _to_2d(y, device=xt.device)
    _check_pair(xt, yt)
    n = xt.shape[0]
    if unbiased:
        if n < 4:
            raise ValueError(f"unbiased CKA needs at least 4 samples, got n={n}")
        hxy, hxx, hyy = _unbiased_terms(xt, yt)
        return _ratio(hxy, hxx, hyy)

    if n < 2:
        raise ValueError(f"CKA needs at least 2 samples, got n={n}")
    if _is_constant(xt) or _is_constant(yt):
        return float("nan")
    xc = xt - xt.mean(0, keepdim=True)
    yc = yt - yt.mean(0, keepdim=True)
    if max(xc.shape[1], yc.shape[1]) < n:
        num = (yc.T @ xc).pow(2).sum()
        nx = torch.linalg.matrix_norm(xc.T @ xc)
        ny = torch.linalg.matrix_norm(yc.T @ yc)
    else:
        k = xc @ xc.T
        l = yc @ yc.T
        num = (k * l).sum()
        nx = torch.linalg.matrix_norm(k)
        ny = torch.linalg.matrix_norm(l)
    nx, ny = float(nx), float(ny)
    return _ratio(float(num), nx * nx, ny * ny)


# --------------------------------------------------------------------------- #
# minibatch CKA
# --------------------------------------------------------------------------- #
class MinibatchCKA:
    """Minibatch linear CKA (Nguyen, Raghu & Kornblith 2021, arXiv 2010.15327).

    ``update(x, y)`` adds the unbiased HSIC_1 of one minibatch to three running
    sums; ``value()`` returns ``sum HSIC(K,L) / sqrt(sum HSIC(K,K) * sum HSIC(L,L))``.
    Batches with fewer than 4 samples are skipped silently and counted in
    ``skipped``.  ``value()`` is ``nan`` if a representation was constant in every
    accumulated batch.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.hsic_xy = 0.0
        self.hsic_xx = 0.0
        self.hsic_yy = 0.0
        self.n_batches = 0
        self.skipped = 0

    def update(self, x, y) -> None:
        xt = _to_2d(x)
        yt = _to_2d(y, device=xt.device)
        _check_pair(xt, yt)
        if xt.shape[0] < 4:
            self.skipped += 1
            return
        hxy, hxx, hyy = _unbiased_terms(xt, yt)
        self.hsic_xy += hxy
        self.hsic_xx += hxx
        self.hsic_yy += hyy
        self.n_batches += 1

    def value(self) -> float:
        if self.n_batches == 0:
            raise ValueError(
                "MinibatchCKA.value(): no batch accumulated "
                f"(every batch had fewer than 4 samples; skipped={self.skipped})"
            )
        return _ratio(self.hsic_xy, self.hsic_xx, self.hsic_yy)


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Fixed-size minibatches over ``n`` samples (in order).

    Full batches only, the last partial batch dropped, when ``n >= batch_size``;
    a single batch of all ``n`` samples when ``n < batch_size``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n <= 0:
        return []
    if n < batch_size:
        return [slice(0, n)]
    return [slice(i * batch_size, (i + 1) * batch_size) for i in range(n // batch_size)]


def _centred_gram(x: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Centred linear Gram matrix of ``x`` (b, d), scaled so that
    ``<G_x, G_y>`` equals HSIC_1 (unbiased) or the biased HSIC tr(KHLH)/(b-1)^2."""
    b = x.shape[0]
    if _is_constant(x):
        return torch.zeros(b, b, dtype=x.dtype, device=x.device)
    x = x - x.mean(0, keepdim=True)
    k = x @ x.T
    if unbiased:
        # Kornblith et al. unbiased centring: <Kc, Lc> = b (b - 3) HSIC_1(K, L).
        k.fill_diagonal_(0.0)
        means = k.sum(0) / (b - 2)
        means = means - means.sum() / (2 * (b - 1))
        k = k - means[:, None] - means[None, :]
        k.fill_diagonal_(0.0)
        k = k / math.sqrt(b * (b - 3))
    else:
        # x already centred, so K = HKH.
        k = k / (b - 1)
    return k


def cka_matrix(
    feats_a: Sequence,
    feats_b: Sequence,
    batch_size: int = 256,
    unbiased: bool = True,
) -> np.ndarray:
    """Minibatch CKA between every layer of ``feats_a`` and every layer of ``feats_b``.

    Each list element is a (n, ...) tensor/array of one layer's features for the
    same ``n`` samples in the same order.  Entry ``(i, j)`` is the minibatch CKA
    between ``feats_a[i]`` and ``feats_b[j]`` over the batches of
    :func:`batch_slices` (unbiased HSIC_1 per batch by default, or the biased
    HSIC with ``unbiased=False``).  Each layer's centred Gram matrix is computed
    once per batch and shared across all pairs.  Returns a float64 array of
    shape (len(feats_a), len(feats_b)); entries are ``nan`` where a layer is
    constant over all batches.
    """
    feats_a = list(feats_a)
    same = feats_b is feats_a
    feats_b = feats_a if same else list(feats_b)
    if len(feats_a) == 0 or len(feats_b) == 0:
        return np.zeros((len(feats_a), len(feats_b)), dtype=np.float64)

    def _tensor(f):
        return as_tensor(f)

    ta = [_tensor(f) for f in feats_a]
    tb = ta if same else [_tensor(f) for f in feats_b]
    ns = {t.shape[0] for t in ta} | {t.shape[0] for t in tb}
    if len(ns) != 1:
        raise ValueError(f"all feature tensors must have the same number of samples, got {sorted(ns)}")
    n = ns.pop()
    min_n = 4 if unbiased else 2
    if n < min_n:
        raise ValueError(f"{'unbiased ' if unbiased else ''}minibatch CKA needs at least {min_n} samples, got n={n}")
    device = ta[0].device

    la, lb = len(ta), len(tb)
    hab = torch.zeros(la, lb, dtype=torch.float64, device=device)
    haa = torch.zeros(la, dtype=torch.float64, device=device)
    hbb = torch.zeros(lb, dtype=torch.float64, device=device)

    for sl in batch_slices(n, batch_size):
        ga = torch.stack(
            [_centred_gram(_to_2d(t[sl], device=device), unbiased).reshape(-1) for t in ta]
        )
        gb = ga if same else torch.stack(
            [_centred_gram(_to_2d(t[sl], device=device), unbiased).reshape(-1) for t in tb]
        )
        hab += ga @ gb.T
        sq_a = (ga * ga).sum(1)
        haa += sq_a
        hbb += sq_a if same else (gb * gb).sum(1)

    hab_np = hab.cpu().numpy()
    denom = np.outer(haa.cpu().numpy(), hbb.cpu().numpy())
    out = np.full((la, lb), np.nan, dtype=np.float64)
    ok = denom > 0
    out[ok] = hab_np[ok] / np.sqrt(denom[ok])
    if same:
        out = 0.5 * (out + out.T)  # exact symmetry despite summation order
    return out


def minibatch_cka(x, y, batch_size: int = 256) -> float:
    """Unbiased minibatch CKA between ``x`` and ``y`` with the :func:`batch_slices` rule."""
    xt = as_tensor(x)
    yt = as_tensor(y)
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(
            f"CKA inputs must have the same number of samples, got {xt.shape[0]} and {yt.shape[0]}"
        )
    m = MinibatchCKA()
    for sl in batch_slices(xt.shape[0], batch_size):
        m.update(xt[sl], yt[sl])
    return m.value()


def centred_gram(x, unbiased: bool = True) -> torch.Tensor:
    """Public form of the scaled centred Gram: sum over batches of <G_x, G_y> is the minibatch
    HSIC numerator, so callers can cache one model's Grams and pair them with many others."""
    return _centred_gram(_to_2d(x), unbiased)
