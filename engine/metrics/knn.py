"""k-nearest-neighbour accuracy with cosine similarity."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .inputs import as_2d, as_labels, check_pair, check_widths

__all__ = ["knn_accuracy"]


def knn_accuracy(bank_feats, bank_labels, query_feats, query_labels, k: int = 5,
                 chunk_size: int = 1024) -> float:
    """Accuracy of a cosine-similarity k-NN classifier.

    Each query takes the ``min(k, len(bank))`` most similar bank samples; the
    class with the most votes wins, ties broken by the larger summed similarity
    (then the lower class index).  Returns ``nan`` if there are no queries.
    Features of any shape (n, ...) are flattened per sample.  Whether a query
    is also in the bank is the caller's business.
    """
    q = as_2d(query_feats, torch.float32)
    ql = as_labels(query_labels, q.device)
    if check_pair(q, ql, "query") == 0:
        return float("nan")
    b = as_2d(bank_feats, torch.float32, q.device)
    bl = as_labels(bank_labels, q.device)
    if check_pair(b, bl, "bank") == 0:
        raise ValueError("knn_accuracy: the feature bank is empty")
    check_widths(b, q, "bank and query")
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
