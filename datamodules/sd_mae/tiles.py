"""Procedural H&E-like tiles: the embedded offline dataset, written once as class folders.

Classes follow NCT-CRC-HE's names and differ in what a pathologist looks at -- nuclei density,
size, shape and arrangement, glands, stroma fibres, fat vacuoles, mucus -- while stain colour
is jittered per tile, so mean colour alone does not give the class away. ``BACK`` (slide
background) is written too, so the background exclusion of the real dataset is exercised.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

CLASSES = ("ADI", "BACK", "LYM", "MUC", "NORM", "STR", "TUM")
_DONE = "done.json"

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
    radius: tuple[float, float],
    elong: tuple[float, float] = (1.0, 1.3),
    angle: np.ndarray | None = None,
) -> np.ndarray:
    """Alpha mask with one filled ellipse per centre (random radius, elongation, angle)."""
    m = np.zeros((size, size), np.float32)
    for i, (x, y) in enumerate(centres):
        r = rng.uniform(*radius)
        e = rng.uniform(*elong)
        ang = float(angle[i]) if angle is not None else rng.uniform(0, 180)
        axes = (max(1, int(round(r * e))), max(1, int(round(r / e))))
        cv2.ellipse(m, (int(x), int(y)), axes, ang, 0, 360, float(rng.uniform(0.75, 1.0)), -1)
    return cv2.GaussianBlur(m, (3, 3), 0.7)


def _tissue_base(rng: np.random.Generator, size: int, e: np.ndarray, density: float) -> np.ndarray:
    tex = _smooth_noise(rng, size, size / 8)
    alpha = np.clip(density * (0.6 + 0.6 * tex), 0, 1)
    return _blend(np.ones((size, size, 3), np.float32), alpha, e)


def _adi(rng, s, e, h):
    img = np.ones((s, s, 3), np.float32)
    walls = np.zeros((s, s), np.float32)
    pts = rng.uniform(0, s, (max(4, s // 12), 2))
    # membranes = borders of a Voronoi-like partition of large fat cells
    yy, xx = np.mgrid[0:s, 0:s]
    d = np.stack([np.hypot(xx - x, yy - y) for x, y in pts])
    d.sort(axis=0)
    walls = (d[1] - d[0] < 1.5).astype(np.float32)
    img = _blend(img, cv2.GaussianBlur(walls, (3, 3), 0.8) * 0.8, e)
    few = rng.uniform(0, s, (rng.integers(0, 3), 2))
    return _blend(img, _nuclei(rng, s, few, (1.5, 2.5), (1.5, 2.5)) * 0.8, h)


def _back(rng, s, e, h):
    grey = 0.88 + 0.08 * _smooth_noise(rng, s, s / 4)[..., None]
    img = np.repeat(grey, 3, axis=2) * np.array([1.0, 0.98, 1.0])
    speck = rng.uniform(0, s, (rng.integers(0, 4), 2))
    return _blend(img, _nuclei(rng, s, speck, (0.5, 1.5)) * 0.4, e)


def _lym(rng, s, e, h):
    img = _tissue_base(rng, s, e, 0.35)
    n = int(s * s / rng.uniform(28, 40))
    return _blend(img, _nuclei(rng, s, rng.uniform(0, s, (n, 2)), (1.6, 2.4), (1.0, 1.1)), h * 0.8)


def _muc(rng, s, e, h):
    blue = np.clip(np.array([0.70, 0.72, 0.88]) + rng.normal(0, 0.04, 3), 0, 1)
    wisps = _smooth_noise(rng, s, s / 10)
    img = _blend(np.ones((s, s, 3), np.float32), 0.25 + 0.45 * wisps, blue)
    few = rng.uniform(0, s, (rng.integers(1, 5), 2))
    return _blend(img, _nuclei(rng, s, few, (1.5, 3.0)) * 0.7, h)


def _glands(rng, s, e, h, regular: bool):
    """Round lumens lined by a ring of nuclei; tumour glands are irregular and crowded."""
    img = _tissue_base(rng, s, e, 0.55 if regular else 0.7)
    n_gl = int(rng.integers(1, 3)) if regular else int(rng.integers(2, 5))
    nuc_alpha = np.zeros((s, s), np.float32)
    for _ in range(n_gl):
        cx, cy = rng.uniform(0.15 * s, 0.85 * s, 2)
        r = rng.uniform(0.14, 0.24) * s if regular else rng.uniform(0.06, 0.16) * s
        lumen = np.zeros((s, s), np.float32)
        cv2.circle(lumen, (int(cx), int(cy)), int(r * 0.6), 1.0, -1)
        img = _blend(img, cv2.GaussianBlur(lumen, (5, 5), 1.5) * 0.9, np.ones(3))
        k = int(2 * np.pi * r / (5 if regular else 3.5))
        th = np.linspace(0, 2 * np.pi, k, endpoint=False) + rng.uniform(0, 1)
        jitter = 0.05 if regular else 0.25
        rr = r * (0.85 + rng.normal(0, jitter, k))
        c = np.stack([cx + rr * np.cos(th), cy + rr * np.sin(th)], 1)
        if regular:
            nuc_alpha = np.maximum(
                nuc_alpha, _nuclei(rng, s, c, (1.4, 1.9), (1.5, 2.0), np.degrees(th))
            )
        else:
            nuc_alpha = np.maximum(nuc_alpha, _nuclei(rng, s, c, (1.8, 3.2), (1.0, 1.6)))
    if not regular:  # crowded pleomorphic nuclei between glands
        n = int(s * s / rng.uniform(45, 70))
        nuc_alpha = np.maximum(
            nuc_alpha, _nuclei(rng, s, rng.uniform(0, s, (n, 2)), (2.0, 3.8), (1.0, 1.7))
        )
    return _blend(img, nuc_alpha, h)


def _str(rng, s, e, h):
    ang = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    warp = 3 * _smooth_noise(rng, s, s / 6)
    fibres = 0.5 + 0.5 * np.sin(
        (xx * np.cos(ang) + yy * np.sin(ang)) / rng.uniform(1.5, 2.5) + warp * 4
    )
    img = _blend(np.ones((s, s, 3), np.float32), 0.35 + 0.45 * fibres, e)
    n = int(s * s / rng.uniform(250, 400))
    angles = np.full(n, np.degrees(ang) + 90)
    return _blend(
        img, _nuclei(rng, s, rng.uniform(0, s, (n, 2)), (1.2, 1.8), (2.5, 3.5), angles), h
    )


_DRAW: dict[str, Callable] = {
    "ADI": _adi,
    "BACK": _back,
    "LYM": _lym,
    "MUC": _muc,
    "NORM": lambda r, s, e, h: _glands(r, s, e, h, True),
    "STR": _str,
    "TUM": lambda r, s, e, h: _glands(r, s, e, h, False),
}


def draw_tile(cls: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size, 3) uint8 RGB tile of class ``cls``."""
    if cls not in _DRAW:
        raise ValueError(f"unknown tile class {cls!r}; known: {', '.join(CLASSES)}")
    e, h = _stain(rng)
    img = _DRAW[cls](rng, size, e, h)
    img = img * rng.uniform(0.92, 1.05) + rng.normal(0, 0.02, img.shape)  # scanner noise
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def tile_root(embedded_dir: str | Path, size: int, n_train: int, n_test: int, seed: int) -> Path:
    """Folder keyed by the generator settings, so changed settings never reuse stale tiles."""
    key = json.dumps([size, n_train, n_test, seed, CLASSES, 1], sort_keys=True)
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
    for split, cls, i in tqdm(jobs, desc=f"writing embedded tiles to {root}", mininterval=2):
        out = root / split / cls
        out.mkdir(parents=True, exist_ok=True)
        tile = draw_tile(cls, size, rng)
        cv2.imwrite(str(out / f"{cls}-{i:05d}.png"), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR))
    (root / _DONE).write_text(json.dumps({"size": size, "n_train": n_train, "n_test": n_test}))
    return root
