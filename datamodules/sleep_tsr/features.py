"""30-s epochs -> log-magnitude STFT images (29 frames x 129 bins), the SeqSleepNet input."""

from __future__ import annotations

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view


def epoch_spectrogram(
    epochs: np.ndarray,
    sfreq: float = 100.0,
    window_s: float = 2.0,
    overlap: float = 0.5,
    n_fft: int = 256,
    eps: float = 1e-6,
) -> np.ndarray:
    """``(N, samples)`` -> ``(N, frames, n_fft // 2 + 1)`` float32, ``20 log10(|X| + eps)``.

    Symmetric Hamming window of ``window_s`` seconds (MATLAB ``hamming(2*fs)`` as in the
    reference code), hop ``window_s * (1 - overlap)``, zero-padded to ``n_fft`` points.
    With 30 s at 100 Hz, 2 s windows and 50 % overlap this is 29 x 129.
    """
    win = int(round(window_s * sfreq))
    hop = int(round(win * (1 - overlap)))
    if epochs.ndim != 2 or epochs.shape[1] < win:
        raise ValueError(f"expected (N, samples >= {win}) epochs, got {epochs.shape}")
    frames = sliding_window_view(np.asarray(epochs, dtype=np.float32), win, axis=1)[:, ::hop]
    spec = scipy.fft.rfft(frames * np.hamming(win).astype(np.float32), n=n_fft, axis=-1, workers=1)
    return (20.0 * np.log10(np.abs(spec) + eps)).astype(np.float32)


def n_frames(
    samples: int = 3000, sfreq: float = 100.0, window_s: float = 2.0, overlap: float = 0.5
) -> int:
    win = int(round(window_s * sfreq))
    return (samples - win) // int(round(win * (1 - overlap))) + 1
