"""Per-image random masking with an exact count, as in MAE."""

from __future__ import annotations

import torch


def num_masked(num_patches: int, mask_ratio: float) -> int:
    """Exactly ``int(mask_ratio * N)`` patches are masked in every image."""
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(
            f"mask_ratio must lie in [0, 1) (0 = no masking, for speed checks), got {mask_ratio}"
        )
    return int(mask_ratio * num_patches)


def random_masking(
    batch: int, num_patches: int, mask_ratio: float, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw an independent random permutation per image (argsort of uniform noise).

    Returns ``ids_keep`` (B, N_vis) sorted positions of the visible patches, ``ids_restore``
    (B, N) that undoes the shuffle, and ``mask`` (B, N) with 1 on masked patches.
    """
    n_vis = num_patches - num_masked(num_patches, mask_ratio)
    noise = torch.rand(batch, num_patches, device=device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :n_vis]
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :n_vis] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, ids_restore, mask
