"""Self-contrastive variant (paper Eq. 4): NT-Xent between token-averaged student/teacher views."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(q: torch.Tensor, p: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """SimCLR NT-Xent on a batch of positive pairs ``(q_i, p_i)`` (B, K), cosine similarity / tau.

    Each of the 2B views has its partner as positive and the other 2B - 2 views as negatives;
    the loss is averaged over all 2B anchors.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if q.shape != p.shape or q.dim() != 2:
        raise ValueError(f"expected two (B, K) tensors, got {tuple(q.shape)} and {tuple(p.shape)}")
    b = q.shape[0]
    if b < 2:
        raise ValueError("NT-Xent needs at least 2 images per batch (the negatives are the others)")
    z = F.normalize(torch.cat([q, p], dim=0).float(), dim=-1)
    sim = z @ z.t() / tau
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(q.device)
    return F.cross_entropy(sim, targets)
