"""Sleep-EDF Expanded (Sleep Cassette) for SeqSleepNet: LOSO folds of L-epoch STFT sequences."""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from core.checks import (
    ConfigError,
    check_choice,
    check_data_dir,
    check_positive,
    check_range,
)
from core.sampling import seeded_train_loader
from datamodules.sleep_tsr.cache import FeatureCache, Preprocessing
from datamodules.sleep_tsr.dataset import SequenceDataset, bin_statistics
from datamodules.sleep_tsr.features import epoch_spectrogram
from datamodules.sleep_tsr.folds import loso_split
from datamodules.sleep_tsr.reader import CLASSES, CROPS, SleepEDFError, load_recording
from datamodules.sleep_tsr.records import RecordingFiles, find_recordings
from datamodules.sleep_tsr.synthetic import SyntheticSettings, generate_dataset

log = logging.getLogger(__name__)

HOW_TO_GET = (
    "Download the Sleep Cassette files with "
    "`python -m datamodules.sleep_tsr.download --out DIR` (MNE fetcher, checksummed) "
    "and set datamodule.data_dir=DIR."
)


@dataclass
class Night:
    """One preprocessed night held in memory."""

    name: str
    subject: int
    night: int
    features: np.ndarray  # (N, 29, 129) float32
    labels: np.ndarray  # (N,) int64


