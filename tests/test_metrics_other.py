"""Tests for engine.metrics.{mia, probes, knn, accuracy}."""

import math

import numpy as np
import pytest
import torch

from engine.metrics.accuracy import accuracy, confusion_matrix, per_class_accuracy
from engine.metrics.knn import knn_accuracy
from engine.metrics.mia import mia_efficacy
from engine.metrics.probes import linear_probe_accuracy, pool_features


# --------------------------------------------------------------------------- #
# MIA
# --------------------------------------------------------------------------- #
def _mia_data(seed=0):
    rng = np.random.default_rng(seed)
    retain = rng.beta(20, 1, size=400)  # members: confident, ~0.95
    test = rng.beta(2, 2, size=300)  # non-members: ~0.5
    return rng, retain, test


def test_mia_forget_like_test_high_efficacy_like_retain_low():
    rng, retain, test = _mia_data()
    unlearned = mia_efficacy(retain, test, rng.beta(2, 2, size=200))
    not_unlearned = mia_efficacy(retain, test, rng.beta(20, 1, size=200))
    assert unlearned["mia_efficacy"] > 0.8
    assert not_unlearned["mia_efficacy"] < 0.2
    for r in (unlearned, not_unlearned):
        assert 0.0 <= r["mia_efficacy"] <= 1.0
        assert r["member_rate_retain"] > 0.8
        assert r["member_rate_test"] < 0.3
        assert r["n_shadow"] == 300  # balanced: min(400, 300)
        assert r["n_forget"] == 200


def test_mia_decision_grid_and_inputs():
    rng, retain, test = _mia_data(1)
    r = mia_efficacy(torch.tensor(retain), torch.tensor(test), torch.tensor(rng.beta(2, 2, 50)))
    grid = r["decision_grid"]
    assert len(grid["conf"]) == 101 and len(grid["member"]) == 101
    assert grid["conf"][0] == 0.0 and grid["conf"][-1] == 1.0
    assert set(grid["member"]) <= {0, 1}
    assert grid["member"][-1] == 1  # confidence 1.0 -> member
    assert grid["member"][50] == 0  # confidence 0.5 -> non-member
    # deterministic: same inputs give the same result
    forget = rng.beta(2, 2, 50)
    assert mia_efficacy(retain, test, forget) == mia_efficacy(retain, test, forget)
    # forget samples all highly confident -> every one predicted member
    assert mia_efficacy(retain, test, np.full(10, 0.99))["mia_efficacy"] == 0.0
    assert mia_efficacy(retain, test, np.full(10, 0.3))["mia_efficacy"] == 1.0


def test_mia_guards():
    _, retain, test = _mia_data()
    with pytest.raises(ValueError, match="forget_conf is empty"):
        mia_efficacy(retain, test, [])
    with pytest.raises(ValueError, match="test_conf is empty"):
        mia_efficacy(retain, np.array([]), [0.5])
    with pytest.raises(ValueError, match="retain_conf is empty"):
        mia_efficacy([], test, [0.5])


# --------------------------------------------------------------------------- #
# probes
# --------------------------------------------------------------------------- #
def _blobs(n, d=32, c=4, sep=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=torch.Generator().manual_seed(1234)) * sep
    y = torch.randint(0, c, (n,), generator=g)
    x = centres[y] + torch.randn(n, d, generator=g)
    return x, y


def test_probe_separable_blobs():
    xtr, ytr = _blobs(400, seed=0)
    xev, yev = _blobs(400, seed=1)
    assert linear_probe_accuracy(xtr, ytr, xev, yev, num_classes=4) > 0.95


def test_probe_random_labels_near_chance():
    g = torch.Generator().manual_seed(3)
    xtr = torch.randn(600, 32, generator=g)
    ytr = torch.randint(0, 4, (600,), generator=g)
    xev = torch.randn(2000, 32, generator=g)
    yev = torch.randint(0, 4, (2000,), generator=g)
    acc = linear_probe_accuracy(xtr, ytr, xev, yev, num_classes=4)
    assert abs(acc - 0.25) < 0.05


