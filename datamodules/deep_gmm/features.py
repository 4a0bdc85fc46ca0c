"""Frame features of the paper: 40 log mel energies, 25 ms window, 10 ms hop, spliced 20 + 5.

Two filterbanks and two frame conventions:

- ``filterbank="kaldi"`` (default): Kaldi's ``compute-fbank-feats`` with dither 0 (DC offset
  removed per frame, pre-emphasis 0.97, Povey window, 512-point power spectrum, HTK-formula mel
  triangles from 20 Hz to Nyquist, log floored at float32 epsilon). Matches kaldi-native-fbank
  to 1e-3 in the log domain (tested). The published forced alignments come from Kaldi features.
- ``filterbank="librosa"``: librosa's Slaney mel filterbank on a Hann-windowed 512-point power
  spectrum (identical to ``librosa.feature.melspectrogram`` with ``center=True``, tested).
- ``snip_edges=True`` (default, Kaldi's default): frame i covers samples [i * hop, i * hop +
  win), ``1 + (N - win) // hop`` frames, the frame count of ``ali-to-pdf`` output.
  ``snip_edges=False``: frame i is centred at sample i * hop (reflect padding), ``1 + N // hop``
  frames (librosa's ``center=True``; Kaldi's own ``snip_edges=false`` centres frame i at
  i * hop + hop / 2 and gives ``(N + hop / 2) // hop`` frames, which is not offered).
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import get_window

__all__ = [
    "FILTERBANKS",
    "log_mel",
    "num_frames",
    "normalise_utterance",
    "splice_indices",
]

FILTERBANKS = ("kaldi", "librosa")
KALDI_PREEMPH = 0.97
KALDI_LOW_HZ = 20.0
KALDI_EPS = float(np.finfo(np.float32).eps)


@lru_cache(maxsize=8)
def _librosa_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """librosa's (Slaney) mel filterbank, (n_mels, n_fft // 2 + 1); cached per setting."""
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels).astype(np.float32)


def _kaldi_mel(freq: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(freq / 700.0)


@lru_cache(maxsize=8)
def _kaldi_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Kaldi's MelBanks: triangles equally spaced in mel over the first n_fft / 2 bins (the
    Nyquist bin gets no weight), (n_mels, n_fft // 2 + 1)."""
    low, high = _kaldi_mel(np.float64(KALDI_LOW_HZ)), _kaldi_mel(np.float64(sample_rate / 2))
    delta = (high - low) / (n_mels + 1)
    mel = _kaldi_mel(np.arange(n_fft // 2) * sample_rate / n_fft)
    banks = np.zeros((n_mels, n_fft // 2 + 1), dtype=np.float64)
    for b in range(n_mels):
        left, centre, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        up = (mel - left) / (centre - left)
        down = (right - mel) / (right - centre)
        w = np.where(mel <= centre, up, down)
        banks[b, : n_fft // 2] = np.where((mel > left) & (mel < right), w, 0.0)
    return banks.astype(np.float32)


def _povey_window(win: int) -> np.ndarray:
    n = np.arange(win)
    return ((0.5 - 0.5 * np.cos(2 * np.pi * n / (win - 1))) ** 0.85).astype(np.float32)


def num_frames(num_samples: int, win: int, hop: int, snip_edges: bool = True) -> int:
    """Frame count of ``num_samples`` samples: Kaldi's ``1 + (N - win) // hop`` (0 when N < win)
    with ``snip_edges``, else ``1 + N // hop`` (centred frames)."""
    if snip_edges:
        return 0 if num_samples < win else 1 + (num_samples - win) // hop
    return 1 + num_samples // hop


def _frames(wave: np.ndarray, win: int, hop: int, snip_edges: bool) -> np.ndarray:
    if snip_edges:
        if len(wave) < win:
            raise ValueError(f"audio of {len(wave)} samples is shorter than one window ({win})")
        return sliding_window_view(wave, win)[::hop]
    pad = win // 2
    if len(wave) <= pad:
        raise ValueError(f"audio of {len(wave)} samples is shorter than half a window ({pad})")
    padded = np.pad(wave, (pad, win - pad), mode="reflect")
    return sliding_window_view(padded, win)[::hop][: num_frames(len(wave), win, hop, False)]


def log_mel(
    wave: np.ndarray,
    sample_rate: int,
    n_mels: int = 40,
    win_ms: float = 25.0,
    hop_ms: float = 10.0,
    floor: float | None = None,
    snip_edges: bool = True,
    filterbank: str = "kaldi",
) -> np.ndarray:
    """(frames, n_mels) log mel energies; see the module docstring for the two conventions.

    ``floor`` keeps digital silence finite (default: float32 epsilon for ``kaldi``, as Kaldi;
    1e-10 for ``librosa``). The STFT runs in numpy, so no numba JIT warm-up is paid.
    """
    if filterbank not in FILTERBANKS:
        raise ValueError(f"filterbank must be one of {FILTERBANKS}, got {filterbank!r}")
    win = int(round(sample_rate * win_ms / 1000))
    hop = int(round(sample_rate * hop_ms / 1000))
    n_fft = 1 << (win - 1).bit_length()
    frames = _frames(np.asarray(wave, dtype=np.float32), win, hop, snip_edges)
    if filterbank == "kaldi":
        frames = frames - frames.mean(axis=1, keepdims=True)  # remove the DC offset
        emph = np.empty_like(frames)
        emph[:, 1:] = frames[:, 1:] - KALDI_PREEMPH * frames[:, :-1]
        emph[:, 0] = frames[:, 0] * (1 - KALDI_PREEMPH)
        windowed = emph * _povey_window(win)
        banks = _kaldi_filterbank(sample_rate, n_fft, n_mels)
        floor = KALDI_EPS if floor is None else floor
    else:
        windowed = frames * get_window("hann", win, fftbins=True).astype(np.float32)
        banks = _librosa_filterbank(sample_rate, n_fft, n_mels)
        floor = 1e-10 if floor is None else floor
    # Zero-padding the window to n_fft at its end or around it changes only the phase.
    power = np.abs(np.fft.rfft(windowed, n=n_fft, axis=-1)) ** 2
    mel = power.astype(np.float32) @ banks.T
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
