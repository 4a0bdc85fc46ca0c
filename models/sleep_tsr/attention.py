"""Gated (additive) attention pooling over the frames of one epoch."""

from __future__ import annotations

import torch
from torch import nn


class AttentionPool(nn.Module):
    """``a_t = softmax_t(u . tanh(W x_t + b))``, output ``sum_t a_t x_t``.

    Lets the epoch encoder weight the 29 STFT frames by how informative they are (a spindle or
    K-complex occupies a few frames only) instead of averaging them.
    """

    def __init__(self, in_features: int = 128, attention_size: int = 64) -> None:
        super().__init__()
        self.proj = nn.Linear(in_features, attention_size)
        self.context = nn.Parameter(torch.empty(attention_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``W``, ``b`` and ``u`` all N(0, 0.1), as the reference's ``attention()``."""
        for p in (self.proj.weight, self.proj.bias, self.context):
            nn.init.normal_(p, 0.0, 0.1)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights ``(batch, time)`` for ``x`` of shape ``(batch, time, features)``."""
        return torch.softmax(torch.tanh(self.proj(x)) @ self.context, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weights(x).unsqueeze(-1) * x).sum(dim=1)
