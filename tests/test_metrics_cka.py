"""Tests for engine.metrics.cka."""

import math

import numpy as np
import pytest
import torch

from engine.metrics.cka import (
    MinibatchCKA,
    batch_slices,
    cka_matrix,
    hsic1,
    linear_cka,
    minibatch_cka,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64)


def _orthogonal(d, seed=0):
    q, r = torch.linalg.qr(_randn(d, d, seed=seed))
    return q * torch.sign(torch.diagonal(r))


def naive_hsic1(x, y):
    """Independent O(n^2) unbiased HSIC (Song et al. 2012) with explicit loops."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    n = x.shape[0]
    K = np.zeros((n, n))
    L = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                K[i, j] = float(np.dot(x[i], x[j]))
                L[i, j] = float(np.dot(y[i], y[j]))
    tr_kl = sum(K[i, j] * L[j, i] for i in range(n) for j in range(n))
    sum_k = sum(K[i, j] for i in range(n) for j in range(n))
    sum_l = sum(L[i, j] for i in range(n) for j in range(n))
    kl1 = 0.0
    for i in range(n):
        for j in range(n):
            kl1 += sum(K[i, m] * L[m, j] for m in range(n))
    return (tr_kl + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * kl1) / (n * (n - 3))


def naive_cka_biased(x, y):
    """Reference biased CKA via centred Gram matrices HKH, HLH."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    n = x.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    K = H @ (x @ x.T) @ H
    L = H @ (y @ y.T) @ H
    return float(np.sum(K * L) / (np.linalg.norm(K) * np.linalg.norm(L)))


# --------------------------------------------------------------------------- #
# basic properties
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("shape", [(100, 20), (30, 80)])  # feature-space and Gram paths
def test_self_similarity_is_one(unbiased, shape):
    x = _randn(*shape, seed=1)
    assert linear_cka(x, x, unbiased=unbiased) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("unbiased", [False, True])
def test_orthogonal_and_isotropic_scaling_invariance(unbiased):
    x = _randn(200, 16, seed=2)
    y = torch.tanh(x @ _randn(16, 12, seed=3)) + 0.5 * _randn(200, 12, seed=4)
    base = linear_cka(x, y, unbiased=unbiased)
    assert 0.1 < base < 0.99
    q = _orthogonal(12, seed=5)
    assert linear_cka(x, y @ q, unbiased=unbiased) == pytest.approx(base, abs=1e-9)
    assert linear_cka(x, 7.5 * y, unbiased=unbiased) == pytest.approx(base, abs=1e-9)
    assert linear_cka(0.01 * x @ _orthogonal(16, seed=6), y, unbiased=unbiased) == pytest.approx(base, abs=1e-9)


@pytest.mark.parametrize("unbiased", [False, True])
def test_not_invariant_to_anisotropic_scaling(unbiased):
    x = _randn(200, 10, seed=7)
    scale = torch.ones(10, dtype=torch.float64)
    scale[-1] = 100.0
    v = linear_cka(x, x * scale, unbiased=unbiased)
    # Y is dominated by one of ten roughly isotropic directions: CKA ~ 1/sqrt(10).
    assert v < 0.5
    assert v == pytest.approx(1 / math.sqrt(10), abs=0.1)


def test_independent_features_unbiased_near_zero_biased_larger():
    x = _randn(512, 64, seed=8)
    y = _randn(512, 64, seed=9)
    u = linear_cka(x, y, unbiased=True)
    b = linear_cka(x, y, unbiased=False)
    assert abs(u) < 0.1
    # biased estimator is inflated by ~ d / (n + d) = 0.11 for independent features
    assert b > 0.07
    assert b > abs(u) + 0.05


def test_biased_matches_gram_reference_both_paths():
    for shape_x, shape_y, seed in [((60, 5), (60, 9), 10), ((25, 40), (25, 3), 11)]:
        x = _randn(*shape_x, seed=seed) + 2.0
        y = _randn(*shape_y, seed=seed + 100) - 1.0
        assert linear_cka(x, y) == pytest.approx(naive_cka_biased(x.numpy(), y.numpy()), abs=1e-10)


