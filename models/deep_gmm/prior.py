"""Online estimate of the state prior log p(s) (top module of Fig. 2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OnlineLogPrior"]


class OnlineLogPrior(nn.Module):
    """A softmax over a learned vector fed the constant input 1, trained with CE on frame labels.

    Its CE gradient, softmax(v) - onehot(y), drives softmax(v) to the running label frequencies.
    ``forward`` returns a detached log p(s): the prior never back-propagates into the network.
    """

    def __init__(self, num_states: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_states))

    def forward(self) -> Tensor:
        return torch.log_softmax(self.logits, dim=0).detach()

    def loss(self, targets: Tensor) -> Tensor:
        """CE of the prior softmax against the frame labels (its only training signal)."""
        return F.nll_loss(torch.log_softmax(self.logits, 0).expand(targets.shape[0], -1), targets)
