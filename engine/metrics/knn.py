"""k-nearest-neighbour accuracy with cosine similarity."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["knn_accuracy"]


def _feats(x) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    t = t.to(torch.float32)
    if t.dim() == 1:
        t = t.unsqueeze(1)
    elif t.dim() > 2:
        t = t.reshape(t.shape[0], -1)
    return t


def _labels(y, device) -> torch.Tensor:
    t = y.detach() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y))
    return t.reshape(-1).to(device=device, dtype=torch.long)


def knn_accuracy(bank_feats, bank_labels, query_feats, query_labels, k: int = 5,
                 chunk_size: int = 1024) -> float:
    """Accuracy of a cosine-similarity k-NN classifier.

    Each query takes the ``min(k, len(bank))`` most similar bank samples; the
    class with the most votes wins, ties broken by the larger summed similarity
    (then the lower class index).  Returns ``nan`` if there are no queries.
    Features of any shape (n, ...) are flattened per sample.  Whether a query
    is also in the bank is the caller's business.
    """
    q = _feats(query_feats)
    ql = _labels(query_labels, q.device)
    if q.shape[0] != ql.shape[0]:
        raise ValueError(f"query_feats ({q.shape[0]}) and query_labels ({ql.shape[0]}) differ in length")
    if q.shape[0] == 0:
        return float("nan")
    b = _feats(bank_feats).to(q.device)
    bl = _labels(bank_labels, q.device)
    if b.shape[0] != bl.shape[0]:
        raise ValueError(f"bank_feats ({b.shape[0]}) and bank_labels ({bl.shape[0]}) differ in length")
    if b.shape[0] == 0:
        raise ValueError("knn_accuracy: the feature bank is empty")
    if b.shape[1] != q.shape[1]:
        raise ValueError(f"bank and query feature widths differ: {b.shape[1]} vs {q.shape[1]}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    kk = min(k, b.shape[0])
    num_classes = int(max(bl.max().item(), ql.max().item())) + 1

    b = F.normalize(b, dim=1)
    q = F.normalize(q, dim=1)
    correct = 0
    for start in range(0, q.shape[0], chunk_size):
        qc = q[start:start + chunk_size]
        sims, idx = (qc @ b.T).topk(kk, dim=1)
        nl = bl[idx]  # (m, kk)
        votes = torch.zeros(qc.shape[0], num_classes, device=q.device)
        votes.scatter_add_(1, nl, torch.ones_like(sims))
        simsum = torch.zeros(qc.shape[0], num_classes, device=q.device)
        simsum.scatter_add_(1, nl, sims)
        top = votes == votes.max(dim=1, keepdim=True).values
        score = torch.where(top, simsum, torch.full_like(simsum, -float("inf")))
        pred = score.argmax(dim=1)
        correct += int((pred == ql[start:start + chunk_size]).sum().item())
    return correct / q.shape[0]
