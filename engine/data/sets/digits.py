"""scikit-learn's bundled 8x8 handwritten digits (1,797 images): the default data set, offline."""
from __future__ import annotations

import numpy as np

from .registry import register_dataset


@register_dataset("digits", num_classes=10, channels=1, size=8, cpu=True, builtin=True, order=10,
                  presets={"digits": {"note": "8×8 handwritten digits, built in (CPU, ~1 min)"}})
def load_digits(req):
    import torch
    from sklearn.datasets import load_digits as sk_digits

    from ..datasets import finish

    d = sk_digits()
    images = np.asarray(d.images, dtype=np.float32) / 16.0  # values 0..16
    x = torch.from_numpy(images).unsqueeze(1).contiguous()
    y = np.asarray(d.target, dtype=np.int64)
    train, _ = finish(x, y, None, None, [str(i) for i in range(10)], req.image_size)
    return train, None  # no official test split: split by seed (engine.data.splits)
