"""Input handling the metric functions share: any array-like to a 2-D tensor, labels to a 1-D long
tensor, and the length / width checks with messages that name the offending arguments."""

from __future__ import annotations

import numpy as np
import torch


def as_tensor(x) -> torch.Tensor:
    return x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def as_2d(x, dtype: torch.dtype, device=None) -> torch.Tensor:
    """(n, d) of `dtype`: (n,) -> (n, 1), trailing dims flattened per sample; a scalar is an error."""
    t = as_tensor(x)
    if device is not None:
        t = t.to(device)
    if t.dim() == 0:
        raise ValueError("metric inputs must have a sample dimension, got a scalar")
    t = t.to(dtype)
    if t.dim() == 1:
        return t.unsqueeze(1)
    return t.reshape(t.shape[0], -1) if t.dim() > 2 else t


def as_labels(y, device=None) -> torch.Tensor:
    return as_tensor(y).reshape(-1).to(device=device, dtype=torch.long)


def check_pair(feats: torch.Tensor, labels: torch.Tensor, name: str) -> int:
    """The number of samples of `<name>_feats` / `<name>_labels`, which must agree."""
    if feats.shape[0] != labels.shape[0]:
        raise ValueError(f"{name}_feats ({feats.shape[0]}) and {name}_labels ({labels.shape[0]}) differ in length")
    return feats.shape[0]


def check_widths(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"{names} feature widths differ: {a.shape[1]} vs {b.shape[1]}")
