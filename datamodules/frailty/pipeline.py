"""Cohort recordings -> split, standardised db1-wavelet windows (one function, cacheable)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from datamodules.frailty.preprocess import OutlierScaler, signal_features, wavelet_length
from datamodules.frailty.reader import Recording
from datamodules.frailty.splits import SPLITS, split_subjects, split_windows

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
    size, stride = settings.window, settings.stride
    segments, seg_rec, n_per_seg = [], [], []
    for i, rec in enumerate(recordings):
        for seg in rec.segments:
            segments.append(seg)
            seg_rec.append(i)
            n_per_seg.append(1 + (len(seg) - size) // stride)
    n_per_seg = np.asarray(n_per_seg)
    pids = np.repeat(np.asarray(seg_rec, dtype=np.int32), n_per_seg)
    labels = np.asarray([recordings[p].label for p in seg_rec], dtype=np.int64)
    labels = np.repeat(labels, n_per_seg)

    if split == "window":
        assign = split_windows(len(pids), fractions, seed)
        subject_assign = None
    else:
        subject_assign = split_subjects(np.array([r.label for r in recordings]), fractions, seed)
        assign = subject_assign[pids]

    # Scaler statistics from every sample that lies in at least one training window.
    train_samples, offset = [], 0
    for seg, n in zip(segments, n_per_seg):
        starts = np.flatnonzero(assign[offset : offset + n] == 0) * stride
        offset += n
        if len(starts):
            covered = np.zeros(len(seg) + 1, dtype=np.int32)
            np.add.at(covered, starts, 1)
            np.add.at(covered, starts + size, -1)
            train_samples.append(seg[np.cumsum(covered[:-1]) > 0])
    scaler = OutlierScaler(k=settings.outlier_k, seed=seed).fit(np.concatenate(train_samples))

    n_coeffs = wavelet_length(size, settings.wavelet, settings.wavelet_level)
    if settings.wavelet_coeffs == "truncate":
        n_coeffs = size
    channels = segments[0].shape[1]
    arrays: dict[str, np.ndarray] = {}
    for split_id, name in enumerate(SPLITS):
        n = int((assign == split_id).sum())
        arrays[f"x_{name}"] = np.empty((n, n_coeffs, channels), dtype=np.float32)
        arrays[f"y_{name}"] = labels[assign == split_id]
        arrays[f"pid_{name}"] = pids[assign == split_id]
    cursor = dict.fromkeys(SPLITS, 0)
    offset = 0
    for seg, n in tqdm(
        list(zip(segments, n_per_seg)), desc="frailty windows + db1", leave=False, disable=None
    ):
        feats = signal_features(
            seg,
            scaler,
            size,
            stride,
            settings.wavelet,
            settings.wavelet_level,
            settings.wavelet_coeffs,
        )
        seg_assign = assign[offset : offset + n]
        offset += n
        for split_id, name in enumerate(SPLITS):
            part = feats[seg_assign == split_id]
            arrays[f"x_{name}"][cursor[name] : cursor[name] + len(part)] = part
            cursor[name] += len(part)

    meta = {
        "participants": [r.participant for r in recordings],
        "labels": [r.label for r in recordings],
        "scores": [r.score for r in recordings],
        "subject_split": None if subject_assign is None else subject_assign.tolist(),
        "scaler": scaler.state(),
        "counts": {name: np.bincount(arrays[f"y_{name}"], minlength=3).tolist() for name in SPLITS},
    }
    return arrays, meta
