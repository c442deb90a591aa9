"""Confidence-based membership-inference attack (MIA) efficacy.

Follows OPTML-Group's ``SVC_MIA`` (Jia et al. 2023, "Model sparsity can
simplify machine unlearning"; Fan et al. 2024, "SalUn"): an RBF SVC is trained
to separate members (retain samples) from non-members (test samples) using the
model's softmax probability of the true label as the single feature; MIA
efficacy is the share of forget samples the attack predicts to be
non-members (higher = the forget set looks more "unlearned").
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import SVC

__all__ = ["mia_efficacy"]


def _conf(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size and not np.isfinite(a).all():
        raise ValueError(f"mia_efficacy: {name} contains non-finite values")
    return a


def mia_efficacy(retain_conf, test_conf, forget_conf, seed: int = 0) -> dict:
    """SVC confidence attack; returns efficacy plus diagnostics for the dashboard.

    Inputs are 1-D arrays of the softmax probability of the true label.  The
    attack is trained on a balanced shadow set: members = the first ``N``
    retain samples, non-members = the first ``N`` test samples, with
    ``N = min(len(retain_conf), len(test_conf))``.  Classifier:
    ``SVC(C=3, gamma="auto", kernel="rbf")`` on the (n, 1) confidence feature
    (deterministic; ``seed`` is passed as ``random_state`` for completeness).

    Returns a dict with
      * ``"mia_efficacy"``: fraction of forget samples predicted non-member, in [0, 1];
      * ``"member_rate_retain"`` / ``"member_rate_test"``: fraction predicted
        member among the shadow members / non-members (the attack's own training data);
      * ``"decision_grid"``: ``{"conf": 101 values 0..1, "member": [0/1 ...]}``, the
        attack's decision over the confidence axis;
      * ``"n_shadow"``: ``N``; ``"n_forget"``: number of forget samples.
    Raises ValueError if ``forget_conf``, ``test_conf`` or ``retain_conf`` is empty.
    """
    retain = _conf(retain_conf, "retain_conf")
    test = _conf(test_conf, "test_conf")
    forget = _conf(forget_conf, "forget_conf")
    if forget.size == 0:
        raise ValueError("mia_efficacy: forget_conf is empty (no forget samples to attack)")
    if test.size == 0:
        raise ValueError("mia_efficacy: test_conf is empty (the attack needs non-member samples)")
    if retain.size == 0:
        raise ValueError("mia_efficacy: retain_conf is empty (the attack needs member samples)")

    n = min(retain.size, test.size)
    members = retain[:n]
    nonmembers = test[:n]
    x = np.concatenate([members, nonmembers]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    clf = SVC(C=3, gamma="auto", kernel="rbf", random_state=seed)
    clf.fit(x, y)

    pred_forget = clf.predict(forget.reshape(-1, 1))
    pred_members = clf.predict(members.reshape(-1, 1))
    pred_nonmembers = clf.predict(nonmembers.reshape(-1, 1))
    grid = np.linspace(0.0, 1.0, 101)
    pred_grid = clf.predict(grid.reshape(-1, 1))
    return {
        "mia_efficacy": float(1.0 - pred_forget.mean()),
        "member_rate_retain": float(pred_members.mean()),
        "member_rate_test": float(pred_nonmembers.mean()),
        "decision_grid": {
            "conf": [float(v) for v in grid],
            "member": [int(v) for v in pred_grid],
        },
        "n_shadow": int(n),
        "n_forget": int(forget.size),
    }
