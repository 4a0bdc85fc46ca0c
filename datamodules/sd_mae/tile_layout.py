"""Where nuclei and lumina go in a procedural tile: the only thing that differs between classes.

Every class draws its nuclei count, nucleus size/elongation, lumen area and stroma texture
amplitude from the same distributions (see :func:`shared_params`), so colour histograms and
nuclei density do not give the class away; classes differ in *arrangement* only:

- ``LYM``  nuclei scattered at random (Poisson, hard-core), small round holes at random
- ``TUM``  nuclei crowded in a few clumps, irregular small holes
- ``NORM`` nuclei lining round gland lumina (rings), tangentially oriented
- ``STR``  nuclei in chains along coherent wavy fibres, oriented along them, slit-like gaps
- ``MUS``  nuclei scattered but all parallel to coherent fibres, slit-like gaps

All lengths are in units of ``u = size / 64`` so a tile looks the same at any size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

ARRANGED = ("LYM", "MUS", "NORM", "STR", "TUM")


@dataclass
class Layout:
    """Class-specific part of a tile: lumen mask, nuclei centres/angles, fibre coherence."""

    lumen: np.ndarray  # (s, s) float32 in [0, 1]
    centres: np.ndarray  # (n, 2) x, y
    angles: np.ndarray  # (n,) degrees
    fibre_angle: float | None  # radians; None = isotropic texture


def shared_params(rng: np.random.Generator, size: int) -> dict:
    """Per-tile statistics drawn from ONE distribution for every class."""
    u = size / 64
    return {
        "u": u,
        "n": int(round(rng.uniform(0.0065, 0.0095) * size * size)),
        "radius": rng.uniform(1.35, 1.85, 400) * u,  # per-nucleus, first n used
        "elong": rng.uniform(1.0, 1.9, 400),
        "lumen_frac": rng.uniform(0.05, 0.11),
    }


def _place(
    rng: np.random.Generator,
    n: int,
    propose: Callable[[int], np.ndarray],
    free: np.ndarray,
    d_min: float,
    tries: int = 40,
) -> np.ndarray:
    """Hard-core placement: candidates from ``propose`` that are inside the tile, off the
    lumina (``free``) and ``d_min`` from every nucleus so far; tops up uniformly if the
    proposal runs dry, so the count (hence nuclei area) is the same for every class."""
    s = free.shape[0]
    pts: list[np.ndarray] = []
    for source in (propose, lambda k: rng.uniform(0, s, (k, 2))):
        for _ in range(tries):
            if len(pts) >= n:
                break
            for c in source(4 * (n - len(pts))):
                x, y = c
                if not (0 <= x < s and 0 <= y < s) or not free[int(y), int(x)]:
                    continue
                if pts and np.min(np.hypot(*(np.array(pts) - c).T)) < d_min:
                    continue
                pts.append(c)
                if len(pts) >= n:
                    break
    return np.array(pts[:n], dtype=np.float32).reshape(-1, 2)


def _free(lumen: np.ndarray, margin: float) -> np.ndarray:
    k = max(3, int(2 * margin) | 1)
    return cv2.dilate((lumen > 0.3).astype(np.uint8), np.ones((k, k), np.uint8)) == 0


def _fit_area(draw: Callable[[float], np.ndarray], area: float) -> tuple[np.ndarray, float]:
    """Rescale shapes until their *visible* area (overlaps and tile edges cut it) is ``area``,
    so lumen area, hence the share of white pixels, does not depend on the class's shapes."""
    f = 1.0
    for _ in range(4):
        m = draw(f)
        f *= float(np.sqrt(area / max(float(m.sum()), 1.0)))
    return draw(f), f


def _round_holes(rng, s: int, area: float, count: int, irregular: bool = False) -> np.ndarray:
    """``count`` round (or lumpy) holes of total visible area ``area`` at random places; a
    lumpy outline r(t) = r0 (1 + a sin(k t + phi)) is shrunk so its area stays pi r0^2."""
    r0 = np.sqrt(rng.dirichlet(np.full(count, 4.0)) * area / np.pi)
    ctr = rng.uniform(0.1 * s, 0.9 * s, (count, 2))
    amp = rng.uniform(0.25, 0.4, count) if irregular else np.zeros(count)
    lobes, phase = rng.integers(2, 5, count), rng.uniform(0, 6.3, count)
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)

    def draw(f: float) -> np.ndarray:
        m = np.zeros((s, s), np.float32)
        for i in range(count):
            rr = f * r0[i] * (1 + amp[i] * np.sin(lobes[i] * t + phase[i]))
            rr /= np.sqrt(1 + amp[i] ** 2 / 2)
            poly = np.stack([ctr[i, 0] + rr * np.cos(t), ctr[i, 1] + rr * np.sin(t)], 1)
            cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
        return m

    return _fit_area(draw, area)[0]


