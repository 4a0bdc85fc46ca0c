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
from models.lowlight_gp.validate import as_planes01, as_rgb01

MODES = ("lm", "cm")
SELECTIONS = ("kmeans", "gpe", "full")
TARGETS = ("centre", "patch")
FEATURES = ("patch", "neighbours")
GP_MEANS = ("zero", "input_mean")
EXPOSURES = ("paper", "skip", "blend")


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
        weight_centres: bool = False,
        gpe_levels: int = 256,
        predict_chunk: int = 2048,
        dedupe_queries: bool = True,
        features: str = "patch",
        gp_mean: str = "zero",
        gpe_hyper_points: int | None = 100,
        lengthscale_range: tuple[float, float] | list[float] = (1.0, 10.0),
        exposure: str = "paper",
        exposure_range: tuple[float, float] | list[float] = (0.2, 0.4),
        seed: int = 0,
    ) -> None:
        for key, value, allowed in (
            ("mode", mode, MODES),
            ("selection", selection, SELECTIONS),
            ("target", target, TARGETS),
            ("kmeans_backend", kmeans_backend, ("sklearn", "torch")),
            ("features", features, FEATURES),
            ("gp_mean", gp_mean, GP_MEANS),
            ("exposure", exposure, EXPOSURES),
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
        if features == "neighbours" and target == "patch":
            raise ValueError(
                "enhancer.features: 'neighbours' (the toolbox's 8 neighbours -> centre) needs "
                "target='centre'"
            )
        if gpe_hyper_points is not None and gpe_hyper_points < 2:
            raise ValueError(
                f"enhancer.gpe_hyper_points: got {gpe_hyper_points}; need >= 2 or null"
            )
        lo, hi = (float(v) for v in exposure_range)
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(
                f"enhancer.exposure_range: got {list(exposure_range)}; need 0 <= dark < bright <= 1"
            )
        ls_lo, ls_hi = (float(v) for v in lengthscale_range)
        if not 0.0 <= ls_lo < ls_hi:
            raise ValueError(
                f"enhancer.lengthscale_range: got {list(lengthscale_range)}; need 0 <= low < high"
            )
        self.mode, self.k, self.p, self.q = mode, int(k), p, q
        self.selection, self.target = selection, target
        self.gp_iterations = gp_iterations
        self.kmeans_backend, self.kmeans_max_iter = kmeans_backend, kmeans_max_iter
        self.kmeans_local_trials = kmeans_local_trials
        self.weight_centres = bool(weight_centres)
        self.gpe_levels, self.predict_chunk, self.seed = gpe_levels, predict_chunk, seed
        self.dedupe_queries = dedupe_queries
        self.features, self.gp_mean, self.gpe_hyper_points = features, gp_mean, gpe_hyper_points
        self.lengthscale_range = (ls_lo, ls_hi)
        self.exposure, self.exposure_range = exposure, (lo, hi)
        # GP input columns of a flattened p x q patch: all of them, or the toolbox's 8
        # neighbours (every pixel but the centre, which is the target).
        ci = centre_index(p, q)
        cols = [i for i in range(p * q) if features == "patch" or i != ci]
        self._cols = np.asarray(cols)

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
            x, y = centres[:, :pq][:, self._cols], centres[:, pq:]
            y = y[:, [ci]] if self.target == "centre" else y
            if not self.weight_centres:
                return TrainingSet(x, y, n)
            counts = np.bincount(labels, minlength=self.k)
            keep = counts > 0
            return TrainingSet(x[keep], y[keep], n, counts[keep].astype(np.float64))
        targets = re[:, [ci]] if self.target == "centre" else re
        if self.selection == "gpe":
            keep = gpe_unique_pairs(lo, re, self.gpe_levels)
            return TrainingSet(lo[keep][:, self._cols], targets[keep], n)
        return TrainingSet(lo[:, self._cols], targets, n)

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
        # GPE (toolbox): hyper-parameters on 100 evenly spaced of its unique pairs, the
        # posterior on all of them.
        hyper_rows = self.gpe_hyper_points if self.selection == "gpe" else None
        gp = ExactSEGP(
            iterations=self.gp_iterations,
            lengthscale_range=self.lengthscale_range,
            hyper_rows=hyper_rows,
        )
        y = ts.y - self._offset(ts.x)
        gp.fit(torch.from_numpy(ts.x), torch.from_numpy(y), counts)
        t2 = time.perf_counter()
        timings["gp_fit"] = t2 - t1
        c, h, w = low.shape
        queries = neighbourhoods(torch.from_numpy(low).float(), self.p, self.q)
        if len(self._cols) != self.p * self.q:
            queries = queries[:, torch.from_numpy(self._cols)].contiguous()
        pred = self._predict(gp, queries)
        if self.target == "centre":
            out = pred[:, 0].view(c, h, w)
        else:
            out = fold_patches(pred, c, h, w, self.p, self.q)
        timings["predict"] = time.perf_counter() - t2
        return out.numpy().astype(np.float64), timings, len(ts.x), ts.n_pairs

    def _offset(self, x: np.ndarray) -> np.ndarray | float:
        """GP prior mean per row: 0 (the paper) or the mean of the input features (the
        toolbox's ``meanAvg``: the GP then models the change from the neighbourhood mean)."""
        if self.gp_mean == "zero":
            return 0.0
        return np.asarray(x, dtype=np.float64).mean(1, keepdims=True)

    def _predict(self, gp: ExactSEGP, queries: torch.Tensor) -> torch.Tensor:
        """Posterior mean per query; identical neighbourhoods (frequent in dark 8-bit images:
        15-80 % of a 256 x 256 image) are predicted once, which gives the same result."""
        if not self.dedupe_queries:
            return self._predict_rows(gp, queries)
        first, inverse = unique_rows(queries)
        return self._predict_rows(gp, queries[first])[inverse]

    def _predict_rows(self, gp: ExactSEGP, rows: torch.Tensor) -> torch.Tensor:
        pred = gp.predict(rows, chunk=self.predict_chunk)
        if self.gp_mean == "input_mean":
            pred = pred + rows.to(pred.dtype).mean(1, keepdim=True)
        return pred.float()

    def enhance(self, low_rgb: np.ndarray, ref_planes: np.ndarray) -> EnhanceResult:
        """Enhance an RGB image given its reference planes (C, H, W).

        ``low_rgb``: (H, W, 3) float in [0, 1], or uint8, or a grey (H, W) image (repeated into
        RGB); NaN or out-of-range floats are refused (:mod:`models.lowlight_gp.validate`).
        ``exposure``: ``paper`` enhances every input; ``skip`` returns an input whose mean
        luminance is at or above the upper end of ``exposure_range`` unchanged; ``blend``
        mixes enhanced and input linearly across ``exposure_range`` (all enhanced below it,
        the input above it), so a normally exposed photo is not washed out.
        """
        low_rgb = as_rgb01(low_rgb, "low-light image")
        low = to_planes(low_rgb, self.mode)
        ref_shape = np.shape(ref_planes)
        if ref_shape != low.shape and ref_shape != low.shape[1:]:
            raise ValueError(
                f"reference planes {ref_shape} do not match the {self.mode.upper()} "
                f"planes of the input {low.shape} (LM needs a 1-channel Y reference, CM RGB)"
            )
        ref_planes = as_planes01(ref_planes, low.shape[0])
        weight = self.input_weight(low_rgb)
        if weight >= 1.0:
            return EnhanceResult(low_rgb.copy(), {"cluster": 0.0, "gp_fit": 0.0, "predict": 0.0})
        planes, timings, n_train, n_pairs = self.enhance_planes(low, ref_planes)
        out = from_planes(planes, low_rgb, self.mode)
        if weight > 0.0:
            out = (1.0 - weight) * out + weight * low_rgb
        return EnhanceResult(out, timings, n_train, n_pairs)

    def input_weight(self, rgb: np.ndarray) -> float:
        """Share of the input kept in the output (0 = fully enhanced) from its mean luminance."""
        if self.exposure == "paper":
            return 0.0
        dark, bright = self.exposure_range
        y = float(rgb_to_ycbcr(rgb)[..., 0].mean())
        if self.exposure == "skip":
            return 1.0 if y >= bright else 0.0
        return float(np.clip((y - dark) / (bright - dark), 0.0, 1.0))
