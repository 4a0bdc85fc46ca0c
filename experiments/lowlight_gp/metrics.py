"""Evaluation metrics of the lowlight_gp study: PSNR and SIFT feature retrieval.

SIFT retrieval protocol (GPE's "features retrieval", pixel-aligned because the darkened image
is the original with new intensities):
1. SIFT keypoints + descriptors (OpenCV defaults) on the 8-bit grey original (reference set R)
   and on the 8-bit grey enhanced image (set E).
2. Each descriptor of E is matched to its two nearest descriptors of R (L2); Lowe's ratio test
   keeps a match when d1 < ``ratio`` * d2 (0.8).
3. A kept match is a true positive when the two keypoints lie within ``radius`` pixels (3 px)
   of each other: the same image structure was found again at the same place.
4. Precision = TP / |E|, recall = TP / |R|, F1 = 2PR / (P + R); 0 when a set is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def psnr(image: np.ndarray, reference: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB of an image against the reference (both float in [0, peak]); inf if equal."""
    mse = float(np.mean((np.asarray(image, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


@dataclass
class SiftScore:
    precision: float
    recall: float
    f1: float
    n_reference: int
    n_enhanced: int
    true_positives: int


def _grey8(rgb: np.ndarray) -> np.ndarray:
    u8 = np.clip(np.round(np.asarray(rgb) * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY) if u8.ndim == 3 else u8


class SiftRetrieval:
    """Scores an enhanced image by how many of the original's SIFT features it gives back."""

    def __init__(self, ratio: float = 0.8, radius: float = 3.0) -> None:
        self.ratio, self.radius = ratio, radius
        self.sift = cv2.SIFT_create()
        self.matcher = cv2.BFMatcher(cv2.NORM_L2)
        self._cache: dict[int, tuple] = {}

    def features(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Keypoint positions (n, 2) and descriptors (n, 128) of an RGB image in [0, 1]."""
        kps, desc = self.sift.detectAndCompute(_grey8(rgb), None)
        pts = np.array([kp.pt for kp in kps], dtype=np.float64).reshape(-1, 2)
        return pts, desc

    def score(self, enhanced: np.ndarray, reference: np.ndarray) -> SiftScore:
        key = id(reference)
        if key not in self._cache or self._cache[key][0] is not reference:
            self._cache = {key: (reference, *self.features(reference))}
        _, ref_pts, ref_desc = self._cache[key]
        enh_pts, enh_desc = self.features(enhanced)
        n_r, n_e = len(ref_pts), len(enh_pts)
        tp = 0
        if n_r >= 2 and n_e >= 1:
            for pair in self.matcher.knnMatch(enh_desc, ref_desc, k=2):
                if len(pair) < 2 or pair[0].distance >= self.ratio * pair[1].distance:
                    continue
                m = pair[0]
                if np.hypot(*(enh_pts[m.queryIdx] - ref_pts[m.trainIdx])) <= self.radius:
                    tp += 1
        precision = tp / n_e if n_e else 0.0
        recall = tp / n_r if n_r else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        return SiftScore(precision, recall, f1, n_r, n_e, tp)