def _slits(rng, s: int, area: float, count: int, angle: float) -> np.ndarray:
    """Thin gaps between fibres, elongated along the fibre direction."""
    w = rng.uniform(1.6, 2.6, count) * s / 64
    length = rng.dirichlet(np.full(count, 4.0)) * area / (np.pi * w)
    ctr = rng.uniform(0.1 * s, 0.9 * s, (count, 2))

    def draw(f: float) -> np.ndarray:
        m = np.zeros((s, s), np.float32)
        for i in range(count):
            axes = (max(16, int(round(16 * f * length[i]))), max(16, int(round(16 * w[i]))))
            cen = (int(round(16 * ctr[i, 0])), int(round(16 * ctr[i, 1])))
            cv2.ellipse(m, cen, axes, np.degrees(angle), 0, 360, 1.0, -1, cv2.LINE_AA, 4)
        return m

    return _fit_area(draw, area)[0]


def _lym(rng, s, p) -> Layout:
    lumen = _round_holes(rng, s, p["lumen_frac"] * s * s, int(rng.integers(3, 6)))
    free = _free(lumen, 2 * p["u"])
    pts = _place(rng, p["n"], lambda k: rng.uniform(0, s, (k, 2)), free, 4.2 * p["u"])
    return Layout(lumen, pts, rng.uniform(0, 180, len(pts)), None)


def _tum(rng, s, p) -> Layout:
    lumen = _round_holes(rng, s, p["lumen_frac"] * s * s, int(rng.integers(3, 6)), True)
    free = _free(lumen, 2 * p["u"])
    k = int(rng.integers(2, 4))
    ctr = rng.uniform(0.15 * s, 0.85 * s, (k, 2))
    sig = rng.uniform(5.5, 7.5) * p["u"]

    def propose(m: int) -> np.ndarray:
        return ctr[rng.integers(0, k, m)] + rng.normal(0, sig, (m, 2))

    pts = _place(rng, p["n"], propose, free, 4.2 * p["u"])
    return Layout(lumen, pts, rng.uniform(0, 180, len(pts)), None)


def _norm(rng, s, p) -> Layout:
    g = int(rng.integers(1, 3))
    area = p["lumen_frac"] * s * s
    r0 = np.sqrt(rng.dirichlet(np.full(g, 4.0)) * area / np.pi)
    ctr = np.array([rng.uniform(r + 3 * p["u"], s - r - 3 * p["u"], 2) for r in r0])

    def draw(f: float) -> np.ndarray:
        m = np.zeros((s, s), np.float32)
        for (cx, cy), r in zip(ctr, r0):
            cv2.circle(
                m,
                (int(round(16 * cx)), int(round(16 * cy))),
                int(round(16 * f * r)),
                1.0,
                -1,
                cv2.LINE_AA,
                4,
            )
        return m

    lumen, f = _fit_area(draw, area)
    glands = [(c, f * r) for c, r in zip(ctr, r0)]
    free = _free(lumen, 2 * p["u"])
    which_r = np.array([r for _, r in glands])

    def propose(m: int) -> np.ndarray:
        i = rng.integers(0, g, m)
        th = rng.uniform(0, 2 * np.pi, m)
        rad = which_r[i] + p["u"] * (2.8 + np.abs(rng.normal(0, 2.2, m)))
        centre = ctr[i]
        return centre + rad[:, None] * np.stack([np.cos(th), np.sin(th)], 1)

    pts = _place(rng, p["n"], propose, free, 4.2 * p["u"])
    ang = _ring_angles(pts, glands)
    return Layout(lumen, pts, ang, None)


def _ring_angles(pts: np.ndarray, glands: list) -> np.ndarray:
    """Long axis tangential to the nearest gland (polarised epithelium lining a lumen)."""
    ctrs = np.array([c for c, _ in glands])
    d = np.linalg.norm(pts[:, None] - ctrs[None], axis=2)
    v = pts - ctrs[d.argmin(1)]
    return np.degrees(np.arctan2(v[:, 1], v[:, 0])) + 90


def _fibre_chains(rng, s, p, angle: float, chains: bool) -> Layout:
    lumen = _slits(rng, s, p["lumen_frac"] * s * s, int(rng.integers(3, 6)), angle)
    free = _free(lumen, 2 * p["u"])
    d = np.array([np.cos(angle), np.sin(angle)])
    nrm = np.array([-d[1], d[0]])
    k = int(rng.integers(3, 5))
    offs = rng.uniform(-0.45 * s, 0.45 * s, k)
    mid = np.array([s / 2, s / 2])

    def propose(m: int) -> np.ndarray:
        if not chains:
            return rng.uniform(0, s, (m, 2))
        t = rng.uniform(-0.75 * s, 0.75 * s, m)
        o = offs[rng.integers(0, k, m)] + rng.normal(0, 0.6 * p["u"], m)
        return mid + t[:, None] * d + o[:, None] * nrm

    pts = _place(rng, p["n"], propose, free, 4.2 * p["u"])
    ang = np.degrees(angle) + rng.normal(0, 6, len(pts))
    return Layout(lumen, pts, ang, angle)


LAYOUTS: dict[str, Callable[[np.random.Generator, int, dict], Layout]] = {
    "LYM": _lym,
    "MUS": lambda r, s, p: _fibre_chains(r, s, p, r.uniform(0, np.pi), chains=False),
    "NORM": _norm,
    "STR": lambda r, s, p: _fibre_chains(r, s, p, r.uniform(0, np.pi), chains=True),
    "TUM": _tum,
}
