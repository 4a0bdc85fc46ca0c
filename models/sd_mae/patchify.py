"""Image <-> patch sequence conversion and the MAE normalised-pixel target."""

from __future__ import annotations

import torch


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C), row-major patches, pixels ordered (p, p, C) like MAE."""
    b, c, h, w = imgs.shape
    p = patch_size
    gh, gw = h // p, w // p
    x = imgs.reshape(b, c, gh, p, gw, p)
    x = torch.einsum("bchpwq->bhwpqc", x)
    return x.reshape(b, gh * gw, p * p * c)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify` for a square grid."""
    b, n, _ = patches.shape
    p = patch_size
    g = int(round(n**0.5))
    if g * g != n:
        raise ValueError(f"unpatchify needs a square grid, got {n} patches")
    x = patches.reshape(b, g, g, p, p, channels)
    x = torch.einsum("bhwpqc->bchpwq", x)
    return x.reshape(b, channels, g * p, g * p)


def normalised_target(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-patch normalisation: subtract the patch mean, divide by sqrt(var + eps)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps) ** 0.5
