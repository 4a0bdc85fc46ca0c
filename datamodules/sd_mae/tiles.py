"""Procedural H&E-like tiles: the embedded offline dataset, written once as class folders.

The tissue classes (NCT-CRC-HE names) share their colour statistics, stain, nuclei density and
nucleus size -- all drawn per tile from one distribution for every class, plus per-tile stain
and brightness jitter -- and differ only in *arrangement*: nuclei scattered, clumped, lining
gland lumina, chained along fibres or aligned with them, and the shape of lumina and stroma
(``tile_layout.py``). So colour/intensity histograms or a nuclei count do not give the class
away; seeing structure does. ``BACK`` (slide background) is written too, so the background
exclusion of the real dataset is exercised.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.atomic import atomic_folder
from datamodules.sd_mae.tile_layout import ARRANGED, LAYOUTS, shared_params

CLASSES = ("BACK", *ARRANGED)
_DONE = "done.json"
_VERSION = 2  # bump when the drawing changes, so old tile folders are not reused

# H&E reference colours (RGB 0-1): eosin (cytoplasm/stroma) and haematoxylin (nuclei).
_EOSIN = np.array([0.93, 0.62, 0.75])
_HAEMA = np.array([0.33, 0.18, 0.50])


def _smooth_noise(rng: np.random.Generator, size: int, scale: float) -> np.ndarray:
    """Low-frequency noise in [0, 1] (blurred white noise), the texture of tissue."""
    n = rng.random((size, size)).astype(np.float32)
    k = max(3, int(scale) | 1)
    n = cv2.GaussianBlur(n, (k, k), scale / 2)
    n -= n.min()
    return n / max(float(n.max()), 1e-6)


def _stain(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile stain jitter, like differences between labs and scanners."""
    e = np.clip(_EOSIN + rng.normal(0, 0.05, 3), 0, 1)
    h = np.clip(_HAEMA + rng.normal(0, 0.06, 3), 0, 1)
    return e, h


def _blend(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return img * (1 - a) + colour * a


def _nuclei(
    rng: np.random.Generator,
    size: int,
    centres: np.ndarray,
    radius: np.ndarray,
    elong: np.ndarray,
    angle: np.ndarray | None = None,
) -> np.ndarray:
    """Alpha mask with one filled ellipse per centre (given radius, elongation, angle)."""
    m = np.zeros((size, size), np.float32)
    sh = 16  # sub-pixel centres (cv2 fixed point, 4 bits)
    for i, (x, y) in enumerate(centres):
        r, e = float(radius[i]), float(elong[i])
        ang = float(angle[i]) if angle is not None else rng.uniform(0, 180)
        axes = (max(sh, int(round(r * e**0.5 * sh))), max(sh, int(round(r / e**0.5 * sh))))
        cen = (int(round(x * sh)), int(round(y * sh)))
        cv2.ellipse(m, cen, axes, ang, 0, 360, float(rng.uniform(0.75, 1.0)), -1, cv2.LINE_AA, 4)
    return cv2.GaussianBlur(m, (3, 3), 0.7)


def _texture(rng: np.random.Generator, s: int, fibre_angle: float | None) -> np.ndarray:
    """Eosin density of the stroma: coherent wavy fibres or isotropic texture, then mapped to
    the SAME value distribution (rank matching), so only its geometry differs."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    u = s / 64
    if fibre_angle is None:  # band-pass isotropic noise at the fibre frequency
        n = rng.normal(0, 1, (s, s)).astype(np.float32)
        t = cv2.GaussianBlur(n, (0, 0), 1.0 * u) - cv2.GaussianBlur(n, (0, 0), 2.5 * u)
    else:
        warp = 3 * _smooth_noise(rng, s, s / 5)
        phase = (xx * np.cos(fibre_angle) + yy * np.sin(fibre_angle)) / (1.6 * u)
        t = np.sin(phase + warp * 3) + rng.normal(0, 0.3, (s, s))
    ranks = np.empty(s * s, np.float32)
    ranks[np.argsort(t, axis=None)] = np.linspace(0, 1, s * s, dtype=np.float32)
    lo, amp = rng.uniform(0.30, 0.42), rng.uniform(0.30, 0.42)
    return (lo + amp * ranks).reshape(s, s)


def _tissue(cls: str, rng: np.random.Generator, s: int, e: np.ndarray, h: np.ndarray):
    """Shared rendering of the arranged classes: stroma texture, lumina, nuclei."""
    p = shared_params(rng, s)
    lay = LAYOUTS[cls](rng, s, p)
    img = _blend(np.ones((s, s, 3), np.float32), _texture(rng, s, lay.fibre_angle), e)
    img = _blend(img, cv2.GaussianBlur(lay.lumen, (3, 3), 0.8) * 0.92, np.ones(3))
    n = len(lay.centres)
    nuc = _nuclei(rng, s, lay.centres, p["radius"][:n], p["elong"][:n], lay.angles)
    return _blend(img, nuc, h)


def _back(rng, s, e, h):
    grey = 0.88 + 0.08 * _smooth_noise(rng, s, s / 4)[..., None]
    img = np.repeat(grey, 3, axis=2) * np.array([1.0, 0.98, 1.0])
    speck = rng.uniform(0, s, (rng.integers(0, 4), 2))
    k = len(speck)
    return _blend(img, _nuclei(rng, s, speck, np.full(k, 1.0), np.ones(k)) * 0.4, e)


def draw_tile(cls: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 RGB tile of class ``cls``."""
    if cls not in CLASSES:
        raise ValueError(f"unknown tile class {cls!r}; known: {', '.join(CLASSES)}")
    e, h = _stain(rng)
    img = _back(rng, size, e, h) if cls == "BACK" else _tissue(cls, rng, size, e, h)
    img = img * rng.uniform(0.9, 1.06) + rng.normal(0, 0.02, img.shape)  # brightness, noise
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def tile_root(embedded_dir: str | Path, size: int, n_train: int, n_test: int, seed: int) -> Path:
    """Folder keyed by the generator settings, so changed settings never reuse stale tiles."""
    key = json.dumps([size, n_train, n_test, seed, CLASSES, _VERSION], sort_keys=True)
    tag = hashlib.sha1(key.encode()).hexdigest()[:8]
    return Path(embedded_dir) / f"sd_mae_tiles_{size}px_{tag}"


def write_tiles(
    embedded_dir: str | Path, size: int = 96, n_train: int = 300, n_test: int = 100, seed: int = 0
) -> Path:
    """Write ``train/<CLASS>/*.png`` and ``test/<CLASS>/*.png`` once (NCT-CRC-HE layout)."""
    root = tile_root(embedded_dir, size, n_train, n_test, seed)
    if (root / _DONE).exists():
        return root
    rng = np.random.default_rng(seed)
    jobs = [
        (sp, c, i)
        for sp, n in (("train", n_train), ("test", n_test))
        for c in CLASSES
        for i in range(n)
    ]
    with atomic_folder(root, lambda f: (f / _DONE).exists()) as tmp:  # no half-written reads
        for split, cls, i in tqdm(jobs, desc=f"writing embedded tiles to {root}", mininterval=2):
            out = tmp / split / cls
            out.mkdir(parents=True, exist_ok=True)
            tile = draw_tile(cls, size, rng)
            cv2.imwrite(str(out / f"{cls}-{i:05d}.png"), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
        (tmp / _DONE).write_text(json.dumps({"size": size, "n_train": n_train, "n_test": n_test}))
    return root