@pytest.mark.parametrize("shape_x,shape_y", [((12, 3), (12, 5)), ((10, 15), (10, 4))])
def test_unbiased_hsic_matches_naive_loops(shape_x, shape_y):
    # uncentred inputs with an offset: also checks shift invariance of the centring
    x = _randn(*shape_x, seed=12) + 3.0
    y = x[:, :1] * 0.5 + _randn(*shape_y, seed=13)
    ref = naive_hsic1(x.numpy(), y.numpy())
    assert hsic1(x, y) == pytest.approx(ref, rel=1e-9, abs=1e-9)
    # and the resulting CKA
    ref_cka = ref / math.sqrt(naive_hsic1(x.numpy(), x.numpy()) * naive_hsic1(y.numpy(), y.numpy()))
    assert linear_cka(x, y, unbiased=True) == pytest.approx(ref_cka, abs=1e-9)


def test_numpy_and_4d_inputs():
    x = _randn(40, 3, 4, 4, seed=14)
    y = _randn(40, 2, 2, 2, seed=15) + x[:, :2, :2, :2]
    flat = linear_cka(x.reshape(40, -1), y.reshape(40, -1), unbiased=True)
    assert linear_cka(x, y, unbiased=True) == pytest.approx(flat, abs=1e-12)
    assert linear_cka(x.numpy(), y.numpy(), unbiased=True) == pytest.approx(flat, abs=1e-12)
    assert linear_cka(x.float(), y.float()) == pytest.approx(linear_cka(x, y), abs=1e-5)
    m = cka_matrix([x], [y], batch_size=20)
    assert m.shape == (1, 1) and np.isfinite(m).all()


def test_guards_and_constant_features():
    x = _randn(3, 5, seed=16)
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(x, x, unbiased=True)
    with pytest.raises(ValueError, match="same number of samples"):
        linear_cka(_randn(10, 2), _randn(11, 2))
    const = torch.ones(20, 4, dtype=torch.float64) * 0.1
    y = _randn(20, 4, seed=17)
    assert math.isnan(linear_cka(const, y))
    assert math.isnan(linear_cka(const, y, unbiased=True))
    # ordinary small inputs never give nan
    assert not math.isnan(linear_cka(_randn(4, 2, seed=18), _randn(4, 3, seed=19), unbiased=True))
    assert not math.isnan(linear_cka(_randn(2, 2, seed=18), _randn(2, 3, seed=19)))


# --------------------------------------------------------------------------- #
# minibatch estimator
# --------------------------------------------------------------------------- #
def test_minibatch_single_batch_equals_unbiased():
    x = _randn(64, 10, seed=20)
    y = x @ _randn(10, 6, seed=21) + _randn(64, 6, seed=22)
    m = MinibatchCKA()
    m.update(x, y)
    assert m.value() == pytest.approx(linear_cka(x, y, unbiased=True), abs=1e-12)


def test_minibatch_accumulation_matches_hand_computation():
    x = _randn(30, 4, seed=23) + 1.0
    y = x @ _randn(4, 5, seed=24) + _randn(30, 5, seed=25)
    cuts = [(0, 8), (8, 20), (20, 30)]  # unequal batch sizes
    m = MinibatchCKA()
    for a, b in cuts:
        m.update(x[a:b], y[a:b])
    xy = sum(naive_hsic1(x[a:b].numpy(), y[a:b].numpy()) for a, b in cuts)
    xx = sum(naive_hsic1(x[a:b].numpy(), x[a:b].numpy()) for a, b in cuts)
    yy = sum(naive_hsic1(y[a:b].numpy(), y[a:b].numpy()) for a, b in cuts)
    assert m.n_batches == 3
    assert m.hsic_xy == pytest.approx(xy, rel=1e-9)
    assert m.value() == pytest.approx(xy / math.sqrt(xx * yy), abs=1e-10)
    # the minibatch value differs from a single full-batch estimate
    assert abs(m.value() - linear_cka(x, y, unbiased=True)) > 1e-6


