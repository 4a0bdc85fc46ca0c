"""Audio folder + alignment file -> normalised log-mel frames with labels, cached on disk.

Audio files are found recursively by name: ``<utt_id>.{wav,flac,...}`` (LibriSpeech layout
``<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` works as is). Every mismatch is either a
``DataError`` naming the file or utterance and the fix, or a counted, named skip in the log:
stereo files are averaged to mono (counted; refused when the channels cancel), digitally silent
files are skipped (counted and named), other sample rates are resampled (counted).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from tqdm import tqdm

from core.errors import DataError

from .alignments import read_alignments
from .features import log_mel, normalise_utterance

log = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EXTENSIONS",
    "FeatureConfig",
    "FrameCorpus",
    "build_corpus",
    "load_audio",
    "scan_audio",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".sph")
# A file whose peak is at most one 16-bit step is digital silence: its labels cannot be learned.
SILENT_PEAK = 1.0 / 32768
# Averaging stereo that keeps less than this share of the channels' RMS: the channels cancel
# (one is polarity-inverted) and the mono mix is noise, not speech.
CANCEL_RATIO = 0.1
NAMES_SHOWN = 10


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    frame_tolerance: int = 1  # alignment may differ from the feature frame count by this much
    normalise: bool = True  # utterance-level mean/variance normalisation
    snip_edges: bool = True  # Kaldi's framing, 1 + (N - win) // hop frames; False: centred
    filterbank: str = "kaldi"  # kaldi | librosa (features.py)


@dataclass
class FrameCorpus:
    """All frames of all utterances, concatenated; ``starts``/``ends`` delimit each utterance."""

    feats: np.ndarray  # (N, n_mels) float32
    labels: np.ndarray  # (N,) int64
    starts: np.ndarray  # (U,) int64
    ends: np.ndarray  # (U,) int64
    utt_ids: list[str]
    speakers: list[str]

    def frames_of(self, utt_indices: np.ndarray) -> np.ndarray:
        if len(utt_indices) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(self.starts[u], self.ends[u]) for u in utt_indices])


def scan_audio(audio_dir: Path) -> dict[str, Path]:
    """utt_id (file stem) -> path for every audio file under ``audio_dir``."""
    found: dict[str, Path] = {}
    for path in sorted(audio_dir.rglob("*")):
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file():
            if path.stem in found:
                raise DataError(
                    f"utterance {path.stem!r} has two audio files: {found[path.stem]} and {path}"
                )
            found[path.stem] = path
    return found


def load_audio(path: Path, sample_rate: int) -> tuple[np.ndarray, bool, bool]:
    """Mono float32 waveform at ``sample_rate``, whether it was resampled, whether it was stereo.

    Several channels are averaged; a DataError names the file when they cancel (a polarity-
    inverted channel), since the average would be silence labelled as speech.
    """
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile's LibsndfileError and friends
        raise DataError(f"{path}: cannot be read as audio ({err})") from None
    multi = wave.shape[1] > 1
    if multi:
        channel_rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2, axis=0)).mean())
        wave = wave.mean(1)
        mono_rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
        if channel_rms > SILENT_PEAK and mono_rms < CANCEL_RATIO * channel_rms:
            raise DataError(
                f"{path}: channels cancel when averaged to mono (RMS "
                f"{mono_rms:.2g} of the mean vs {channel_rms:.2g} per channel; one channel is "
                "polarity-inverted?). Convert it to mono from one channel."
            )
    else:
        wave = wave[:, 0]
    if sr != sample_rate:
        return librosa.resample(wave, orig_sr=sr, target_sr=sample_rate), True, multi
    return wave, False, multi


def _cache_key(files: dict[str, Path], ali: Path, num_states: int, cfg: FeatureConfig) -> str:
    h = hashlib.sha1(
        json.dumps(
            [cfg.__dict__, num_states, str(ali.resolve()), ali.stat().st_size, ali.stat().st_mtime]
        ).encode()
    )
    for utt, p in sorted(files.items()):
        st = p.stat()
        h.update(f"{utt}:{p.resolve()}:{st.st_size}:{st.st_mtime}".encode())
    return h.hexdigest()[:12]


def _match_lengths(
    utt: str, feats: np.ndarray, labels: np.ndarray, tol: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    diff = len(feats) - len(labels)
    if abs(diff) > tol:
        raise DataError(
            f"utterance {utt!r}: {len(labels)} alignment frames but {len(feats)} feature frames "
            f"(10 ms hop); more than datamodule.frame_tolerance={tol} apart. Check that the "
            "alignment belongs to this audio and uses one label per 10 ms frame, and the frame "
            "convention: Kaldi alignments need datamodule.snip_edges=true (1 + (N - 400) // 160 "
            "frames), centred ones snip_edges=false (1 + N // 160)."
        )
    n = min(len(feats), len(labels))
    return feats[:n], labels[:n], diff != 0


def build_corpus(
    audio_dir: str | Path,
    alignment_file: str | Path,
    num_states: int,
    cfg: FeatureConfig = FeatureConfig(),
    cache_dir: str | Path | None = None,
    speaker_of=lambda utt: utt.split("-")[0],
) -> FrameCorpus:
    """Read, check and featurise every utterance that has both audio and an alignment.

    ``cache_dir`` (e.g. the project's ``data/cache/deep_gmm``; never the corpus folder, which
    may be read-only) keeps the features keyed by the settings and every file's size and mtime.
    """
    audio_dir, alignment_file = Path(audio_dir), Path(alignment_file)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio folder {audio_dir} not found")
    alignments = read_alignments(alignment_file)
    files = scan_audio(audio_dir)
    utts = [u for u in alignments if u in files]
    no_audio = len(alignments) - len(utts)
    no_ali = len(set(files) - set(alignments))
    if not utts:
        raise DataError(
            f"no utterance of {alignment_file} has an audio file under {audio_dir} "
            f"({len(files)} audio files found; names must be <utt_id>{AUDIO_EXTENSIONS})"
        )
    if no_audio:
        log.warning(
            "%d of %d aligned utterances have no audio file: skipped", no_audio, len(alignments)
        )
    if no_ali:
        log.warning("%d audio files have no alignment: skipped", no_ali)
    files = {u: files[u] for u in utts}
    cache = None
    if cache_dir is not None:
        cache = (
            Path(cache_dir)
            / f"deep_gmm_frames_{_cache_key(files, alignment_file, num_states, cfg)}.npz"
        )
        if cache.exists():
            with np.load(cache) as z:
                utt_ids = [str(u) for u in z["utt_ids"]]
                return FrameCorpus(
                    z["feats"],
                    z["labels"],
                    z["starts"],
                    z["ends"],
                    utt_ids,
                    [speaker_of(u) for u in utt_ids],
                )
    feats_all, labels_all, starts, ends, kept = [], [], [], [], []
    resampled = trimmed = stereo = 0
    silent: list[str] = []
    pos = 0
    for utt in tqdm(utts, desc="log-mel features", unit="utt", mininterval=2.0):
        wave, was_resampled, was_stereo = load_audio(files[utt], cfg.sample_rate)
        resampled += was_resampled
        stereo += was_stereo
        if not np.isfinite(wave).all():
            raise DataError(
                f"utterance {utt!r} ({files[utt]}): NaN or inf samples (corrupt audio?)"
            )
        if len(wave) == 0 or float(np.abs(wave).max()) <= SILENT_PEAK:
            silent.append(f"{utt} ({files[utt]})")
            continue
        try:
            feats = log_mel(
                wave,
                cfg.sample_rate,
                cfg.n_mels,
                cfg.win_ms,
                cfg.hop_ms,
                snip_edges=cfg.snip_edges,
                filterbank=cfg.filterbank,
            )
        except ValueError as err:  # shorter than one analysis window
            raise DataError(f"utterance {utt!r} ({files[utt]}): {err}") from None
        if not np.isfinite(feats).all():
            raise DataError(
                f"utterance {utt!r} ({files[utt]}): NaN or inf in its features (corrupt audio?)"
            )
        labels = alignments[utt]
        bad = (labels < 0) | (labels >= num_states)
        if bad.any():
            raise DataError(
                f"utterance {utt!r}: label {int(labels[bad][0])} outside the state set 0..{num_states - 1}; "
                "set datamodule.num_states to the number of states of the alignment"
            )
        feats, labels, was_trimmed = _match_lengths(utt, feats, labels, cfg.frame_tolerance)
        trimmed += was_trimmed
        if cfg.normalise:
            feats = normalise_utterance(feats)
        feats_all.append(feats)
        labels_all.append(labels)
        starts.append(pos)
        pos += len(labels)
        ends.append(pos)
        kept.append(utt)
    if silent:
        log.warning(
            "%d of %d utterances skipped: digital silence (peak <= 1/32768), so their labels "
            "cannot be learned: %s%s",
            len(silent),
            len(utts),
            ", ".join(silent[:NAMES_SHOWN]),
            " ..." if len(silent) > NAMES_SHOWN else "",
        )
    if not kept:
        raise DataError(f"every utterance under {audio_dir} is digital silence")
    if stereo:
        log.warning("%d multi-channel files averaged to mono", stereo)
    if resampled:
        log.warning("%d utterances resampled to %d Hz", resampled, cfg.sample_rate)
    if trimmed:
        log.info(
            "%d utterances trimmed to the shorter of features/alignment (<= %d frame)",
            trimmed,
            cfg.frame_tolerance,
        )
    corpus = FrameCorpus(
        np.concatenate(feats_all),
        np.concatenate(labels_all).astype(np.int64),
        np.asarray(starts, dtype=np.int64),
        np.asarray(ends, dtype=np.int64),
        kept,
        [speaker_of(u) for u in kept],
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            feats=corpus.feats,
            labels=corpus.labels,
            starts=corpus.starts,
            ends=corpus.ends,
            utt_ids=np.asarray(kept),
        )
        tmp.replace(cache)
    return corpus
