"""Patch-pair extraction (training data) and per-pixel neighbourhoods (prediction queries).

Planes are (C, H, W) float arrays; in CM every colour channel contributes its own patches to one
shared GP (the paper: "one GP distribution ... for three color channels"); in LM C = 1 (Y).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def patch_pairs(low: np.ndarray, ref: np.ndarray, p: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping p x q patches of ``low`` and ``ref`` at the same positions.

    Returns (N, p*q) arrays (low, ref); N = C * floor(H/p) * floor(W/q). The paper's data point
    X_j is their concatenation (d = 2pq).
    """
    if low.shape != ref.shape or low.ndim != 3:
        raise ValueError(f"low {low.shape} and ref {ref.shape} must be equal (C, H, W) planes")
    c, h, w = low.shape
    hp, wq = h // p, w // q
    if hp == 0 or wq == 0:
        raise ValueError(f"image {h}x{w} is smaller than one {p}x{q} patch")

    def cut(x: np.ndarray) -> np.ndarray:
        x = x[:, : hp * p, : wq * q].reshape(c, hp, p, wq, q)
        return x.transpose(0, 1, 3, 2, 4).reshape(c * hp * wq, p * q)

    return cut(low), cut(ref)


def neighbourhoods(planes: torch.Tensor, p: int, q: int) -> torch.Tensor:
    """Every pixel's p x q neighbourhood (replicate padding): (C, H, W) -> (C*H*W, p*q).

    Row order is channel-major then raster, so ``out.view(C, H, W, p*q)`` recovers the layout.
    The centre pixel sits at index ((p-1)//2)*q + (q-1)//2, matching :func:`centre_index`.
    """
    c, h, w = planes.shape
    top, left = (p - 1) // 2, (q - 1) // 2
    padded = F.pad(planes[:, None], (left, q - 1 - left, top, p - 1 - top), mode="replicate")
    cols = F.unfold(padded, (p, q))  # (C, p*q, H*W)
    return cols.transpose(1, 2).reshape(c * h * w, p * q)


def centre_index(p: int, q: int) -> int:
    """Flat index of the pixel a p x q neighbourhood is centred on."""
    return ((p - 1) // 2) * q + (q - 1) // 2


def fold_patches(values: torch.Tensor, c: int, h: int, w: int, p: int, q: int) -> torch.Tensor:
    """Average overlapping per-pixel patch predictions back into (C, H, W) planes.

    ``values`` is (C*H*W, p*q): the predicted p x q reference patch around each pixel (the
    "patch" target layout); each output pixel is the mean of the p*q predictions covering it.
    """
    top, left = (p - 1) // 2, (q - 1) // 2
    cols = values.view(c, h * w, p * q).transpose(1, 2)
    hp, wp = h + p - 1, w + q - 1
    summed = F.fold(cols, (hp, wp), (p, q))
    counts = F.fold(torch.ones_like(cols), (hp, wp), (p, q))
    out = summed / counts
    return out[:, 0, top : top + h, left : left + w]


_HASH = 1.0 + torch.rand(64, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def unique_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact de-duplication of rows (n, m), m <= 64: (first (u,), inverse (n,)) with
    ``rows[first][inverse] == rows``.

    Rows are grouped by a float64 random projection (one matrix-vector product and a sort of
    n numbers, ~2x faster than sorting the rows themselves); every row is then checked against
    its group's representative, and in the (practically impossible) case of two different rows
    sharing a projection the rows themselves are sorted instead. Identical rows always get
    identical projections, so the grouping is exact either way.
    """
    keys = torch.mv(rows.to(torch.float64), _HASH[: rows.shape[1]])
    _, inverse = torch.unique(keys, return_inverse=True)
    first = _first_of_groups(inverse)
    if not torch.equal(rows.index_select(0, first).index_select(0, inverse), rows):
        _, inverse = torch.unique(rows, dim=0, return_inverse=True)
        first = _first_of_groups(inverse)
    return first, inverse


def _first_of_groups(inverse: torch.Tensor) -> torch.Tensor:
    first = torch.full((int(inverse.max()) + 1,), len(inverse), dtype=torch.long)
    return first.scatter_reduce_(0, inverse, torch.arange(len(inverse)), reduce="amin")
