"""Cohort recordings -> split, standardised db1-wavelet windows (one function, cacheable)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from datamodules.frailty.preprocess import OutlierScaler, sliding_windows, wavelet_features
from datamodules.frailty.reader import Recording
from datamodules.frailty.splits import split_subjects, split_windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowSettings:
    """Preprocessing settings (Amjad et al. Sec. 3.3)."""

    window: int = 200
    stride: int = 50
    wavelet: str = "db1"
    wavelet_level: int | None = None
    wavelet_coeffs: str = "keep"
    outlier_k: float | None = 5.0


def build_windows(
    recordings: list[Recording],
    settings: WindowSettings,
    split: str,
    fractions: tuple[float, float, float],
    seed: int,
) -> tuple[dict[str, np.ndarray], dict]:
    """Window every segment, assign splits, fit clipping + scaler on train, wavelet-transform.

    Returns arrays ``x_<split>`` (n, coeffs, channels) float32, ``y_<split>`` (labels) and
    ``pid_<split>`` (participant index into ``meta['participants']``), plus metadata.
    """
    raw, labels, pids = [], [], []
    for i, rec in enumerate(recordings):
        for seg in rec.segments:
            w = sliding_windows(seg, settings.window, settings.stride)
            raw.append(w)
            labels.append(np.full(len(w), rec.label, dtype=np.int64))
            pids.append(np.full(len(w), i, dtype=np.int32))
    windows = np.concatenate(raw)  # (n, channels, window): one copy of the cohort
    labels, pids = np.concatenate(labels), np.concatenate(pids)

    if split == "window":
        assign = split_windows(len(windows), fractions, seed)
        subject_assign = None
    else:
        subject_assign = split_subjects(np.array([r.label for r in recordings]), fractions, seed)
        assign = subject_assign[pids]

    scaler = OutlierScaler(k=settings.outlier_k, seed=seed).fit(windows[assign == 0])
    arrays: dict[str, np.ndarray] = {}
    for split_id, name in enumerate(("train", "val", "test")):
        idx = np.flatnonzero(assign == split_id)
        feats = []
        for start in tqdm(
            range(0, len(idx), 8192), desc=f"frailty {name} wavelets", leave=False, disable=None
        ):
            chunk = scaler.transform(windows[idx[start : start + 8192]])
            feats.append(
                wavelet_features(
                    chunk, settings.wavelet, settings.wavelet_level, settings.wavelet_coeffs
                )
            )
        arrays[f"x_{name}"] = np.concatenate(feats) if feats else np.empty((0, 0, 0), np.float32)
        arrays[f"y_{name}"] = labels[idx]
        arrays[f"pid_{name}"] = pids[idx]

    meta = {
        "participants": [r.participant for r in recordings],
        "labels": [r.label for r in recordings],
        "scores": [r.score for r in recordings],
        "subject_split": None if subject_assign is None else subject_assign.tolist(),
        "scaler": scaler.state(),
        "counts": {
            name: np.bincount(arrays[f"y_{name}"], minlength=3).tolist()
            for name in ("train", "val", "test")
        },
    }
    return arrays, meta