class SleepEDFDataModule(L.LightningDataModule):
    """LOSO fold ``fold`` of the Sleep Cassette subjects (or of the embedded synthetic set).

    Every night is read with MNE (``reader.py``), cropped, turned into 29x129 log-spectrogram
    epochs and cached on disk by settings. ``setup`` then normalises every frequency bin with the
    training subjects' statistics and builds L-epoch sequences (stride ``train_stride`` for
    training, ``eval_stride`` = 1 for validation/test so every epoch is covered by up to L
    windows). Unusable nights are skipped with a warning naming the file
    (``on_bad_recording=raise`` stops instead).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        embedded_dir: str = "data/embedded/sleep_edf_synthetic",
        embedded: dict[str, Any] | None = None,
        cache_dir: str = "data/cache/sleep_tsr",
        channel: str = "EEG Fpz-Cz",
        sfreq: float = 100.0,
        crop: str = "sleep_30min",
        crop_minutes: float = 30.0,
        bandpass: list[float] | None = None,
        fold: int = 0,
        num_subjects: int | None = None,
        num_val_subjects: int = 4,
        seq_len: int = 20,
        train_stride: int = 1,
        eval_stride: int = 1,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        track_test_loss: bool = True,
        on_bad_recording: str = "skip",
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        super().__init__()
        check_choice("datamodule.crop", crop, CROPS)
        check_choice("datamodule.on_bad_recording", on_bad_recording, ("skip", "raise"))
        check_range("datamodule.crop_minutes", crop_minutes, low=0)
        check_positive("datamodule.sfreq", sfreq)
        for key, value in (
            ("seq_len", seq_len),
            ("train_stride", train_stride),
            ("eval_stride", eval_stride),
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
        ):
            check_positive(f"datamodule.{key}", value, integer=True)
        check_range("datamodule.num_val_subjects", num_val_subjects, low=1)
        if num_subjects is not None:
            check_range("datamodule.num_subjects", num_subjects, low=num_val_subjects + 2)
        max_folds = num_subjects if num_subjects is not None else 20
        check_range("datamodule.fold", fold, low=0, high=max_folds - 1)
        if bandpass is not None and (
            len(bandpass) != 2 or not 0 <= bandpass[0] < bandpass[1] < sfreq / 2
        ):
            raise ConfigError(
                "datamodule.bandpass",
                f"got {bandpass!r}; expected [low_hz, high_hz] with 0 <= low < high < {sfreq / 2}",
            )
        if data_dir is not None:
            check_data_dir("datamodule.data_dir", data_dir, HOW_TO_GET)
        self.data_dir = data_dir
        self.embedded_dir = Path(embedded_dir)
        self.embedded = SyntheticSettings(**(embedded or {}))
        self.prep = Preprocessing(
            channel=channel,
            sfreq=float(sfreq),
            crop=crop,
            crop_minutes=float(crop_minutes),
            bandpass=tuple(bandpass) if bandpass is not None else None,
        )
        self.cache = FeatureCache(cache_dir, self.prep)
        self.fold, self.num_subjects, self.num_val_subjects = fold, num_subjects, num_val_subjects
        self.seq_len, self.train_stride, self.eval_stride = seq_len, train_stride, eval_stride
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.track_test_loss, self.on_bad_recording = track_test_loss, on_bad_recording
        self.num_workers, self.seed = num_workers, seed
        self.class_names = CLASSES
        self.skipped: dict[str, str] = {}
        self._nights: list[Night] | None = None
        self.splits: dict[str, list[Night]] = {}
        self.datasets: dict[str, SequenceDataset] = {}
        self.norm: tuple[np.ndarray, np.ndarray] | None = None

    # ----------------------------------------------------------------- reading + caching
    @property
    def root(self) -> Path:
        if self.data_dir is not None:
            return Path(self.data_dir)
        return self.embedded_dir / self.embedded.key()  # one folder per generator setting

    def prepare_data(self) -> None:
        """Write the embedded set if needed, then preprocess (or load from cache) every night."""
        self._load_nights()

    def _load_nights(self) -> list[Night]:
        if self._nights is not None:
            return self._nights
        if self.data_dir is None:
            generate_dataset(self.root, self.embedded)
        files, problems = find_recordings(self.root)
        for line in problems:
            self._bad(line.split(":")[0], line)
        if not files:
            raise ConfigError(
                "datamodule.data_dir",
                f"no Sleep-EDF '*-PSG.edf' files under {str(self.root)!r}. {HOW_TO_GET}",
            )
        from tqdm import tqdm

        nights = []
        for rec in tqdm(files, desc="Sleep-EDF preprocessing", leave=False):
            night = self._night(rec)
            if night is not None:
                nights.append(night)
        self._nights = nights
        return nights

    def _night(self, rec: RecordingFiles) -> Night | None:
        entry = self.cache.load(rec) if rec.hypnogram is not None else None
        if entry is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    r = load_recording(
                        rec,
                        self.prep.channel,
                        self.prep.sfreq,
                        self.prep.crop,
                        self.prep.crop_minutes,
                        self.prep.bandpass,
                    )
            except SleepEDFError as err:
                self._bad(rec.name, str(err))
                return None
            if len(r.labels) == 0:
                self._bad(rec.name, f"{rec.psg}: no scored epochs left after cropping")
                return None
            feats = epoch_spectrogram(
                r.epochs, self.prep.sfreq, self.prep.window_s, self.prep.overlap, self.prep.n_fft
            )
            self.cache.save(rec, feats, r.labels)
            entry = {"features": feats, "labels": r.labels}
        return Night(rec.name, rec.subject, rec.night, entry["features"], entry["labels"])

    def _bad(self, name: str, message: str) -> None:
        if self.on_bad_recording == "raise":
            raise SleepEDFError(message)
        self.skipped[name] = message
        log.warning("skipping %s", message)
        warnings.warn(f"skipping {message}", stacklevel=3)

    # ----------------------------------------------------------------- folds
    def subjects(self) -> list[int]:
        """Subjects with at least one usable night, limited to ``num_subjects``."""
        subjects = sorted({n.subject for n in self._load_nights()})
        return subjects[: self.num_subjects] if self.num_subjects is not None else subjects

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        nights = self._load_nights()
        subjects = self.subjects()
        needed = max(self.fold + 1, self.num_val_subjects + 2, self.num_subjects or 0)
        if len(subjects) < needed:
            skipped = (
                f" ({len(self.skipped)} recordings skipped: see warnings)" if self.skipped else ""
            )
            raise ConfigError(
                "datamodule.data_dir",
                f"{str(self.root)!r} has {len(subjects)} usable subjects{skipped}, but fold="
                f"{self.fold}, num_val_subjects={self.num_val_subjects}, num_subjects="
                f"{self.num_subjects} need {needed}. Add the missing recordings or lower "
                "datamodule.num_subjects / datamodule.fold.",
            )
        train_s, val_s, test_s = loso_split(subjects, self.fold, self.num_val_subjects, self.seed)
        self.subject_split = {"train": train_s, "val": val_s, "test": test_s}
        by = {k: [n for n in nights if n.subject in set(v)] for k, v in self.subject_split.items()}
        mean, std = bin_statistics([n.features for n in by["train"]])
        self.norm = (mean, std)
        log.info(
            "fold %d: test subject %s, val %s, %d train subjects (%d nights)",
            self.fold, test_s, val_s, len(train_s), len(by["train"]),
        )  # fmt: skip
        for split, group in by.items():
            normed = [
                Night(n.name, n.subject, n.night, (n.features - mean) / std, n.labels)
                for n in group
            ]
            self.splits[split] = normed
            stride = self.train_stride if split == "train" else self.eval_stride
            self.datasets[split] = SequenceDataset(
                [n.features for n in normed], [n.labels for n in normed], self.seq_len, stride
            )

    def eval_nights(self, split: str) -> list[Night]:
        """Nights of ``split`` in dataset order (recording index of each batch item)."""
        return self.splits[split]

    # ----------------------------------------------------------------- checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """What prediction on new nights needs; Lightning stores it in every checkpoint."""
        if self.norm is None:
            return {}
        return {
            "norm_mean": self.norm[0].tolist(),
            "norm_std": self.norm[1].tolist(),
            "class_names": list(self.class_names),
            "preprocessing": asdict(self.prep),
            "seq_len": self.seq_len,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("norm_mean") is not None:
            self.norm = (
                np.asarray(state["norm_mean"], dtype=np.float32),
                np.asarray(state["norm_std"], dtype=np.float32),
            )

    # ----------------------------------------------------------------- loaders
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.eval_batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        # order from (seed, epoch), resumable mid-epoch (docs/conventions.md, "Exact resume")
        return seeded_train_loader(
            self.datasets["train"],
            self.batch_size,
            self.seed,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """Validation; plus the test subject when ``track_test_loss`` (the paper's Fig. 2)."""
        if self.track_test_loss:
            return [self._loader("val", False), self._loader("test", False)]
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
