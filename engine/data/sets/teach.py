"""`teach`: synthetic oriented textures generated from the run's seed (engine/data/synthetic.py),
built so that inner layers must hold class-specific detectors. The split sizes below are
TeachSpec's defaults (300 train / 40 test per class; tests/test_teach_data.py checks they agree)."""
from __future__ import annotations

import functools

from .registry import register_dataset


@register_dataset("teach", num_classes=10, channels=1, size=16, train_size=3000, test_size=400, cpu=True,
                  builtin=True, order=20,
                  presets={"teach": {"note": "synthetic oriented textures, built in (CPU): made to show "
                                             "superficial forgetting",
                                     "recipes": "teach", "train": {"epochs": 15}}})
def load_teach(req):
    import torch

    from ..datasets import finish
    from ..synthetic import TeachSpec, class_names

    spec = TeachSpec()
    train_x, train_y, test_x, test_y = _generate_cached(spec, req.seed)
    # copies: finish normalises in place, the cached arrays must stay as generated
    return finish(torch.tensor(train_x), train_y, torch.tensor(test_x), test_y, class_names(spec), req.image_size)


@functools.lru_cache(maxsize=4)
def _generate_cached(spec, seed: int):
    from ..synthetic import generate  # a few seconds per seed: once per process
    return generate(spec, seed)
