"""Frame-level state classification from audio + alignments, with speaker-disjoint splits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from core.checks import ConfigError, check_data_dir, check_positive, check_range

from .corpus import FeatureConfig, FrameCorpus, build_corpus
from .dataset import SplicedFrames, frame_loader
from .synthetic import ALIGNMENT_FILE, AUDIO_DIR, SynthConfig, write_synthetic_corpus

log = logging.getLogger(__name__)

HOW_TO_GET = (
    "It must hold the audio (any folder depth, files named <utt_id>.flac/.wav) and an alignment "
    "text file `utt_id label label ...` (one label per 10 ms frame). For LibriSpeech-100h: "
    "`python -m datamodules.deep_gmm.download --out DIR` fetches train-clean-100 and explains where "
    "to put the published phone alignments (converted_aligned_phones.txt, 41 classes)."
)


def split_speakers(
    speakers: list[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, set[str]]:
    """Seeded speaker-disjoint train/val/test sets (at least one speaker each)."""
    unique = sorted(set(speakers))
    if len(unique) < 3:
        raise ValueError(
            f"speaker-disjoint splits need >= 3 speakers, the corpus has {len(unique)}"
        )
    order = list(np.random.default_rng(seed).permutation(unique))
    n_test = max(1, int(round(len(unique) * test_fraction)))
    n_val = max(1, int(round(len(unique) * val_fraction)))
    if n_test + n_val >= len(unique):
        raise ValueError(
            f"{len(unique)} speakers leave none for training with these split fractions"
        )
    return {
        "test": set(order[:n_test]),
        "val": set(order[n_test : n_test + n_val]),
        "train": set(order[n_test + n_val :]),
    }


class FrameDataModule(L.LightningDataModule):
    """Spliced 40-dim log-mel frames (20 left + 5 right = 1040 inputs) -> per-frame state labels.

    ``data_dir=None`` generates the embedded formant-speech corpus once into ``embedded_dir`` and
    reads it through the same reader as a real corpus.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        alignment_file: str = "converted_aligned_phones.txt",
        audio_subdir: str = "",
        embedded_dir: str = "data/embedded/deep_gmm",
        synth: dict[str, Any] | None = None,
        num_states: int = 41,
        sample_rate: int = 16000,
        n_mels: int = 40,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        left_context: int = 20,
        right_context: int = 5,
        frame_tolerance: int = 1,
        normalise: bool = True,
        val_speaker_fraction: float = 0.15,
        test_speaker_fraction: float = 0.15,
        max_utterances: int | None = None,
        batch_size: int = 200,
        num_workers: int = 0,
        cache: bool = True,
        seed: int = 42,
    ) -> None:
        super().__init__()
        check_positive("datamodule.num_states", num_states, integer=True)
        check_positive("datamodule.sample_rate", sample_rate, integer=True)
        check_positive("datamodule.n_mels", n_mels, integer=True)
        check_range("datamodule.win_ms", win_ms, 1, 200)
        check_range("datamodule.hop_ms", hop_ms, 1, 100)
        check_range("datamodule.left_context", left_context, 0, 200)
        check_range("datamodule.right_context", right_context, 0, 200)
        check_range("datamodule.frame_tolerance", frame_tolerance, 0, 10)
        check_range(
            "datamodule.val_speaker_fraction",
            val_speaker_fraction,
            0,
            1,
            low_open=True,
            high_open=True,
        )
        check_range(
            "datamodule.test_speaker_fraction",
            test_speaker_fraction,
            0,
            1,
            low_open=True,
            high_open=True,
        )
        if val_speaker_fraction + test_speaker_fraction >= 1:
            raise ConfigError(
                "datamodule.val_speaker_fraction", "val + test speaker fractions must be < 1"
            )
        check_positive("datamodule.batch_size", batch_size, integer=True)
        if max_utterances is not None:
            check_positive("datamodule.max_utterances", max_utterances, integer=True)
        try:
            self.synth = SynthConfig(**(synth or {}), num_units=num_states, sample_rate=sample_rate)
        except TypeError as err:
            raise ConfigError(
                "datamodule.synth",
                f"{err}; allowed keys: {sorted(SynthConfig.__dataclass_fields__)}",
            ) from None
        if data_dir is not None:
            root = check_data_dir("datamodule.data_dir", data_dir, HOW_TO_GET)
            ali = (
                Path(alignment_file)
                if Path(alignment_file).is_absolute()
                else root / alignment_file
            )
            if not ali.is_file():
                raise ConfigError("datamodule.alignment_file", f"{ali} not found. {HOW_TO_GET}")
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.alignment_file, self.audio_subdir = alignment_file, audio_subdir
        self.embedded_dir = Path(embedded_dir)
        self.num_states = num_states
        self.features = FeatureConfig(
            sample_rate, n_mels, win_ms, hop_ms, frame_tolerance, normalise
        )
        self.left_context, self.right_context = left_context, right_context
        self.val_speaker_fraction, self.test_speaker_fraction = (
            val_speaker_fraction,
            test_speaker_fraction,
        )
        self.max_utterances = max_utterances
        self.batch_size, self.num_workers, self.cache, self.seed = (
            batch_size,
            num_workers,
            cache,
            seed,
        )
        self.splits: dict[str, SplicedFrames] = {}
        self.corpus: FrameCorpus | None = None

    @property
    def input_dim(self) -> int:
        return (self.left_context + 1 + self.right_context) * self.features.n_mels

    def _paths(self) -> tuple[Path, Path, Path]:
        """(corpus root, audio folder, alignment file)."""
        if self.data_dir is None:
            root = self.embedded_dir / f"synth_{self.synth.key()}"
            return root, root / AUDIO_DIR, root / ALIGNMENT_FILE
        ali = Path(self.alignment_file)
        return (
            self.data_dir,
            self.data_dir / self.audio_subdir,
            ali if ali.is_absolute() else self.data_dir / ali,
        )

    def prepare_data(self) -> None:
        if self.data_dir is None:
            write_synthetic_corpus(self.embedded_dir, self.synth)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        if self.data_dir is None:
            write_synthetic_corpus(self.embedded_dir, self.synth)  # no-op once written
        root, audio, ali = self._paths()
        cache_dir = (
            (self.embedded_dir if self.data_dir is None else root) / "cache" if self.cache else None
        )
        corpus = build_corpus(audio, ali, self.num_states, self.features, cache_dir)
        if self.max_utterances is not None and self.max_utterances < len(corpus.utt_ids):
            log.info(
                "using %d of %d utterances (datamodule.max_utterances)",
                self.max_utterances,
                len(corpus.utt_ids),
            )
        keep = np.arange(min(len(corpus.utt_ids), self.max_utterances or len(corpus.utt_ids)))
        sets = split_speakers(
            [corpus.speakers[u] for u in keep],
            self.val_speaker_fraction,
            self.test_speaker_fraction,
            self.seed,
        )
        for name, spk in sets.items():
            utts = np.asarray([u for u in keep if corpus.speakers[u] in spk], dtype=np.int64)
            self.splits[name] = SplicedFrames(
                corpus, corpus.frames_of(utts), self.left_context, self.right_context
            )
        self.corpus = corpus
        counts = np.bincount(corpus.labels[self.splits["train"].frames], minlength=self.num_states)
        log.info(
            "frames: %s; speakers: %s; train majority-class rate %.3f",
            {k: len(v) for k, v in self.splits.items()},
            {k: len(v) for k, v in sets.items()},
            counts.max() / max(1, counts.sum()),
        )

    def train_dataloader(self) -> DataLoader:
        return frame_loader(
            self.splits["train"], self.batch_size, True, self.num_workers, seed=self.seed
        )

    def val_dataloader(self) -> DataLoader:
        return frame_loader(self.splits["val"], self.batch_size, False, self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return frame_loader(self.splits["test"], self.batch_size, False, self.num_workers)
