"""The enhancer: patch pairs -> training-set selection -> SE-kernel GP -> every pixel predicted.

Works on planes (C, H, W): LM enhances the Y plane (Cb, Cr of the input carried over), CM the
three RGB planes with one shared GP. The reference planes come from the reference CNN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from models.lowlight_gp.color import rgb_to_ycbcr, ycbcr_to_rgb
from models.lowlight_gp.gp import ExactSEGP
from models.lowlight_gp.patches import (
    centre_index,
    fold_patches,
    neighbourhoods,
    patch_pairs,
    unique_rows,
)
from models.lowlight_gp.selection import gpe_unique_pairs, kmeans

MODES = ("lm", "cm")
SELECTIONS = ("kmeans", "gpe", "full")
TARGETS = ("centre", "patch")


@dataclass
class TrainingSet:
    """The GP's training rows; ``counts`` when each row is the mean of a cluster of pairs."""

    x: np.ndarray
    y: np.ndarray
    n_pairs: int
    counts: np.ndarray | None = None


@dataclass
class EnhanceResult:
    """Enhanced RGB image in [0, 1], seconds per stage and the GP training-set size."""

    image: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)
    n_train: int = 0
    n_pairs: int = 0


def to_planes(rgb: np.ndarray, mode: str) -> np.ndarray:
    """(H, W, 3) RGB -> (C, H, W) planes the GP works on (Y for LM, RGB for CM)."""
    if mode == "lm":
        return rgb_to_ycbcr(rgb)[..., :1].transpose(2, 0, 1).copy()
    return rgb.transpose(2, 0, 1).copy()


def from_planes(planes: np.ndarray, low_rgb: np.ndarray, mode: str) -> np.ndarray:
    """Enhanced planes -> RGB; LM keeps the low-light image's Cb and Cr (GPE's colour loss)."""
    planes = np.clip(planes, 0.0, 1.0)
    if mode == "lm":
        ycc = rgb_to_ycbcr(low_rgb)
        ycc[..., 0] = planes[0]
        return ycbcr_to_rgb(ycc)
    return planes.transpose(1, 2, 0).copy()


