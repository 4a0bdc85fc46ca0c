"""Fixed 2D sine-cosine position embeddings (MAE): not learned, so they cost no parameters
and extrapolate to any grid the config asks for."""

from __future__ import annotations

import numpy as np
import torch


def _sincos_1d(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """Embed 1D positions ``pos`` into ``embed_dim`` channels (half sin, half cos)."""
    if embed_dim % 2:
        raise ValueError(f"sin-cos embedding needs an even width, got {embed_dim}")
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(embed_dim: int, grid_size: int) -> torch.Tensor:
    """Return a ``(grid_size**2, embed_dim)`` table, row-major over the patch grid.

    Identical to MAE's ``get_2d_sincos_pos_embed`` (without the cls row): MAE's meshgrid puts
    ``w`` first, so the *first* half of the width encodes the column index and the second half
    the row index. Keeping that order is what lets official MAE checkpoints (whose
    ``pos_embed`` buffer holds this table) load without a silent position mismatch.
    """
    if embed_dim % 4:
        raise ValueError(f"2D sin-cos embedding needs a width divisible by 4, got {embed_dim}")
    coords = np.arange(grid_size, dtype=np.float64)
    cols, rows = np.meshgrid(coords, coords)  # cols[r, c] = c, rows[r, c] = r
    first = _sincos_1d(embed_dim // 2, cols)  # MAE calls this half "emb_h"; it is the column
    second = _sincos_1d(embed_dim // 2, rows)
    return torch.from_numpy(np.concatenate([first, second], axis=1)).float()
