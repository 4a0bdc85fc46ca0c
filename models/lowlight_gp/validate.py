"""Checking and converting the images a caller passes to the enhancers.

The enhancers work on float RGB in [0, 1]. The common mistakes are converted when the intent is
unambiguous (an 8-bit array is divided by 255; a grey (H, W) or (H, W, 1) image is repeated into
three equal channels) and refused with a message that says what to do otherwise (NaN or
infinite pixels, floats outside [0, 1] such as 0-255 values stored as float, other shapes).
"""

from __future__ import annotations

import numpy as np


def as_rgb01(image: np.ndarray, name: str = "image") -> np.ndarray:
    """(H, W, 3) float64 RGB in [0, 1] from a uint8/uint16/float, RGB or grey array."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(
            f"{name}: expected an (H, W, 3) RGB or (H, W) grey image, got shape {arr.shape}"
        )
    return _to_unit_float(arr, name)


def as_planes01(planes: np.ndarray, channels: int, name: str = "reference planes") -> np.ndarray:
    """(C, H, W) float64 planes in [0, 1]; a 2-D plane is taken as C = 1."""
    arr = np.asarray(planes)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] != channels:
        raise ValueError(
            f"{name}: expected ({channels}, H, W) planes (LM: 1 Y plane, CM: 3 RGB planes), "
            f"got shape {arr.shape}"
        )
    # Regression targets: a raw CNN output may leave [0, 1] a little, that is fine.
    return _to_unit_float(arr, name, check_range=False)


def _to_unit_float(arr: np.ndarray, name: str, check_range: bool = True) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float64) / 65535.0
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name}: unsupported pixel type {arr.dtype}; pass uint8 or float")
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise ValueError(f"{name}: {bad} NaN or infinite values; fix or drop the image")
    lo, hi = float(out.min()), float(out.max())
    if check_range and (lo < 0.0 or hi > 1.0):
        hint = " (0-255 values? divide by 255 or pass uint8)" if hi > 1.0 and hi <= 255.0 else ""
        raise ValueError(f"{name}: float values must lie in [0, 1], got {lo:.4g}..{hi:.4g}{hint}")
    return out
