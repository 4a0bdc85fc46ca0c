"""A plain multi-layer perceptron (the runner's example network)."""

from __future__ import annotations

import torch
from torch import nn

from core.checks import check_range


class MLP(nn.Module):
    """Linear -> ReLU -> Dropout blocks, then a linear classifier."""

    def __init__(
        self, in_features: int, hidden: list[int], num_classes: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_range("model.dropout", dropout, 0.0, 1.0, high_open=True)
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))
