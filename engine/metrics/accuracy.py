"""Classification accuracy helpers.

``preds`` arguments accept either predicted class indices (shape (n,)) or
logits/probabilities (shape (n, C), reduced with argmax over the last dim).
Torch tensors, numpy arrays and lists are accepted.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["accuracy", "per_class_accuracy", "confusion_matrix"]


def _labels(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).reshape(-1).astype(np.int64)


def _preds(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim == 2:
        if a.shape[0] == 0:
            return np.zeros(0, dtype=np.int64)
        return a.argmax(axis=1).astype(np.int64)
    if a.ndim > 2:
        raise ValueError(f"predictions must be (n,) indices or (n, C) logits, got shape {a.shape}")
    return a.reshape(-1).astype(np.int64)


def _pair(preds, labels) -> tuple[np.ndarray, np.ndarray]:
    p, y = _preds(preds), _labels(labels)
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"predictions ({p.shape[0]}) and labels ({y.shape[0]}) differ in length")
    return p, y


def accuracy(logits_or_preds, labels) -> float:
    """Fraction of correct predictions; ``nan`` when there are no samples."""
    p, y = _pair(logits_or_preds, labels)
    if y.size == 0:
        return float("nan")
    return float((p == y).mean())


def per_class_accuracy(preds, labels, num_classes: int) -> list[float]:
    """Accuracy per true class (recall); ``nan`` for classes absent from ``labels``."""
    p, y = _pair(preds, labels)
    out: list[float] = []
    for c in range(num_classes):
        m = y == c
        out.append(float((p[m] == c).mean()) if m.any() else math.nan)
    return out


def confusion_matrix(preds, labels, num_classes: int) -> list[list[int]]:
    """``num_classes x num_classes`` counts; rows = true class, columns = predicted class."""
    p, y = _pair(preds, labels)
    for name, a in (("labels", y), ("predictions", p)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} out of range [0, {num_classes}): min {a.min()}, max {a.max()}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    return cm.tolist()
