"""BT.601 full-range RGB <-> YCbCr on float images in [0, 1] (the LM variant works on Y only)."""

from __future__ import annotations

import numpy as np

_RGB2YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_YCC2RGB = np.linalg.inv(_RGB2YCC)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] -> (H, W, 3) Y, Cb, Cr with Cb/Cr centred on 0.5."""
    ycc = rgb @ _RGB2YCC.T
    ycc[..., 1:] += 0.5
    return ycc


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`, clipped to [0, 1]."""
    x = ycc.copy()
    x[..., 1:] -= 0.5
    return np.clip(x @ _YCC2RGB.T, 0.0, 1.0)
