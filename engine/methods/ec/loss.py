"""Contrastive unlearning loss (Lee et al., IJCAI 2025 form; METHODS.md section 2)."""
from __future__ import annotations

from ...lazy import torch


def contrastive_unlearning_loss(z_forget: torch.Tensor, y_forget: torch.Tensor, z_retain: torch.Tensor,
                                y_retain: torch.Tensor, tau: float) -> torch.Tensor:
    """L_CU = mean_i [ -(1/|N(i)|) sum_{a in N(i)} ( s_ia - log( sum_{p in P(i)} exp(s_ip) + [P(i) empty] ) ) ]

    s_ir = z_i . z_r / tau on L2-normalised embeddings; P(i): retain samples with i's label,
    N(i): retain samples with other labels. It pulls each forget embedding towards other-class
    retain embeddings and away from its own class. Forget samples with no negatives are skipped.
    """
    s = z_forget.float() @ z_retain.float().T / tau  # (F, R)
    same = y_forget[:, None] == y_retain[None, :]
    neg = ~same
    has_pos = same.any(1)
    # log-sum-exp over positives, stabilised by the row max (logsumexp does that); 0 when P(i) empty
    lse_pos = torch.logsumexp(s.masked_fill(~same, -torch.inf), dim=1)
    lse_pos = torch.where(has_pos, lse_pos, torch.zeros_like(lse_pos))
    n_neg = neg.sum(1)
    per_sample = -((s - lse_pos[:, None]) * neg).sum(1) / n_neg.clamp(min=1)
    valid = n_neg > 0
    if not valid.any():
        return s.sum() * 0.0
    return per_sample[valid].mean()


def supcon_loss(z: torch.Tensor, y: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), used to warm up EC's projectors."""
    z = z.float()
    s = z @ z.T / tau
    n = len(y)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    s = s.masked_fill(eye, -torch.inf)
    pos = (y[:, None] == y[None, :]) & ~eye
    log_prob = s - torch.logsumexp(s, dim=1, keepdim=True)
    n_pos = pos.sum(1)
    valid = n_pos > 0
    per = -(log_prob.masked_fill(~pos, 0)).sum(1) / n_pos.clamp(min=1)
    return per[valid].mean() if valid.any() else s.new_zeros(())
