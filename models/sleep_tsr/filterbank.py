"""Learnable filterbank of SeqSleepNet: a learned, non-negative reweighting of a triangular bank."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def triangular_filterbank(
    n_filters: int = 32,
    n_fft: int = 256,
    sample_rate: float = 100.0,
    low_hz: float = 0.0,
    high_hz: float | None = None,
) -> np.ndarray:
    """Linear-frequency triangular filterbank, shape ``(n_fft // 2 + 1, n_filters)``.

    Same construction as ``lin_tri_filter_shape`` of the reference SeqSleepNet code:
    ``n_filters + 2`` edges evenly spaced over ``[low_hz, high_hz]``, mapped to FFT bins with
    ``floor((n_fft + 1) * hz / sample_rate)``, then rising/falling ramps between edges.
    """
    high_hz = sample_rate / 2 if high_hz is None else high_hz
    edges_hz = np.linspace(low_hz, high_hz, n_filters + 2)
    edges = np.floor((n_fft + 1) * edges_hz / sample_rate).astype(int)
    bank = np.zeros((n_filters, n_fft // 2 + 1), dtype=np.float64)
    for j in range(n_filters):
        lo, mid, hi = edges[j], edges[j + 1], edges[j + 2]
        for i in range(lo, mid):
            bank[j, i] = (i - lo) / (mid - lo)
        for i in range(mid, hi):
            bank[j, i] = (hi - i) / (hi - mid)
    return bank.T.astype(np.float32)


class LearnableFilterbank(nn.Module):
    """``X @ (sigmoid(W) * S)``: each filter keeps the triangular support S but learns its gains.

    The sigmoid keeps the gains in (0, 1) so the layer can only smooth and reduce the spectrum,
    never invent energy outside each triangle. ``W`` is excluded from the L2 penalty (see
    :meth:`models.sleep_tsr.SeqSleepNet.l2_parameters`), as in the reference code.
    """

    def __init__(self, n_bins: int = 129, n_filters: int = 32, sample_rate: float = 100.0) -> None:
        super().__init__()
        n_fft = 2 * (n_bins - 1)
        shape = torch.from_numpy(triangular_filterbank(n_filters, n_fft, sample_rate))
        self.register_buffer("shape", shape, persistent=False)
        self.weight = nn.Parameter(torch.randn(n_bins, n_filters))

    def filters(self) -> torch.Tensor:
        """The effective ``(n_bins, n_filters)`` filter matrix."""
        return torch.sigmoid(self.weight) * self.shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(..., n_bins)`` -> ``(..., n_filters)``."""
        return x @ self.filters()
