"""Embedded offline corpus: a source-filter (formant) synthesiser speaking phone-like units.

Each unit is silence, a vowel, a nasal, an unvoiced or a voiced fricative with its own formant
targets. Speakers differ in pitch, vocal-tract length (formant scaling), breathiness and
recording noise; units have random durations and formants glide across boundaries
(coarticulation), so context frames help. The corpus is written exactly like a real one —
16 kHz WAV files under ``audio/<speaker>/`` plus ``alignments.txt`` (``utt_id label ...``, one
label per analysis frame in the configured frame convention) — and then read through the same reader as LibriSpeech.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from core.atomic import atomic_folder

from .alignments import write_alignments

log = logging.getLogger(__name__)

__all__ = ["SynthConfig", "write_synthetic_corpus", "ALIGNMENT_FILE", "AUDIO_DIR"]

ALIGNMENT_FILE = "alignments.txt"
AUDIO_DIR = "audio"
_DONE = "DONE.json"


@dataclass(frozen=True)
class SynthConfig:
    """Generator settings; the output folder is keyed by all of them."""

    num_units: int = 41  # label set size (the LibriSpeech phone set has 41 classes)
    speakers: int = 30
    utterances_per_speaker: int = 16
    min_units: int = 10  # phone-like units per utterance (plus leading/trailing silence)
    max_units: int = 24
    min_frames: int = 4  # unit duration in 10 ms frames
    max_frames: int = 14
    sample_rate: int = 16000
    seed: int = 0
    # The alignment's frame convention (that of the features it will be read with): Kaldi's
    # snip_edges frames, 1 + (N - 400) // 160, or centred frames, 1 + N // 160.
    snip_edges: bool = True

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def _unit_inventory(cfg: SynthConfig, rng: np.random.Generator) -> list[dict]:
    """Unit 0 is silence; the rest split into vowels, nasals, unvoiced and voiced fricatives."""
    n = cfg.num_units - 1
    kinds = ["vowel"] * int(round(n * 0.58)) + ["nasal"] * int(round(n * 0.1))
    kinds += ["fricative"] * int(round(n * 0.2))
    kinds += ["voiced_fricative"] * (n - len(kinds))
    units = [{"kind": "silence", "formants": [500.0, 1500.0, 2500.0], "bw": [200.0, 200.0, 200.0]}]
    for kind in kinds:
        if kind == "vowel":
            f = [rng.uniform(260, 850), rng.uniform(750, 2400), rng.uniform(2300, 3300)]
            bw = [rng.uniform(60, 110), rng.uniform(80, 140), rng.uniform(120, 200)]
        elif kind == "nasal":
            f = [rng.uniform(220, 320), rng.uniform(900, 1600), rng.uniform(2200, 2800)]
            bw = [rng.uniform(150, 250), rng.uniform(200, 300), rng.uniform(200, 300)]
        else:  # fricatives: noise shaped by high resonances
            f = sorted(rng.uniform(1800, 7200, size=3).tolist())
            bw = [rng.uniform(300, 900) for _ in range(3)]
        units.append({"kind": kind, "formants": f, "bw": bw})
    return units


def _resonate(x: np.ndarray, freq: np.ndarray, bw: np.ndarray, sr: int, hop: int) -> np.ndarray:
    """Time-varying 2-pole resonator, coefficients updated every ``hop`` samples, state carried."""
    y = np.empty_like(x)
    zi = np.zeros(2)
    for i in range(len(freq)):
        r = np.exp(-np.pi * bw[i] / sr)
        theta = 2 * np.pi * freq[i] / sr
        a = [1.0, -2 * r * np.cos(theta), r * r]
        gain = (1 - r) * np.sqrt(1 - 2 * r * np.cos(2 * theta) + r * r)  # ~unity peak gain
        seg = slice(i * hop, (i + 1) * hop)
        y[seg], zi = lfilter([gain], a, x[seg], zi=zi)
    return y


def _speak(
    units: list[dict], seq: np.ndarray, durs: np.ndarray, spk: dict, cfg: SynthConfig, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Waveform and per-frame labels of one utterance."""
    sr, hop = cfg.sample_rate, cfg.sample_rate // 100
    labels = np.repeat(seq, durs)
    n_frames = len(labels)
    n = n_frames * hop
    kinds = [units[u]["kind"] for u in labels]
    jitter = rng.uniform(0.95, 1.05, size=(len(seq), 3))  # per-token formant variation
    formants = np.repeat(np.array([units[u]["formants"] for u in seq]) * jitter, durs, axis=0)
    formants[:, :3] *= spk["scale"]
    bws = np.repeat(np.array([units[u]["bw"] for u in seq]), durs, axis=0)
    # Coarticulation: formant tracks glide over ~50 ms around unit boundaries.
    kernel = np.ones(5) / 5
    padded = np.pad(formants, ((2, 2), (0, 0)), mode="edge")
    formants = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(3)], 1)
    formants = np.minimum(formants, 0.45 * sr)
    voiced = np.array([k in ("vowel", "nasal", "voiced_fricative") for k in kinds], float)
    noisy = np.array([k in ("fricative", "voiced_fricative") for k in kinds], float)
    level = np.array([0.0 if k == "silence" else (0.5 if k == "nasal" else 1.0) for k in kinds])
    # Source: glottal pulse train (declining pitch, 1 % jitter) and/or noise, per-sample gains.
    f0 = spk["f0"] * np.linspace(1.08, 0.92, n) * (1 + 0.01 * rng.standard_normal(n))
    phase = np.cumsum(f0 / sr)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    pulses = lfilter([1.0], [1.0, -0.9], pulses)  # glottal roll-off
    noise = rng.standard_normal(n)
    gain_v = np.repeat(voiced * level, hop)
    gain_n = np.repeat(noisy * level, hop)
    source = gain_v * pulses * 3.0 + gain_n * noise * 0.3 + spk["breath"] * gain_v * noise
    y = source
    for k in range(3):
        y = _resonate(y, formants[:, k], bws[:, k], sr, hop) * (2.0 if k == 0 else 1.5)
    y = lfilter([1.0, -0.95], [1.0], y)  # lip radiation
    speech_rms = np.sqrt(np.mean(y[np.repeat(level > 0, hop)] ** 2) + 1e-12)
    y = y + speech_rms * 10 ** (-spk["snr_db"] / 20) * rng.standard_normal(n)
    y = 0.8 * y / (np.abs(y).max() + 1e-9)
    return y.astype(np.float32), labels


