"""Windowing, outlier clipping, standardisation and db1 wavelets, vectorised over windows.

Order (Amjad et al., Sec. 3.3, with the statistics fitted on training data only):

1. ``sliding_windows``: 200-sample windows, stride 50, as zero-copy strided views.
2. ``OutlierScaler.fit`` on the *training* windows: per-channel robust bounds
   (median +- k * 1.4826 * MAD) and then mean / std of the clipped samples, i.e. what
   scikit-learn's ``StandardScaler`` computes. ``transform`` clips and standardises. Clipping
   (winsorising) instead of deleting samples keeps every window 200 samples long and the time
   axis intact.
3. ``wavelet_features``: ``pywt.wavedec(x, "db1")`` along the window axis of all windows and
   channels at once. For 200 samples pywt picks level 7 and returns coefficient arrays of
   lengths 2, 2, 4, 7, 13, 25, 50, 100 (cA7, cD7 ... cD1) - 203 values, not 200, because odd
   lengths are padded at levels 4-6. ``coeffs="keep"`` (default) concatenates all 203 so the
   transform stays invertible; ``coeffs="truncate"`` keeps the first 200 (drops the last 3
   finest-scale details, cD1[97:100]) for a model that insists on the window length.

The result is (windows, coefficients, channels): the coefficient axis is the "time" axis
the DeepConvLSTM scans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pywt

MAD_TO_STD = 1.4826  # MAD of a Gaussian times this is its standard deviation


def sliding_windows(signal: np.ndarray, size: int, stride: int) -> np.ndarray:
    """(time, channels) -> (windows, channels, size) strided view; no window crosses the end."""
    if signal.shape[0] < size:
        return np.empty((0, signal.shape[1], size), dtype=signal.dtype)
    return np.lib.stride_tricks.sliding_window_view(signal, size, axis=0)[::stride]


def wavelet_length(size: int, wavelet: str = "db1", level: int | None = None) -> int:
    """Number of concatenated ``wavedec`` coefficients for one window of ``size`` samples."""
    return sum(len(c) for c in pywt.wavedec(np.zeros(size), wavelet, level=level))


def wavelet_features(
    windows: np.ndarray,
    wavelet: str = "db1",
    level: int | None = None,
    coeffs: str = "keep",
) -> np.ndarray:
    """(windows, channels, size) -> (windows, n_coeffs, channels) float32, one pywt call."""
    if coeffs not in ("keep", "truncate"):
        raise ValueError(f"coeffs must be 'keep' or 'truncate', got {coeffs!r}")
    parts = pywt.wavedec(windows, wavelet, level=level, axis=-1)
    out = np.concatenate(parts, axis=-1)
    if coeffs == "truncate":
        out = out[..., : windows.shape[-1]]
    return np.ascontiguousarray(out.transpose(0, 2, 1), dtype=np.float32)


def wavelet_features_loop(
    windows: np.ndarray,
    wavelet: str = "db1",
    level: int | None = None,
    coeffs: str = "keep",
) -> np.ndarray:
    """Reference: the same transform one window and one channel at a time (the usual
    notebook code); kept for the equivalence test and the speed benchmark."""
    n, channels, size = windows.shape
    n_coeffs = wavelet_length(size, wavelet, level)
    keep = n_coeffs if coeffs == "keep" else size
    out = np.empty((n, keep, channels), dtype=np.float32)
    for i in range(n):
        for c in range(channels):
            out[i, :, c] = np.concatenate(pywt.wavedec(windows[i, c], wavelet, level=level))[:keep]
    return out


@dataclass
class OutlierScaler:
    """Per-channel outlier clipping + standardisation, fitted on training windows only.

    ``k`` is the clipping half-width in robust standard deviations (``None`` disables
    clipping). ``max_fit_samples`` subsamples the training samples for the median / MAD so
    fitting stays fast on a full cohort (the mean / std use every sample).
    """

    k: float | None = 5.0
    max_fit_samples: int = 2_000_000
    seed: int = 0
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None

    def fit(self, windows: np.ndarray) -> OutlierScaler:
        """``windows``: (n, channels, size) training windows."""
        if len(windows) == 0:
            raise ValueError("cannot fit the scaler on zero training windows")
        channels = windows.shape[1]
        flat = np.moveaxis(windows, 1, -1).reshape(-1, channels)
        if self.k is not None:
            rng = np.random.default_rng(self.seed)
            sub = flat
            if len(flat) > self.max_fit_samples:
                sub = flat[rng.choice(len(flat), self.max_fit_samples, replace=False)]
            median = np.median(sub, axis=0)
            mad = np.median(np.abs(sub - median), axis=0) * MAD_TO_STD
            mad = np.where(mad > 0, mad, np.abs(sub - median).max(axis=0) + 1e-12)
            self.low, self.high = median - self.k * mad, median + self.k * mad
        total = np.zeros(channels)
        total_sq = np.zeros(channels)
        count = 0
        for start in range(0, len(windows), 4096):  # chunked: no full float64 copy
            chunk = self._clip(windows[start : start + 4096].astype(np.float64))
            total += chunk.sum(axis=(0, 2))
            total_sq += np.square(chunk).sum(axis=(0, 2))
            count += chunk.shape[0] * chunk.shape[2]
        self.mean = total / count
        var = np.maximum(total_sq / count - self.mean**2, 0.0)
        std = np.sqrt(var)
        self.scale = np.where(std > 0, std, 1.0)  # StandardScaler leaves constant channels
        return self

    def _clip(self, windows: np.ndarray) -> np.ndarray:
        if self.k is None:
            return windows
        return np.clip(windows, self.low[None, :, None], self.high[None, :, None])

    def transform(self, windows: np.ndarray) -> np.ndarray:
        """(n, channels, size) -> clipped, standardised float32 copy."""
        if self.mean is None:
            raise RuntimeError("OutlierScaler.transform called before fit")
        out = self._clip(windows.astype(np.float32))
        out -= self.mean[None, :, None].astype(np.float32)
        out /= self.scale[None, :, None].astype(np.float32)
        return out

    def state(self) -> dict:
        as_list = lambda a: None if a is None else np.asarray(a).tolist()  # noqa: E731
        return {
            "k": self.k,
            "low": as_list(self.low),
            "high": as_list(self.high),
            "mean": as_list(self.mean),
            "scale": as_list(self.scale),
        }
