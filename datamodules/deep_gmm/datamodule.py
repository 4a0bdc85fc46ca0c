"""Frame-level state classification from audio + alignments, with speaker-disjoint splits."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from core.checks import ConfigError, check_choice, check_data_dir, check_positive, check_range
from core.errors import DataError

from .corpus import NAMES_SHOWN, FeatureConfig, FrameCorpus, build_corpus
from .dataset import SplicedFrames, frame_loader
from .features import FILTERBANKS
from .synthetic import ALIGNMENT_FILE, AUDIO_DIR, SynthConfig, write_synthetic_corpus

log = logging.getLogger(__name__)

HOW_TO_GET = (
    "It must hold the audio (any folder depth, files named <utt_id>.flac/.wav) and an alignment "
    "text file `utt_id label label ...` (one label per 10 ms frame). For LibriSpeech-100h: "
    "`python -m datamodules.deep_gmm.download --out DIR` fetches train-clean-100 and explains where "
    "to put the published phone alignments (converted_aligned_phones.txt, 41 classes)."
)


DEFAULT_SPEAKER_REGEX = r"^([^-]+)-"  # LibriSpeech / Kaldi style: <speaker>-<chapter>-<utt>


def read_utt2spk(path: Path) -> dict[str, str]:
    """Kaldi's ``utt2spk``: one ``<utt_id> <speaker_id>`` per line."""
    out: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected `<utt_id> <speaker_id>`, got {line!r}")
        if parts[0] in out and out[parts[0]] != parts[1]:
            raise DataError(f"{path}:{lineno}: utterance {parts[0]!r} has two speakers")
        out[parts[0]] = parts[1]
    return out


def assign_speakers(
    utt_ids: list[str], utt2spk: dict[str, str] | None, pattern: re.Pattern
) -> tuple[list[str], list[str]]:
    """Speaker of each utterance (from ``utt2spk``, else group 1 of ``pattern`` on the id) and
    the utterances neither names, which become their own speaker."""
    speakers, own = [], []
    for utt in utt_ids:
        if utt2spk is not None:
            spk = utt2spk.get(utt)
        else:
            m = pattern.match(utt)
            spk = m.group(1) if m else None
        if not spk:
            own.append(utt)
            spk = utt
        speakers.append(spk)
    return speakers, own


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
        snip_edges: bool = True,
        filterbank: str = "kaldi",
        utt2spk: str | None = None,
        speaker_regex: str = DEFAULT_SPEAKER_REGEX,
        val_speaker_fraction: float = 0.15,
        test_speaker_fraction: float = 0.15,
        max_utterances: int | None = None,
        batch_size: int = 200,
        num_workers: int = 0,
        cache_dir: str | None = None,
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
        check_choice("datamodule.snip_edges", snip_edges, [True, False])
        check_choice("datamodule.filterbank", filterbank, FILTERBANKS)
        try:
            self.speaker_pattern = re.compile(speaker_regex)
        except (re.error, TypeError) as err:
            raise ConfigError(
                "datamodule.speaker_regex", f"{speaker_regex!r} is not a regex ({err})"
            ) from None
        if self.speaker_pattern.groups < 1:
            raise ConfigError(
                "datamodule.speaker_regex",
                f"{speaker_regex!r} has no group; group 1 must capture the speaker id",
            )
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
            self.synth = SynthConfig(
                **(synth or {}),
                num_units=num_states,
                sample_rate=sample_rate,
                snip_edges=snip_edges,
            )
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
            if utt2spk is not None:
                spk_file = Path(utt2spk) if Path(utt2spk).is_absolute() else root / utt2spk
                if not spk_file.is_file():
                    raise ConfigError(
                        "datamodule.utt2spk",
                        f"{spk_file} not found; give a Kaldi utt2spk file (`<utt_id> <speaker>` "
                        "lines) or null to take speakers from datamodule.speaker_regex",
                    )
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.alignment_file, self.audio_subdir = alignment_file, audio_subdir
        self.embedded_dir = Path(embedded_dir)
        self.num_states = num_states
        self.features = FeatureConfig(
            sample_rate, n_mels, win_ms, hop_ms, frame_tolerance, normalise, snip_edges, filterbank
        )
        self.utt2spk = utt2spk
        self.left_context, self.right_context = left_context, right_context
        self.val_speaker_fraction, self.test_speaker_fraction = (
            val_speaker_fraction,
            test_speaker_fraction,
        )
        self.max_utterances = max_utterances
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        # The project's cache folder, never data_dir: a corpus may sit on a read-only volume.
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
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
        corpus = build_corpus(audio, ali, self.num_states, self.features, self.cache_dir)
        corpus.speakers = self._speakers(root, corpus.utt_ids)
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
        self.train_majority = int(counts.argmax())  # the trivial reference's class
        log.info(
            "frames: %s; speakers: %s; train majority-class rate %.3f",
            {k: len(v) for k, v in self.splits.items()},
            {k: len(v) for k, v in sets.items()},
            counts.max() / max(1, counts.sum()),
        )

    def _speakers(self, root: Path, utt_ids: list[str]) -> list[str]:
        """Speakers from ``utt2spk`` or ``speaker_regex``; the log names what each came from."""
        table = None
        if self.utt2spk is not None and self.data_dir is not None:
            path = Path(self.utt2spk) if Path(self.utt2spk).is_absolute() else root / self.utt2spk
            table = read_utt2spk(path)
            source = f"utt2spk file {path}"
        else:
            source = f"datamodule.speaker_regex={self.speaker_pattern.pattern!r}"
        speakers, own = assign_speakers(utt_ids, table, self.speaker_pattern)
        log.info("speakers from %s: %d speakers", source, len(set(speakers)))
        if own:
            log.warning(
                "%d of %d utterances have no speaker in the %s: each becomes its own speaker, "
                "so the speaker-disjoint split cannot keep their true speakers apart: %s%s",
                len(own),
                len(utt_ids),
                source,
                ", ".join(own[:NAMES_SHOWN]),
                " ..." if len(own) > NAMES_SHOWN else "",
            )
        return speakers

    def train_dataloader(self) -> DataLoader:
        return frame_loader(
            self.splits["train"], self.batch_size, True, self.num_workers, seed=self.seed
        )

    def val_dataloader(self) -> DataLoader:
        return frame_loader(self.splits["val"], self.batch_size, False, self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return frame_loader(self.splits["test"], self.batch_size, False, self.num_workers)
