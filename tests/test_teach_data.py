"""The synthetic `teach` data set: deterministic per seed, class-balanced, not linearly separable."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import make_config
from engine.data import load_dataset
from engine.data.synthetic import TeachSpec, class_names, generate

SMALL = TeachSpec(train_per_class=30, test_per_class=6)


def test_same_seed_same_images_other_seed_other_images():
    a = generate(SMALL, seed=0)
    b = generate(SMALL, seed=0)
    c = generate(SMALL, seed=1)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_class_balanced_shapes_and_range():
    train_x, train_y, test_x, test_y = generate(SMALL, seed=3)
    assert train_x.shape == (300, 1, 16, 16) and test_x.shape == (60, 1, 16, 16)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int64
    assert np.bincount(train_y).tolist() == [30] * 10
    assert np.bincount(test_y).tolist() == [6] * 10
    assert 0.0 <= train_x.min() and train_x.max() <= 1.0
    # shuffled, not sorted by class
    assert not np.array_equal(train_y, np.sort(train_y))


def test_twin_classes_share_an_orientation_and_differ_in_wavelength():
    spec = TeachSpec()
    names = class_names(spec)
    assert len(set(names)) == 10
    for c in range(5):
        assert spec.orientation(c) == spec.orientation(c + 5)
        assert spec.wavelength(c) != spec.wavelength(c + 5)


def test_pixels_alone_barely_beat_chance():
    """The point of the design: a linear model on raw pixels cannot read the class off (chance 10%)."""
    from sklearn.linear_model import LogisticRegression
    train_x, train_y, test_x, test_y = generate(TeachSpec(train_per_class=150, test_per_class=40), seed=0)
    clf = LogisticRegression(max_iter=500).fit(train_x.reshape(len(train_x), -1), train_y)
    assert clf.score(test_x.reshape(len(test_x), -1), test_y) < 0.3


def test_loader_and_preset():
    train, test = load_dataset("teach", seed=0)
    assert tuple(train.x.shape) == (3000, 1, 16, 16) and tuple(test.x.shape) == (400, 1, 16, 16)
    assert abs(float(train.x.mean())) < 1e-4 and train.classes == class_names(TeachSpec())
    again, _ = load_dataset("teach", seed=0)
    assert torch.equal(train.x, again.x)  # cached generation is not changed by normalisation
    cfg = make_config("teach")
    assert cfg.data.dataset == "teach" and cfg.preset == "teach"


def test_odd_class_count_is_refused():
    with pytest.raises(ValueError, match="even number of classes"):
        generate(TeachSpec(num_classes=5), seed=0)


def test_the_registered_split_sizes_are_the_generators():
    """engine/data/sets/teach.py declares the split sizes (known at submit without generating)."""
    from engine.catalog import ALL_DATASETS
    spec, info = TeachSpec(), ALL_DATASETS["teach"]
    assert (info.train_size, info.test_size) == (spec.train_per_class * spec.num_classes,
                                                 spec.test_per_class * spec.num_classes)
    assert (info.num_classes, info.size, info.channels) == (spec.num_classes, spec.size, 1)
