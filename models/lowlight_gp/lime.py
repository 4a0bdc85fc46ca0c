"""LIME (Guo, Li & Ling 2017): low-light enhancement via an illumination-map estimate.

Initial map T^ = max over RGB; refined by the paper's sped-up solver, which replaces the
l1 smoothness term sum_d W_d |grad_d T| by its reweighted quadratic
sum_d W_d / (|grad_d T^| + eps) (grad_d T)^2 and so solves one sparse linear system
(I + alpha * sum_d D_d^T diag(W~_d) D_d) t = T^, W~_d = W_d / (|grad_d T^| + eps), with the
Strategy-III weights W_d = G_sigma / (|G_sigma * grad_d T^| + eps) (Guo et al. 2017, eq. 19;
the authors' and the ExDark LIME code divide by the gradient the same way); then
T <- T^gamma and R = I / T.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.ndimage import gaussian_filter
from scipy.sparse.linalg import spsolve

from models.lowlight_gp.validate import as_rgb01


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
        w_d = norm / (np.abs(smooth_grad) + eps)  # Strategy III
        weights.append((w_d / (np.abs(grad) + eps)).ravel())  # the sped-up solver's weight
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
    """Enhance an (H, W, 3) RGB image in [0, 1] (or uint8, or grey) with LIME; RGB in [0, 1]."""
    if np.ndim(rgb) not in (2, 3):
        raise ValueError(f"LIME needs an (H, W, 3) RGB image, got {np.shape(rgb)}")
    rgb = as_rgb01(rgb, "LIME input")
    t_hat = rgb.max(axis=2)
    t = np.clip(refine_illumination(t_hat, alpha, sigma, eps), floor, 1.0) ** gamma
    return np.clip(rgb / t[..., None], 0.0, 1.0)