def frame_labels(segment_labels: np.ndarray, num_samples: int, cfg: SynthConfig) -> np.ndarray:
    """The label of each analysis frame: that of the 10 ms segment holding the frame's centre,
    as a forced aligner labels frames (25 ms windows, 10 ms hop)."""
    hop = cfg.sample_rate // 100
    win = int(round(cfg.sample_rate * 0.025))
    if cfg.snip_edges:
        n = 1 + (num_samples - win) // hop
        centres = np.arange(n) * hop + win // 2
    else:
        centres = np.arange(1 + num_samples // hop) * hop
    return segment_labels[np.minimum(centres // hop, len(segment_labels) - 1)]


def write_synthetic_corpus(out_dir: str | Path, cfg: SynthConfig | None = None) -> Path:
    """Write the corpus into ``out_dir/<key>/`` once (skipped when complete); returns that folder."""
    cfg = cfg or SynthConfig()
    if cfg.num_units < 6:
        raise ValueError(f"SynthConfig.num_units must be >= 6, got {cfg.num_units}")
    if cfg.speakers < 3:
        raise ValueError(
            f"SynthConfig.speakers must be >= 3 for train/val/test speakers, got {cfg.speakers}"
        )
    root = Path(out_dir) / f"synth_{cfg.key()}"
    if (root / _DONE).exists():
        return root
    final = root
    with atomic_folder(final, lambda f: (f / _DONE).exists()) as tmp:  # no half-written reads
        rng = np.random.default_rng(cfg.seed)
        units = _unit_inventory(cfg, rng)
        alignments: dict[str, np.ndarray] = {}
        log.info("writing the synthetic formant-speech corpus to %s", root)
        for s in range(cfg.speakers):
            female = s % 2 == 1
            spk = {
                "f0": rng.uniform(170, 240) if female else rng.uniform(90, 140),
                "scale": rng.uniform(1.05, 1.2) if female else rng.uniform(0.85, 1.0),
                "breath": rng.uniform(0.02, 0.12),
                "snr_db": rng.uniform(18, 35),
            }
            speaker = str(1000 + s)
            spk_dir = tmp / AUDIO_DIR / speaker
            spk_dir.mkdir(parents=True, exist_ok=True)
            for u in range(cfg.utterances_per_speaker):
                k = rng.integers(cfg.min_units, cfg.max_units + 1)
                seq = np.concatenate([[0], rng.integers(1, cfg.num_units, size=k), [0]])
                durs = rng.integers(cfg.min_frames, cfg.max_frames + 1, size=len(seq))
                wave, labels = _speak(units, seq, durs, spk, cfg, rng)
                utt = f"{speaker}-1-{u:04d}"
                sf.write(spk_dir / f"{utt}.wav", wave, cfg.sample_rate, subtype="PCM_16")
                alignments[utt] = frame_labels(labels, len(wave), cfg)
        write_alignments(tmp / ALIGNMENT_FILE, alignments)
        (tmp / "units.json").write_text(json.dumps(units, indent=1))
        (tmp / _DONE).write_text(json.dumps(asdict(cfg)))
    return final
