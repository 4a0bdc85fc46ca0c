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
from datamodules.sleep_tsr.reader import (
    CLASSES,
    CROPS,
    ChannelRateError,
    SleepEDFError,
    TruncatedPSGError,
    load_recording,
)
from datamodules.sleep_tsr.records import RecordingFiles, find_recordings
from datamodules.sleep_tsr.synthetic import SyntheticSettings, generate_dataset

log = logging.getLogger(__name__)

HOW_TO_GET = (
    "Download the Sleep Cassette files with "
    "`python -m datamodules.sleep_tsr.download --out DIR` (MNE fetcher, checksummed) "
    "and set datamodule.data_dir=DIR."
)
# which recordings a run may use: the paper's SC-20, every Sleep Cassette subject, or only the
# Sleep Telemetry study (other people, other recording conditions: never mixed in silently)
SCOPES = {"sc20": ("SC", 0, 19), "sc": ("SC", 0, 99), "st": ("ST", 0, 99)}
NEVER_SKIPPED = (TruncatedPSGError, ChannelRateError)


@dataclass
class Night:
    """One preprocessed night held in memory."""

    name: str
    subject: int
    night: int
    features: np.ndarray  # (N, 29, 129) float32
    labels: np.ndarray  # (N,) int64


class SleepEDFDataModule(L.LightningDataModule):
    """LOSO fold ``fold`` (= the test subject's id) of the Sleep-EDF subjects in ``scope``.

    ``scope``: ``sc20`` (default) the paper's SC subjects 0-19; ``sc`` every Sleep Cassette
    subject found; ``st`` the Sleep Telemetry study alone. What was found and what is used is
    logged. ``num_subjects`` keeps the first N subject ids in scope (by id, usable or not, so a
    skipped night never moves a fold onto another subject).

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
        scope: str = "sc20",
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
        check_choice("datamodule.scope", scope, tuple(SCOPES))
        if not isinstance(fold, int) or isinstance(fold, bool):
            raise ConfigError("datamodule.fold", f"got {fold!r}; expected a subject id (integer)")
        check_range("datamodule.fold", fold, low=SCOPES[scope][1], high=SCOPES[scope][2])
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
        self.scope = scope
        self.fold, self.num_subjects, self.num_val_subjects = fold, num_subjects, num_val_subjects
        self.seq_len, self.train_stride, self.eval_stride = seq_len, train_stride, eval_stride
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.track_test_loss, self.on_bad_recording = track_test_loss, on_bad_recording
        self.num_workers, self.seed = num_workers, seed
        self.class_names = CLASSES
        self.skipped: dict[str, str] = {}
        self.files: list[RecordingFiles] = []
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

    def _in_scope(self, study: str, subject: int) -> bool:
        want, low, high = SCOPES[self.scope]
        return study == want and low <= subject <= high

    def _load_nights(self) -> list[Night]:
        if self._nights is not None:
            return self._nights
        if self.data_dir is None:
            generate_dataset(self.root, self.embedded)
        found, problems = find_recordings(self.root)
        files = [r for r in found if self._in_scope(r.study, r.subject)]
        self._log_scope(found, files)
        for line in problems:
            name = line.split(":")[0].rsplit("/", 1)[-1]
            if self._in_scope(name[:2].upper(), int(name[3:5]) if name[3:5].isdigit() else -1):
                self._bad(line.split(":")[0], line)
        if not files:
            raise ConfigError(
                "datamodule.data_dir",
                f"no Sleep-EDF '*-PSG.edf' files of scope {self.scope!r} under "
                f"{str(self.root)!r} ({len(found)} other PSG files found). {HOW_TO_GET}",
            )
        from tqdm import tqdm

        nights = []
        for rec in tqdm(files, desc="Sleep-EDF preprocessing", leave=False):
            night = self._night(rec)
            if night is not None:
                nights.append(night)
        if self.skipped:
            listing = "; ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
            log.warning("%d of %d nights skipped: %s", len(self.skipped), len(files), listing)
        self.files, self._nights = files, nights
        return nights

    def _log_scope(self, found: list[RecordingFiles], used: list[RecordingFiles]) -> None:
        """Say what the folder holds and which part of it this run uses."""

        def describe(recs: list[RecordingFiles]) -> str:
            ids = sorted({r.subject for r in recs})
            span = f"subjects {ids[0]}-{ids[-1]}" if ids else "no subjects"
            return f"{len(recs)} nights of {len(ids)} {span}"

        studies = {st: [r for r in found if r.study == st] for st in ("SC", "ST")}
        log.info(
            "Sleep-EDF under %s: SC %s; ST %s. scope=%s uses %s",
            self.root, describe(studies["SC"]), describe(studies["ST"]), self.scope,
            describe(used),
        )  # fmt: skip
        ignored = len(found) - len(used)
        if ignored:
            log.info(
                "%d nights outside scope=%s are not used (datamodule.scope: sc20 = SC subjects "
                "0-19 as the paper, sc = all SC subjects, st = Sleep Telemetry only)",
                ignored,
                self.scope,
            )

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
            except NEVER_SKIPPED:
                raise
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
        """Usable subjects of the pool: the first ``num_subjects`` subject ids in scope."""
        nights = self._load_nights()
        usable = {n.subject for n in nights}
        return [s for s in self._pool() if s in usable]

    def _pool(self) -> list[int]:
        ids = sorted({r.subject for r in self.files})
        return ids[: self.num_subjects] if self.num_subjects is not None else ids

    def _check_test_subject(self) -> None:
        """``fold`` must name a subject of the pool with at least one usable night."""
        pool, fold = self._pool(), self.fold
        if fold not in {r.subject for r in self.files}:
            raise ConfigError(
                "datamodule.fold",
                f"test subject {fold} has no recordings of scope {self.scope!r} under "
                f"{str(self.root)!r} (expected e.g. SC4{fold:02d}1E0-PSG.edf); subjects found: "
                f"{sorted({r.subject for r in self.files})}",
            )
        if fold not in pool:
            raise ConfigError(
                "datamodule.fold",
                f"test subject {fold} is not among the first num_subjects={self.num_subjects} "
                f"subjects {pool}; raise datamodule.num_subjects or pick one of them",
            )
        if fold not in {n.subject for n in self._load_nights()}:
            own = [r for r in self.files if r.subject == fold]
            why = "; ".join(f"{r.psg}: {self.skipped.get(r.name, 'skipped')}" for r in own)
            raise SleepEDFError(f"test subject {fold} (datamodule.fold) has no usable night: {why}")

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        nights = self._load_nights()
        self._check_test_subject()
        subjects = self.subjects()
        needed = self.num_val_subjects + 2
        if len(subjects) < needed:
            skipped = (
                f" ({len(self.skipped)} recordings skipped: see warnings)" if self.skipped else ""
            )
            raise ConfigError(
                "datamodule.data_dir",
                f"{str(self.root)!r} has {len(subjects)} usable subjects{skipped} in scope "
                f"{self.scope!r}, but num_val_subjects={self.num_val_subjects} needs {needed} "
                "(1 test + validation + >= 1 training). Add the missing recordings or lower "
                "datamodule.num_val_subjects.",
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
