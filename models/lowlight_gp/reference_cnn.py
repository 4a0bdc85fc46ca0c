"""The reference CNN: maps a low-light image to a brighter, feature-preserving reference I_R.

GPE (Loh et al. 2019) uses a small fully convolutional mapping network whose exact layout is
only published as obfuscated MATLAB; we use the SRCNN-style three-stage layout (patch
extraction 9x9, non-linear mapping 5x5, reconstruction 5x5) it is modelled on, with a residual
connection so an untrained net starts near the identity. LM: 1 channel (Y); CM: 3 channels (RGB).
"""

from __future__ import annotations

import torch
from torch import nn


class ReferenceCNN(nn.Module):
    """SRCNN-style enhancer: ``in_channels`` -> ``in_channels``, output in [0, 1]."""

    def __init__(
        self,
        in_channels: int = 3,
        widths: tuple[int, int] = (64, 32),
        kernel_sizes: tuple[int, int, int] = (9, 5, 5),
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(
                f"in_channels must be 1 (LM, Y channel) or 3 (CM, RGB), got {in_channels}"
            )
        if len(widths) != 2 or len(kernel_sizes) != 3:
            raise ValueError("widths needs 2 entries and kernel_sizes 3 (extract, map, rebuild)")
        k1, k2, k3 = kernel_sizes
        w1, w2 = widths
        self.in_channels = in_channels
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w1, k1, padding=k1 // 2, padding_mode="replicate"),
            nn.ReLU(inplace=True),
            nn.Conv2d(w1, w2, k2, padding=k2 // 2, padding_mode="replicate"),
            nn.ReLU(inplace=True),
            nn.Conv2d(w2, in_channels, k3, padding=k3 // 2, padding_mode="replicate"),
        )

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """Unclipped output (the training loss uses it so clipped pixels still get gradients)."""
        return x + self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) low-light in [0, 1] -> (B, C, H, W) reference in [0, 1]."""
        return self.raw(x).clamp(0.0, 1.0)
