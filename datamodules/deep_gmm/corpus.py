"""Audio folder + alignment file -> normalised log-mel frames with labels, cached on disk.

Audio files are found recursively by name: ``<utt_id>.{wav,flac,...}`` (LibriSpeech layout
``<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` works as is). Every mismatch is either an error
naming the utterance and the fix, or a counted skip reported in the log.
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

from .alignments import read_alignments
from .features import log_mel, normalise_utterance

log = logging.getLogger(__name__)

__all__ = ["FeatureConfig", "FrameCorpus", "build_corpus", "scan_audio", "AUDIO_EXTENSIONS"]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".sph")


@dataclass(frozen=True)
class FeatureConfig:
    sample_rate: int = 16000
    n_mels: int = 40
    win_ms: float = 25.0
    hop_ms: float = 10.0
    frame_tolerance: int = 1  # alignment may differ from the feature frame count by this much
    normalise: bool = True  # utterance-level mean/variance normalisation


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
                raise ValueError(
                    f"utterance {path.stem!r} has two audio files: {found[path.stem]} and {path}"
                )
            found[path.stem] = path
    return found


def load_audio(path: Path, sample_rate: int) -> tuple[np.ndarray, bool]:
    """Mono float32 waveform at ``sample_rate``; True when it had to be resampled."""
    wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wave = wave.mean(1)
    if sr != sample_rate:
        return librosa.resample(wave, orig_sr=sr, target_sr=sample_rate), True
    return wave, False


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
        raise ValueError(
            f"utterance {utt!r}: {len(labels)} alignment frames but {len(feats)} feature frames "
            f"(10 ms hop); more than datamodule.frame_tolerance={tol} apart. Check that the "
            "alignment belongs to this audio and uses one label per 10 ms frame."
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
    """Read, check and featurise every utterance that has both audio and an alignment."""
    audio_dir, alignment_file = Path(audio_dir), Path(alignment_file)
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"audio folder {audio_dir} not found")
    alignments = read_alignments(alignment_file)
    files = scan_audio(audio_dir)
    utts = [u for u in alignments if u in files]
    no_audio = len(alignments) - len(utts)
    no_ali = len(set(files) - set(alignments))
    if not utts:
        raise ValueError(
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
                return FrameCorpus(
                    z["feats"],
                    z["labels"],
                    z["starts"],
                    z["ends"],
                    list(z["utt_ids"]),
                    list(z["speakers"]),
                )
    feats_all, labels_all, starts, ends = [], [], [], []
    resampled = trimmed = 0
    pos = 0
    for utt in tqdm(utts, desc="log-mel features", unit="utt", mininterval=2.0):
        wave, was_resampled = load_audio(files[utt], cfg.sample_rate)
        resampled += was_resampled
        feats = log_mel(wave, cfg.sample_rate, cfg.n_mels, cfg.win_ms, cfg.hop_ms)
        if not np.isfinite(feats).all():
            raise ValueError(
                f"utterance {utt!r} ({files[utt]}): NaN or inf in its features (corrupt audio?)"
            )
        labels = alignments[utt]
        bad = (labels < 0) | (labels >= num_states)
        if bad.any():
            raise ValueError(
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
        utts,
        [speaker_of(u) for u in utts],
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
            utt_ids=np.asarray(utts),
            speakers=np.asarray(corpus.speakers),
        )
        tmp.replace(cache)
    return corpus
