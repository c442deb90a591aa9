"""Linear probes on frozen (pooled) features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .inputs import as_2d, as_labels, as_tensor, check_pair, check_widths

__all__ = ["pool_features", "linear_probe_accuracy"]


def pool_features(t) -> torch.Tensor:
    """Pool activations to (n, d).

    (n, C, H, W) -> global average pool over H, W -> (n, C);
    (n, T, D) tokens -> mean over tokens -> (n, D);
    (n, d) unchanged; (n,) -> (n, 1).
    """
    t = as_tensor(t)
    if t.dim() == 4:
        return t.mean(dim=(2, 3))
    if t.dim() == 3:
        return t.mean(dim=1)
    if t.dim() == 2:
        return t
    if t.dim() == 1:
        return t.unsqueeze(1)
    raise ValueError(f"pool_features: unsupported shape {tuple(t.shape)}")


def linear_probe_accuracy(
    train_feats,
    train_labels,
    eval_feats,
    eval_labels,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str = "cpu",
) -> float:
    """Train a softmax linear classifier on ``train_feats`` and return eval accuracy.

    Features are (n, d) (already pooled; other shapes are flattened per sample)
    and are standardised with the training mean/std.  Training is full-batch
    Adam for ``epochs`` steps (``lr``, L2 ``weight_decay`` via Adam's
    ``weight_decay``), float32, weights initialised from a private generator
    seeded with ``seed`` so the result is deterministic and the global RNG is
    untouched.  Returns the fraction of ``eval_feats`` classified correctly, or
    ``nan`` if the eval set is empty.
    """
    xtr = as_2d(train_feats, torch.float32, device)
    xev = as_2d(eval_feats, torch.float32, device)
    ytr = as_labels(train_labels, device)
    yev = as_labels(eval_labels, device)
    if check_pair(xev, yev, "eval") == 0:
        return float("nan")
    if check_pair(xtr, ytr, "train") == 0:
        raise ValueError("linear_probe_accuracy: the training set is empty")
    check_widths(xtr, xev, "train and eval")
    if ytr.min() < 0 or ytr.max() >= num_classes:
        raise ValueError(f"train labels out of range [0, {num_classes})")

    mean = xtr.mean(0, keepdim=True)
    std = xtr.std(0, unbiased=False, keepdim=True)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    xtr = (xtr - mean) / std
    xev = (xev - mean) / std

    d = xtr.shape[1]
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    bound = 1.0 / max(d, 1) ** 0.5
    w = ((torch.rand(num_classes, d, generator=gen) * 2 - 1) * bound).to(device).requires_grad_()
    b = torch.zeros(num_classes, device=device, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(int(epochs)):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(F.linear(xtr, w, b), ytr)
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = F.linear(xev, w, b).argmax(1)
        return float((pred == yev).float().mean().item())
