"""Offline default data: real photographs that ship inside the scikit-image and scikit-learn wheels.

They are written once as PNG files into ``<root>/bright/`` (the COCO-style folder) and
``<root>/lowlight/`` (the ExDark-style folder) and then read back through
:func:`datamodules.lowlight_gp.folder.read_folder`, the reader real data goes through.
No real low-light photograph ships with either library, so the low-light folder holds the
held-out photographs darkened (gamma 3.5) with Poisson shot noise and 8-bit quantisation, a
sensor-like simulation; point ``lowlight_dir`` at ExDark for real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from core.atomic import atomic_folder

# name -> loader; all bundled in the wheels (no network).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
LOWLIGHT_GAMMA, LOWLIGHT_PHOTONS = 3.5, 60.0
VERSION = 1


def _photos() -> dict[str, np.ndarray]:
    from skimage import data
    from sklearn.datasets import load_sample_image

    out: dict[str, np.ndarray] = {}
    for name in SKIMAGE_PHOTOS:
        img = getattr(data, name)()
        out[name] = img[0] if isinstance(img, tuple) else img  # stereo pair -> left view
    for fname in SKLEARN_PHOTOS:
        out[fname.split(".")[0]] = load_sample_image(fname)
    return out


def simulate_lowlight(rgb: np.ndarray, seed: int) -> np.ndarray:
    """uint8 RGB -> dark, shot-noisy uint8 RGB (gamma 3.5, ~60 photons at full scale)."""
    rng = np.random.default_rng(seed)
    dark = (rgb.astype(np.float64) / 255.0) ** LOWLIGHT_GAMMA
    noisy = rng.poisson(dark * LOWLIGHT_PHOTONS) / LOWLIGHT_PHOTONS
    return np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)


def write_embedded(
    root: str | Path, lowlight_names: tuple[str, ...] = ("chelsea", "flower")
) -> Path:
    """Write the embedded folders under ``root`` once (skipped when the manifest matches)."""
    root = Path(root)
    settings = {
        "version": VERSION,
        "photos": [*SKIMAGE_PHOTOS, *SKLEARN_PHOTOS],
        "lowlight": list(lowlight_names),
        "gamma": LOWLIGHT_GAMMA,
        "photons": LOWLIGHT_PHOTONS,
    }

    def complete(folder: Path) -> bool:
        found = folder / "manifest.json"
        return found.exists() and json.loads(found.read_text()) == settings

    if complete(root):
        return root
    with atomic_folder(root, complete) as tmp:  # parallel jobs never see half-written photos
        (tmp / "bright").mkdir()
        (tmp / "lowlight").mkdir()
        for i, (name, rgb) in enumerate(_photos().items()):
            cv2.imwrite(str(tmp / "bright" / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if name in lowlight_names:
                low = simulate_lowlight(rgb, seed=i)
                cv2.imwrite(
                    str(tmp / "lowlight" / f"{name}.png"), cv2.cvtColor(low, cv2.COLOR_RGB2BGR)
                )
        (tmp / "manifest.json").write_text(json.dumps(settings))
    return root
