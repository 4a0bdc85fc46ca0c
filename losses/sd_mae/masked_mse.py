"""MAE reconstruction loss: per-patch MSE averaged over masked patches only (paper Eq. 1)."""

from __future__ import annotations

import torch


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``pred``/``target`` (B, N, D), ``mask`` (B, N) with 1 on masked patches.

    With no masked patch (mask ratio 0, used only for speed checks) every patch counts.
    """
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    denom = mask.sum()
    if denom == 0:
        return per_patch.mean()
    return (per_patch * mask).sum() / denom
