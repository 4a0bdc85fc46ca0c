"""LightningDataModule for frailty classification from foot-IMU gait (GSTRIDE-like cohorts)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from core.checks import (
    ConfigError,
    check_choice,
    check_data_dir,
    check_positive,
    check_range,
)
from core.sampling import seeded_train_loader
from datamodules.frailty import cache
from datamodules.frailty.generator import CohortSpec, generate_cohort
from datamodules.frailty.labels import CLASS_NAMES
from datamodules.frailty.pipeline import WindowSettings, build_windows
from datamodules.frailty.preprocess import wavelet_length
from datamodules.frailty.reader import CohortError, SchemaMismatch, read_cohort, read_participants
from datamodules.frailty.schema import CohortSchema

log = logging.getLogger(__name__)

HOW_TO_GET = (
    "GSTRIDE is public on Zenodo (doi:10.5281/zenodo.6883292): download and unzip it, then point "
    "datamodule.data_dir at the folder and set datamodule.schema to its file and column names "
    "(see docs/frailty.md)."
)


class WindowDataset(Dataset):
    """(coefficients, channels) float32 windows, labels and participant indices (for
    participant-level votes) from (memory-mapped) arrays."""

    def __init__(self, x: np.ndarray, y: np.ndarray, pid: np.ndarray) -> None:
        self.x, self.y, self.pid = x, y, pid

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.array(self.x[i]))
        return x, torch.tensor(int(self.y[i])), torch.tensor(int(self.pid[i]))


class FrailtyDataModule(L.LightningDataModule):
    """Participants -> db1 wavelet windows (203 x 6) labelled robust / pre-frail / frail.

    Args:
        data_dir: cohort folder laid out as ``schema`` says; ``None`` = embedded synthetic
            cohort written to ``embedded_dir`` by :func:`generate_cohort`.
        schema: :class:`CohortSchema` keys (file pattern, columns, rates); ``None`` = defaults
            (the embedded cohort's layout).
        target_rate_hz: every recording is resampled to this rate before windowing.
        window, stride: sliding window (paper: 200 / 50).
        wavelet, wavelet_level, wavelet_coeffs: ``pywt.wavedec`` per window and channel;
            ``keep`` all 203 coefficients or ``truncate`` to the window length.
        outlier_k: clip samples beyond median +- k robust std (fitted on train); ``None`` = off.
        max_nan_gap_s: NaN gaps up to this long are interpolated, longer ones cut the recording.
        split: ``subject`` (participants disjoint; default) or ``window`` (the paper's shuffle).
        split_fractions: train / val / test shares (of participants or of windows).
        embedded: :class:`CohortSpec` keys of the synthetic cohort.
        cache_dir: where preprocessed windows are cached (``None`` = no cache).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        schema: dict[str, Any] | None = None,
        embedded_dir: str = "data/embedded/frailty_gait",
        embedded: dict[str, Any] | None = None,
        cache_dir: str | None = "data/cache/frailty",
        target_rate_hz: float = 100.0,
        window: int = 200,
        stride: int = 50,
        wavelet: str = "db1",
        wavelet_level: int | None = None,
        wavelet_coeffs: str = "keep",
        outlier_k: float | None = 5.0,
        max_nan_gap_s: float = 0.1,
        split: str = "subject",
        split_fractions: tuple[float, float, float] = (0.75, 0.125, 0.125),
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_choice("datamodule.split", split, ("subject", "window"))
        check_choice("datamodule.wavelet_coeffs", wavelet_coeffs, ("keep", "truncate"))
        check_positive("datamodule.target_rate_hz", target_rate_hz)
        check_positive("datamodule.window", window, integer=True)
        check_positive("datamodule.stride", stride, integer=True)
        check_positive("datamodule.batch_size", batch_size, integer=True)
        check_range("datamodule.num_workers", num_workers, 0)
        check_range("datamodule.max_nan_gap_s", max_nan_gap_s, 0)
        if outlier_k is not None:
            check_positive("datamodule.outlier_k", outlier_k)
        fractions = tuple(float(f) for f in split_fractions)
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
            raise ConfigError(
                "datamodule.split_fractions",
                f"got {list(split_fractions)}; need three positive train/val/test shares "
                "summing to 1, e.g. [0.75, 0.125, 0.125]",
            )
        try:
            import pywt

            pywt.Wavelet(wavelet)
            wavelet_length(window, wavelet, wavelet_level)
        except ValueError as err:
            raise ConfigError(
                "datamodule.wavelet", f"{wavelet!r} / level {wavelet_level}: {err}"
            ) from err
        try:
            self.schema = CohortSchema.from_config(schema)
        except (TypeError, ValueError) as err:
            raise ConfigError("datamodule.schema", str(err)) from err
        try:
            self.spec = CohortSpec(**(embedded or {}))
        except TypeError as err:
            raise ConfigError("datamodule.embedded", str(err)) from err
        if data_dir is not None:
            check_data_dir("datamodule.data_dir", data_dir, HOW_TO_GET)
            # The participants table is small: check it with the config, before any
            # recording is read (missing columns are config errors, bad content DataErrors).
            try:
                read_participants(data_dir, self.schema)
            except SchemaMismatch as err:
                raise ConfigError(err.key, str(err).split(": ", 1)[1]) from err
        self.data_dir = data_dir
        self.embedded_dir = embedded_dir
        self.cache_dir = cache_dir
        self.target_rate_hz = float(target_rate_hz)
        self.settings = WindowSettings(
            window, stride, wavelet, wavelet_level, wavelet_coeffs, outlier_k
        )
        self.max_nan_gap_s = float(max_nan_gap_s)
        self.split = split
        self.split_fractions = fractions
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = int(seed)
        self.class_names = CLASS_NAMES
        # The net's input width: one per schema channel column (every recording is checked
        # to have them all); the module builds DeepConvLSTM with it (model.in_channels=null).
        self.in_channels = len(self.schema.channel_columns)
        self.arrays: dict[str, np.ndarray] | None = None
        self.meta: dict | None = None
        self.saved_state: dict[str, Any] = {}  # what a checkpoint restored (load_state_dict)

    # -- data -------------------------------------------------------------------------------
    def cohort_root(self) -> Path:
        if self.data_dir is not None:
            return Path(self.data_dir)
        return Path(self.embedded_dir) / self.spec.key()

    def prepare_data(self) -> None:
        if self.data_dir is None:
            generate_cohort(self.cohort_root(), self.spec)

    def _settings_key(self, root: Path) -> dict[str, Any]:
        files = [root / self.schema.participants_file, *sorted(root.rglob("*.csv"))]
        return {
            "version": 1,
            "schema": self.schema.as_dict(),
            "settings": asdict(self.settings),
            "target_rate_hz": self.target_rate_hz,
            "max_nan_gap_s": self.max_nan_gap_s,
            "split": self.split,
            "fractions": self.split_fractions,
            "seed": self.seed,
            "files": cache.fingerprint(files),
        }

    def setup(self, stage: str | None = None) -> None:
        if self.arrays is not None:
            return
        root = self.cohort_root()
        if self.data_dir is None and not root.is_dir():
            self.prepare_data()
        folder = None
        if self.cache_dir is not None:
            key = cache.cache_key(self._settings_key(root))
            folder = Path(self.cache_dir) / f"{self.split}-{key}"
            hit = cache.load(folder)
            if hit is not None:
                self.arrays, self.meta = hit
                log.info("frailty: loaded cached windows from %s", folder)
                self._log_counts()
                return
        recordings, report = read_cohort(
            root, self.schema, self.target_rate_hz, self.settings.window, self.max_nan_gap_s
        )
        try:
            arrays, meta = build_windows(
                recordings, self.settings, self.split, self.split_fractions, self.seed
            )
        except ValueError as err:  # e.g. too few participants of a class for split=subject
            raise CohortError(f"{root}: {err}") from err
        meta["cohort"] = report.as_dict()
        meta["root"] = str(root)
        if folder is not None:
            cache.save(folder, arrays, meta)
            self.arrays, self.meta = cache.load(folder)
        else:
            self.arrays, self.meta = arrays, meta
        self._log_counts()

    def _log_counts(self) -> None:
        counts = self.meta["counts"]
        log.info(
            "frailty windows (split=%s) robust/pre-frail/frail: train %s, val %s, test %s",
            self.split,
            counts["train"],
            counts["val"],
            counts["test"],
        )
        for name, n in counts.items():
            if sum(n) == 0:
                raise ConfigError(
                    "datamodule.split_fractions",
                    f"the {name} split has no windows; the cohort is too small for "
                    f"{list(self.split_fractions)}",
                )
        for k, cls in enumerate(self.class_names):
            train, val, test = (counts[name][k] for name in ("train", "val", "test"))
            if train == 0 and val + test > 0:
                raise CohortError(
                    f"{self.meta.get('root')}: class {cls} has {val} val / {test} test windows "
                    f"but none in training (split={self.split}, seed={self.seed}): the model "
                    "cannot predict it; add participants of that class or use another seed"
                )
            if train > 0 and test == 0:
                log.warning(
                    "frailty: class %s has NO test window (support 0, split=%s): its test "
                    "precision / recall / F1 are 0 and say nothing",
                    cls,
                    self.split,
                )

    def state_dict(self) -> dict[str, Any]:
        """Everything prediction on a new cohort needs, without the training data: Lightning
        stores it in every checkpoint (``pipeline=predict``, experiments/frailty/predict.py)."""
        if self.meta is None:
            return {}
        return {
            "class_names": list(self.class_names),
            "schema": self.schema.as_dict(),  # channel columns (their order), rate and time keys
            "target_rate_hz": self.target_rate_hz,
            "max_nan_gap_s": self.max_nan_gap_s,
            "settings": asdict(self.settings),  # window, stride, wavelet, level, coefficients
            "scaler": dict(self.meta["scaler"]),  # clipping bounds, mean, scale (train only)
            "split": self.split,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A resumed fit re-reads the cohort (the cache makes that cheap) and refits the same
        scaler from the same split; the saved state is kept only for inspection."""
        self.saved_state = dict(state)

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Windows per class in a split (for class-weighted losses)."""
        self.setup()
        return np.asarray(self.meta["counts"][split])

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        self.setup()
        ds = WindowDataset(*(self.arrays[f"{k}_{name}"] for k in ("x", "y", "pid")))
        if shuffle:  # order from (seed, epoch), resumable mid-epoch (docs/conventions.md)
            return seeded_train_loader(
                ds,
                self.batch_size,
                self.seed,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
            )
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