def test_minibatch_skips_small_batches_and_reset():
    x = _randn(20, 3, seed=26)
    y = x + 0.3 * _randn(20, 3, seed=27)
    m = MinibatchCKA()
    with pytest.raises(ValueError, match="no batch"):
        m.value()
    m.update(x[:3], y[:3])
    m.update(x[:1], y[:1])
    assert m.skipped == 2
    with pytest.raises(ValueError):
        m.value()
    m.update(x[3:], y[3:])
    v = m.value()
    assert not math.isnan(v)
    assert v == pytest.approx(linear_cka(x[3:], y[3:], unbiased=True), abs=1e-12)
    m.reset()
    assert m.skipped == 0 and m.n_batches == 0
    with pytest.raises(ValueError):
        m.value()


def test_batch_slices_rule():
    assert batch_slices(10, 4) == [slice(0, 4), slice(4, 8)]  # partial batch dropped
    assert batch_slices(8, 4) == [slice(0, 4), slice(4, 8)]
    assert batch_slices(3, 4) == [slice(0, 3)]  # n < batch_size: one batch
    assert batch_slices(0, 4) == []


def test_minibatch_cka_uses_batching_rule():
    x = _randn(70, 5, seed=28)
    y = x ** 2 + _randn(70, 5, seed=29)
    m = MinibatchCKA()
    for a in (0, 32):
        m.update(x[a:a + 32], y[a:a + 32])  # samples 64..69 dropped
    assert minibatch_cka(x, y, batch_size=32) == pytest.approx(m.value(), abs=1e-12)
    assert minibatch_cka(x, y, batch_size=100) == pytest.approx(linear_cka(x, y, unbiased=True), abs=1e-12)


# --------------------------------------------------------------------------- #
# cka_matrix
# --------------------------------------------------------------------------- #
def _layers(n=96, seed=30):
    x0 = _randn(n, 3, 4, 4, seed=seed)
    x1 = torch.relu(x0.reshape(n, -1) @ _randn(48, 20, seed=seed + 1))
    x2 = x1 @ _randn(20, 8, seed=seed + 2) + 0.1 * _randn(n, 8, seed=seed + 3)
    return [x0, x1, x2]


def test_cka_matrix_identical_lists_diag_one_symmetric():
    feats = _layers()
    for unbiased in (True, False):
        m = cka_matrix(feats, feats, batch_size=32, unbiased=unbiased)
        assert m.shape == (3, 3)
        np.testing.assert_allclose(np.diag(m), 1.0, atol=1e-6)
        np.testing.assert_allclose(m, m.T, atol=1e-12)
        assert np.isfinite(m).all()
        assert (m[np.triu_indices(3, 1)] < 0.999).all()
    # a copy of the list (not the same object) gives the same answer
    m1 = cka_matrix(feats, feats, batch_size=32)
    m2 = cka_matrix(feats, [f.clone() for f in feats], batch_size=32)
    np.testing.assert_allclose(m1, m2, atol=1e-10)


def test_cka_matrix_matches_minibatch_cka_pairwise():
    fa = _layers(n=100, seed=40)
    fb = _layers(n=100, seed=50)[:2]
    m = cka_matrix(fa, fb, batch_size=32)  # 3 full batches, 4 samples dropped
    assert m.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert m[i, j] == pytest.approx(minibatch_cka(fa[i], fb[j], batch_size=32), abs=1e-9)


def test_cka_matrix_biased_single_batch_matches_linear_cka():
    fa = _layers(n=50, seed=60)
    m = cka_matrix(fa, fa[:1], batch_size=256, unbiased=False)
    for i in range(3):
        assert m[i, 0] == pytest.approx(linear_cka(fa[i], fa[0]), abs=1e-9)


def test_cka_matrix_guards():
    with pytest.raises(ValueError, match="same number of samples"):
        cka_matrix([_randn(10, 2)], [_randn(12, 2)])
    with pytest.raises(ValueError, match="at least 4"):
        cka_matrix([_randn(3, 2)], [_randn(3, 2)])
    m = cka_matrix([torch.zeros(16, 3, dtype=torch.float64)], [_randn(16, 3)], batch_size=8)
    assert math.isnan(m[0, 0])
