"""Frame features of the paper: 40 log mel energies, 25 ms window, 10 ms hop, spliced 20 + 5."""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import get_window

__all__ = ["log_mel", "normalise_utterance", "splice_indices"]


@lru_cache(maxsize=8)
def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's (Slaney) mel filterbank, (n_mels, n_fft // 2 + 1); cached per setting."""
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


def log_mel(
    wave: np.ndarray,
    sample_rate: int,
    n_mels: int = 40,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    floor: float = 1e-10,
) -> np.ndarray:
    """(1 + len // hop, n_mels) log mel energies; frame i is centred at sample i * hop.

    Same framing as ``librosa.feature.melspectrogram(center=True)`` (reflect padding, Hann window
    of ``win_ms`` zero-padded to a power-of-two FFT), with the STFT done in numpy so that no numba
    JIT warm-up is paid; the filterbank is librosa's. ``floor`` keeps digital silence finite.
    """
    win = int(round(sample_rate * win_ms / 1000))
    hop = int(round(sample_rate * hop_ms / 1000))
    n_fft = 1 << (win - 1).bit_length()
    wave = np.asarray(wave, dtype=np.float32)
    if len(wave) <= n_fft // 2:
        raise ValueError(
            f"audio of {len(wave)} samples is shorter than half an FFT window ({n_fft // 2})"
        )
    padded = np.pad(wave, n_fft // 2, mode="reflect")
    frames = sliding_window_view(padded, n_fft)[::hop]
    window = np.zeros(n_fft, dtype=np.float32)
    start = (n_fft - win) // 2
    window[start : start + win] = get_window("hann", win, fftbins=True)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = power.astype(np.float32) @ _mel_filterbank(sample_rate, n_fft, n_mels).T
    return np.log(np.maximum(mel, floor)).astype(np.float32)


def normalise_utterance(feats: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Zero mean, unit variance per band over the utterance (removes channel and level offsets)."""
    mean = feats.mean(0, keepdims=True)
    std = feats.std(0, keepdims=True)
    return ((feats - mean) / (std + eps)).astype(np.float32)


def splice_indices(
    frames: np.ndarray, starts: np.ndarray, ends: np.ndarray, left: int, right: int
) -> np.ndarray:
    """Row indices (len(frames), left + 1 + right) of each frame's context window.

    Windows are clamped to the frame's own utterance [start, end): edge frames repeat, as in the
    usual Kaldi-style splicing, so contexts never leak across utterances.
    """
    offsets = np.arange(-left, right + 1)
    idx = frames[:, None] + offsets[None, :]
    return np.clip(idx, starts[:, None], ends[:, None] - 1)