class GPEnhancer:
    """Cluster-approximated GP enhancement (Loh): k centres of the patch pairs train the GP."""

    def __init__(
        self,
        mode: str = "cm",
        k: int = 200,
        patch_size: tuple[int, int] | list[int] = (3, 3),
        selection: str = "kmeans",
        target: str = "centre",
        gp_iterations: int = 50,
        kmeans_backend: str = "torch",
        kmeans_max_iter: int = 5,
        kmeans_local_trials: int | None = 1,
        weight_centres: bool = True,
        gpe_levels: int = 256,
        predict_chunk: int = 2048,
        dedupe_queries: bool = True,
        seed: int = 0,
    ) -> None:
        for key, value, allowed in (
            ("mode", mode, MODES),
            ("selection", selection, SELECTIONS),
            ("target", target, TARGETS),
            ("kmeans_backend", kmeans_backend, ("sklearn", "torch")),
        ):
            if value not in allowed:
                raise ValueError(f"enhancer.{key}: got {value!r}; allowed: {', '.join(allowed)}")
        p, q = (int(v) for v in patch_size)
        if p < 1 or q < 1 or p * q < 2:
            raise ValueError(
                f"enhancer.patch_size: got {list(patch_size)}; need p, q >= 1 and p*q >= 2"
            )
        if selection == "kmeans" and k < 2:
            raise ValueError(f"enhancer.k: got {k}; the GP needs at least 2 cluster centres")
        self.mode, self.k, self.p, self.q = mode, int(k), p, q
        self.selection, self.target = selection, target
        self.gp_iterations = gp_iterations
        self.kmeans_backend, self.kmeans_max_iter = kmeans_backend, kmeans_max_iter
        self.kmeans_local_trials = kmeans_local_trials
        self.weight_centres = bool(weight_centres)
        self.gpe_levels, self.predict_chunk, self.seed = gpe_levels, predict_chunk, seed
        self.dedupe_queries = dedupe_queries

    # ---- stages ---------------------------------------------------------------------
    def training_set(self, low: np.ndarray, ref: np.ndarray) -> TrainingSet:
        """The GP's training rows chosen by ``selection`` from the N patch pairs.

        k-means with ``weight_centres``: each centre is the mean of its n_j pairs, so the GP
        gives it noise s2 / n_j (aggregated observations, in the likelihood and the posterior);
        without, the k centres are k plain observations (the paper's description, whose
        hyper-parameters drift to long length-scales: docs/lowlight_gp.md). Empty clusters
        stand for no pair and are dropped when weighting.
        """
        lo, re = patch_pairs(low, ref, self.p, self.q)
        n = len(lo)
        pq, ci = self.p * self.q, centre_index(self.p, self.q)
        if self.selection == "kmeans":
            centres, labels = kmeans(
                np.concatenate([lo, re], 1),
                self.k,
                seed=self.seed,
                max_iter=self.kmeans_max_iter,
                backend=self.kmeans_backend,
                n_local_trials=self.kmeans_local_trials,
            )
            x, y = centres[:, :pq], centres[:, pq:]
            y = y[:, [ci]] if self.target == "centre" else y
            if not self.weight_centres:
                return TrainingSet(x, y, n)
            counts = np.bincount(labels, minlength=self.k)
            keep = counts > 0
            return TrainingSet(x[keep], y[keep], n, counts[keep].astype(np.float64))
        targets = re[:, [ci]] if self.target == "centre" else re
        if self.selection == "gpe":
            keep = gpe_unique_pairs(lo, re, self.gpe_levels)
            return TrainingSet(lo[keep], targets[keep], n)
        return TrainingSet(lo, targets, n)

    def enhance_planes(self, low: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, dict, int, int]:
        """Enhance (C, H, W) planes given the reference planes; returns planes and timings."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        ts = self.training_set(low, ref)
        t1 = time.perf_counter()
        timings["cluster"] = t1 - t0
        if ts.counts is not None and len(ts.counts) < 2:
            # One non-empty cluster (a constant image): two halves at the same input are the
            # same observations (noise s2 / (n/2) twice = s2 / n once); the GP needs two rows.
            half = np.full(2, ts.counts[0] / 2)
            ts = TrainingSet(ts.x.repeat(2, 0), ts.y.repeat(2, 0), ts.n_pairs, half)
        counts = None if ts.counts is None else torch.from_numpy(ts.counts)
        gp = ExactSEGP(iterations=self.gp_iterations)
        gp.fit(torch.from_numpy(ts.x), torch.from_numpy(ts.y), counts)
        t2 = time.perf_counter()
        timings["gp_fit"] = t2 - t1
        c, h, w = low.shape
        queries = neighbourhoods(torch.from_numpy(low).float(), self.p, self.q)
        pred = self._predict(gp, queries)
        if self.target == "centre":
            out = pred[:, 0].view(c, h, w)
        else:
            out = fold_patches(pred, c, h, w, self.p, self.q)
        timings["predict"] = time.perf_counter() - t2
        return out.numpy().astype(np.float64), timings, len(ts.x), ts.n_pairs

    def _predict(self, gp: ExactSEGP, queries: torch.Tensor) -> torch.Tensor:
        """Posterior mean per query; identical neighbourhoods (frequent in dark 8-bit images:
        15-80 % of a 256 x 256 image) are predicted once, which gives the same result."""
        if not self.dedupe_queries:
            return gp.predict(queries, chunk=self.predict_chunk)
        first, inverse = unique_rows(queries)
        pred = gp.predict(queries[first], chunk=self.predict_chunk)
        return pred[inverse]

    def enhance(self, low_rgb: np.ndarray, ref_planes: np.ndarray) -> EnhanceResult:
        """Enhance an (H, W, 3) RGB image in [0, 1] given its reference planes (C, H, W)."""
        low = to_planes(low_rgb, self.mode)
        if ref_planes.shape != low.shape:
            raise ValueError(
                f"reference planes {ref_planes.shape} do not match the {self.mode.upper()} "
                f"planes of the input {low.shape} (LM needs a 1-channel Y reference, CM RGB)"
            )
        planes, timings, n_train, n_pairs = self.enhance_planes(low, ref_planes)
        return EnhanceResult(from_planes(planes, low_rgb, self.mode), timings, n_train, n_pairs)
