"""The runner's built-in example dataset: 8x8 handwritten digits stored as one CSV file.

The embedded default writes scikit-learn's bundled digits (no network) to
``<data_dir>/digits.csv`` once and then reads it back through the same reader as a user's file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from core.checks import ConfigError, check_data_dir, check_positive, check_range
from core.errors import DataError
from core.sampling import seeded_train_loader

log = logging.getLogger(__name__)

FILE_NAME = "digits.csv"


def write_embedded_digits(out_dir: Path) -> Path:
    """Write scikit-learn's digits (1797 x 64 pixels + label) as CSV; skipped if present."""
    path = out_dir / FILE_NAME
    if path.exists():
        return path
    from sklearn.datasets import load_digits

    out_dir.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    table = np.column_stack([digits.data.astype(np.int64), digits.target])
    header = ",".join([f"px{i}" for i in range(64)] + ["label"])
    tmp = path.with_suffix(f".tmp{os.getpid()}")  # one per writer: parallel jobs
    np.savetxt(tmp, table, fmt="%d", delimiter=",", header=header, comments="")
    tmp.replace(path)
    return path


def read_digits_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels scaled to [0, 1] and integer labels from a ``px0..px63,label`` CSV file."""
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1)
    except ValueError as err:  # a non-numeric cell, a ragged row
        raise DataError(f"{path}: not a numeric px0..px63,label table ({err})") from None
    if table.ndim != 2 or table.shape[1] != 65:
        raise DataError(f"{path}: expected 65 columns (px0..px63,label), got {table.shape}")
    return (table[:, :64] / 16.0).astype(np.float32), table[:, 64].astype(np.int64)


class DigitsDataModule(L.LightningDataModule):
    """Seeded train/val/test split of the digits CSV."""

    def __init__(
        self,
        data_dir: str | None = None,
        embedded_dir: str = "data/embedded/digits",
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 42,
    ) -> None:
        super().__init__()
        check_range("datamodule.val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
        check_range("datamodule.test_fraction", test_fraction, 0, 1, low_open=True, high_open=True)
        if val_fraction + test_fraction >= 1:
            raise ConfigError("datamodule.val_fraction", "val_fraction + test_fraction must be < 1")
        check_positive("datamodule.batch_size", batch_size, integer=True)
        if data_dir is not None:
            check_data_dir(
                "datamodule.data_dir",
                data_dir,
                f"It must hold {FILE_NAME} (columns px0..px63,label).",
            )
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.embedded_dir = Path(embedded_dir)
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.splits: dict[str, TensorDataset] = {}

    @property
    def csv_path(self) -> Path:
        return (self.data_dir or self.embedded_dir) / FILE_NAME

    def prepare_data(self) -> None:
        if self.data_dir is None:
            write_embedded_digits(self.embedded_dir)
        elif not self.csv_path.exists():
            raise FileNotFoundError(f"{self.csv_path} not found: put {FILE_NAME} in data_dir")

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        x, y = read_digits_csv(self.csv_path)
        order = np.random.default_rng(self.seed).permutation(len(y))
        n_test = int(len(y) * self.test_fraction)
        n_val = int(len(y) * self.val_fraction)
        parts = {
            "test": order[:n_test],
            "val": order[n_test : n_test + n_val],
            "train": order[n_test + n_val :],
        }
        for name, idx in parts.items():
            self.splits[name] = TensorDataset(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))
        log.info("digits: %s", {k: len(v) for k, v in self.splits.items()})

    def train_dataloader(self) -> DataLoader:
        return seeded_train_loader(
            self.splits["train"], self.batch_size, self.seed, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], self.batch_size, num_workers=self.num_workers)
