"""LIME (Guo, Li & Ling 2017): low-light enhancement via an illumination-map estimate.

Initial map T^ = max over RGB; refined by the paper's sped-up solver, which solves the
structure-aware smoothing problem in closed form as one sparse linear system
(I + alpha * sum_d D_d^T W_d D_d) t = T^ with Strategy-III weights
W_d = G_sigma / (|G_sigma * grad_d T^| + eps); then T <- T^gamma and R = I / T.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import gaussian_filter
from scipy.sparse.linalg import spsolve


def _forward_diff(n: int) -> sp.csr_matrix:
    """(n, n) forward difference with a zero last row (Neumann boundary)."""
    main = -np.ones(n)
    main[-1] = 0.0
    return sp.diags([main, np.ones(n - 1)], [0, 1], shape=(n, n), format="csr")


def refine_illumination(
    t_hat: np.ndarray, alpha: float = 0.15, sigma: float = 2.0, eps: float = 1e-3
) -> np.ndarray:
    """Solve LIME's smoothing system for the refined illumination map (H, W)."""
    h, w = t_hat.shape
    dh = sp.kron(sp.eye(h), _forward_diff(w), format="csr")  # horizontal, row-major pixels
    dv = sp.kron(_forward_diff(h), sp.eye(w), format="csr")  # vertical
    flat = t_hat.ravel()
    weights = []
    for d in (dh, dv):
        grad = (d @ flat).reshape(h, w)
        smooth_grad = gaussian_filter(grad, sigma, mode="nearest")
        norm = gaussian_filter(np.ones_like(grad), sigma, mode="nearest")
        weights.append((norm / (np.abs(smooth_grad) + eps)).ravel())
    a = sp.eye(h * w, format="csr")
    for d, wd in zip((dh, dv), weights):
        a = a + alpha * (d.T @ sp.diags(wd) @ d)
    return spsolve(a.tocsc(), flat).reshape(h, w)


def lime_enhance(
    rgb: np.ndarray,
    alpha: float = 0.15,
    gamma: float = 0.8,
    sigma: float = 2.0,
    eps: float = 1e-3,
    floor: float = 1e-2,
) -> np.ndarray:
    """Enhance an (H, W, 3) RGB image in [0, 1] with LIME; returns RGB in [0, 1]."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"LIME needs an (H, W, 3) RGB image, got {rgb.shape}")
    t_hat = rgb.max(axis=2)
    t = np.clip(refine_illumination(t_hat, alpha, sigma, eps), floor, 1.0) ** gamma
    return np.clip(rgb / t[..., None], 0.0, 1.0)