def test_probe_deterministic_and_empty_eval():
    xtr, ytr = _blobs(300, d=16, c=3, sep=0.6, seed=4)  # overlapping: result depends on training
    xev, yev = _blobs(300, d=16, c=3, sep=0.6, seed=5)
    a = linear_probe_accuracy(xtr, ytr, xev, yev, num_classes=3, seed=7)
    torch.manual_seed(999)  # global RNG state must not matter
    b = linear_probe_accuracy(xtr, ytr, xev, yev, num_classes=3, seed=7)
    assert a == b
    assert 0.4 < a < 1.0
    assert math.isnan(linear_probe_accuracy(xtr, ytr, xev[:0], yev[:0], num_classes=3))


def test_pool_features_shapes():
    x4 = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    p = pool_features(x4)
    assert p.shape == (2, 3)
    assert torch.allclose(p[0], torch.tensor([1.5, 5.5, 9.5]))
    x3 = torch.tensor([[[1.0, 2.0], [3.0, 6.0]]])  # (1, T=2, D=2)
    assert torch.equal(pool_features(x3), torch.tensor([[2.0, 4.0]]))
    x2 = torch.randn(5, 7)
    assert pool_features(x2) is x2 or torch.equal(pool_features(x2), x2)
    assert pool_features(np.zeros((4, 2, 3, 3))).shape == (4, 2)


# --------------------------------------------------------------------------- #
# k-NN
# --------------------------------------------------------------------------- #
def test_knn_hand_checked():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    bank_y = torch.tensor([0, 0, 1, 1, 2])
    q = torch.tensor([[2.0, 0.1], [0.05, 3.0], [-5.0, 0.2]])  # scale must not matter (cosine)
    qy = torch.tensor([0, 1, 2])
    assert knn_accuracy(bank, bank_y, q, qy, k=1) == 1.0
    # k=2: query 3's neighbours are class 2 (sim ~1) and one of class 1 -> tie 1:1,
    # broken by summed similarity -> class 2
    assert knn_accuracy(bank, bank_y, q, qy, k=2) == 1.0
    # k=5 (whole bank): class 0 and 1 have 2 votes each, class 2 only one
    acc = knn_accuracy(bank, bank_y, q, qy, k=5)
    assert acc == pytest.approx(2 / 3)
    assert knn_accuracy(bank, bank_y, q, torch.tensor([1, 0, 2]), k=1) == pytest.approx(1 / 3)
    # k larger than the bank is clamped
    assert knn_accuracy(bank, bank_y, q, qy, k=50) == pytest.approx(2 / 3)


def test_knn_majority_beats_single_closest_and_empty():
    bank = np.array([[1.0, 0.0], [0.6, 0.8], [0.8, 0.6]])
    bank_y = np.array([0, 1, 1])
    q = np.array([[1.0, 0.05]])
    assert knn_accuracy(bank, bank_y, q, [0], k=1) == 1.0
    assert knn_accuracy(bank, bank_y, q, [1], k=3) == 1.0  # two votes for class 1
    assert math.isnan(knn_accuracy(bank, bank_y, np.zeros((0, 2)), [], k=3))


# --------------------------------------------------------------------------- #
# accuracy helpers
# --------------------------------------------------------------------------- #
def test_accuracy_helpers():
    labels = torch.tensor([0, 1, 2, 2, 1])
    preds = torch.tensor([0, 2, 2, 2, 1])
    assert accuracy(preds, labels) == pytest.approx(0.8)
    logits = torch.nn.functional.one_hot(preds, 3).float() * 5 - 1
    assert accuracy(logits, labels) == pytest.approx(0.8)
    assert accuracy(np.array([1, 1]), [1, 0]) == 0.5
    assert math.isnan(accuracy(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)))
    assert math.isnan(accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)))

    pca = per_class_accuracy(preds, labels, num_classes=4)
    assert pca[:3] == [1.0, 0.5, 1.0]
    assert math.isnan(pca[3])

    cm = confusion_matrix(preds, labels, num_classes=3)
    assert cm == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert all(isinstance(v, int) for row in cm for v in row)
    cm2 = confusion_matrix([1, 0], [0, 0], num_classes=2)
    assert cm2 == [[1, 1], [0, 0]]  # rows = true, cols = predicted
    with pytest.raises(ValueError):
        confusion_matrix([3], [0], num_classes=3)
    with pytest.raises(ValueError):
        accuracy([1, 2, 3], [1, 2])
