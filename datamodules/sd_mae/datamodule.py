"""One LightningDataModule for the paper's three datasets and the embedded tiles.

The pipeline switches ``stage`` (pretrain -> probe -> finetune) on the same instance, so a
chained study reads and checks the files once.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import lightning as L
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Subset

from core.checks import (
    ConfigError,
    check_choice,
    check_data_dir,
    check_positive,
    check_range,
)
from core.sampling import seeded_train_loader
from datamodules.sd_mae.folder import ClassFolderDataset, check_images, scan_class_folders
from datamodules.sd_mae.pcam import PCAM_CLASSES, PCAM_SIZE, PCamDataset
from datamodules.sd_mae.split import compile_group_regex, groups_from_names, holdout
from datamodules.sd_mae.tiles import write_tiles
from datamodules.sd_mae.transforms import (
    FINETUNE_AUGMENTS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    STAGES,
    eval_transform,
    train_transform,
)

log = logging.getLogger(__name__)

DATASETS = ("embedded", "pcam", "nct_crc", "imagenet100", "folder")
# how each dataset lays out its files (also the text of the "how to get it" messages)
HOW_TO_GET = {
    "pcam": "Download the 8 HDF5 files from https://zenodo.org/records/2546921 and gunzip them "
    "(or: python -m datamodules.sd_mae.download --dataset pcam --out DIR).",
    "nct_crc": "Download NCT-CRC-HE-100K.zip and CRC-VAL-HE-7K.zip from "
    "https://zenodo.org/records/1214456 and unzip both into one folder "
    "(or: python -m datamodules.sd_mae.download --dataset nct_crc --out DIR).",
    "imagenet100": "Build ImageNet-100 (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG) from ImageNet-1k "
    "with the CMC class list (https://github.com/HobbitLong/CMC/blob/master/imagenet100.txt).",
    "folder": "Point data_dir at a folder holding train/<class>/* and test/<class>/*, or at one "
    "folder of <class>/* with datamodule.test_fraction set (seeded hold-out).",
}


class SDMAEDataModule(L.LightningDataModule):
    """PCam (HDF5), NCT-CRC-HE / ImageNet-100 / any class folders, or the embedded tiles."""

    def __init__(
        self,
        dataset: str = "embedded",
        data_dir: str | None = None,
        embedded_dir: str = "data/embedded",
        img_size: int = 224,
        num_classes: int | None = None,
        stage: str = "pretrain",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        limit_train: int | None = None,
        limit_test: int | None = None,
        exclude_classes: list[str] | None = None,
        check_files: bool | str = True,
        test_fraction: float | None = None,
        group_regex: str | None = None,
        embedded_tile_size: int = 64,
        embedded_n_train: int = 300,
        embedded_n_test: int = 100,
        min_crop_scale: dict[str, float] | None = None,
        randaugment_magnitude: int | None = 9,
        finetune_augment: str = "light",
        seed: int = 42,
    ) -> None:
        super().__init__()
        check_choice("datamodule.dataset", dataset, DATASETS)
        check_choice("datamodule.stage", stage, STAGES)
        check_positive("datamodule.img_size", img_size, integer=True)
        check_positive("datamodule.batch_size", batch_size, integer=True)
        check_range("datamodule.val_fraction", val_fraction, 0, 1, high_open=True)
        for key, val in (("limit_train", limit_train), ("limit_test", limit_test)):
            if val is not None:
                check_positive(f"datamodule.{key}", val, integer=True)
        if dataset == "embedded":
            if data_dir is not None:
                raise ConfigError(
                    "datamodule.data_dir",
                    "the embedded dataset is generated; leave data_dir=null "
                    "or pick dataset=pcam|nct_crc|imagenet100|folder",
                )
            check_positive("datamodule.embedded_tile_size", embedded_tile_size, integer=True)
        else:
            if data_dir is None:
                raise ConfigError(
                    "datamodule.data_dir",
                    f"dataset={dataset} needs data_dir. {HOW_TO_GET[dataset]}",
                )
            check_data_dir("datamodule.data_dir", data_dir, HOW_TO_GET[dataset])
        check_choice("datamodule.check_files", check_files, (True, False, "header"))
        check_choice("datamodule.finetune_augment", finetune_augment, FINETUNE_AUGMENTS)
        if test_fraction is not None:
            check_range(
                "datamodule.test_fraction", test_fraction, 0, 1, low_open=True, high_open=True
            )
            if dataset != "folder":
                raise ConfigError(
                    "datamodule.test_fraction",
                    f"only dataset=folder is split by a hold-out fraction; {dataset} has its "
                    "published test split (leave test_fraction=null)",
                )
        elif dataset == "folder":
            d = Path(data_dir)
            if not ((d / "train").is_dir() and (d / "test").is_dir()):
                raise ConfigError(
                    "datamodule.test_fraction",
                    f"{data_dir!r} has no train/ and test/ sub-folders; for one folder of "
                    "<class>/* set test_fraction (e.g. 0.2) to hold out a seeded fraction",
                )
        if dataset == "pcam" and group_regex is not None:
            raise ConfigError("datamodule.group_regex", "PCam has no file names to group by")
        if group_regex is not None:
            try:
                compile_group_regex(group_regex)
            except (re.error, ValueError) as err:
                raise ConfigError("datamodule.group_regex", f"{group_regex!r}: {err}") from err
        crop = dict(min_crop_scale or {})
        for key, val in crop.items():
            check_choice("datamodule.min_crop_scale key", key, STAGES)
            check_range(f"datamodule.min_crop_scale.{key}", val, 0, 1, low_open=True)
        if randaugment_magnitude is not None:
            check_range("datamodule.randaugment_magnitude", randaugment_magnitude, 0, 30)
        if exclude_classes is None:
            exclude_classes = ["BACK"] if dataset in ("embedded", "nct_crc") else []
        self.dataset = dataset
        self.data_dir = data_dir
        self.embedded_dir = embedded_dir
        self.img_size = img_size
        self.expected_classes = num_classes
        self.stage = stage
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.limit_train = limit_train
        self.limit_test = limit_test
        self.exclude = list(exclude_classes)
        self.check_files = check_files
        self.test_fraction = test_fraction
        self.group_regex = group_regex
        self.tile = (embedded_tile_size, embedded_n_train, embedded_n_test)
        self.min_crop_scale = crop
        self.randaugment_magnitude = randaugment_magnitude
        self.finetune_augment = finetune_augment
        self.seed = seed
        self.classes: list[str] = []
        self._train_base: Dataset | None = None
        self._train_idx = self._val_idx = None
        self._val_base: Dataset | None = None
        self._test: Dataset | None = None
        self._crop = 1.0
        self._native: int | None = None
        self.saved_state: dict = {}  # what a checkpoint restored (load_state_dict)

    # ------------------------------------------------------------------ data
    @property
    def num_classes(self) -> int:
        """Classes found on disk after ``setup``; the configured count before."""
        return len(self.classes) if self.classes else (self.expected_classes or 0)

    def _check_classes(self) -> None:
        n = self.expected_classes
        if n is not None and n != len(self.classes):
            raise ConfigError(
                "datamodule.num_classes",
                f"configured {n} but {self.dataset} has {len(self.classes)} classes "
                f"{self.classes} (after excluding {self.exclude}); set datamodule.num_classes="
                f"{len(self.classes)}",
            )

    def prepare_data(self) -> None:
        if self.dataset == "embedded":
            write_tiles(self.embedded_dir, *self.tile)

    def _folders(self) -> tuple[Path, Path, int | None, float]:
        """(train root, test root, native tile size, eval crop ratio) of a folder dataset."""
        if self.dataset == "embedded":
            root = write_tiles(self.embedded_dir, *self.tile)
            return root / "train", root / "test", self.tile[0], 1.0
        d = Path(self.data_dir)
        if self.dataset == "nct_crc":
            return d / "NCT-CRC-HE-100K", d / "CRC-VAL-HE-7K", 224, 1.0
        if self.dataset == "imagenet100":
            return d / "train", d / "val", None, 0.875
        if self.test_fraction is not None:
            return d, d, None, 1.0
        return d / "train", d / "test", None, 1.0

    def setup(self, stage: str | None = None) -> None:
        if self._train_base is not None:
            return
        if self.dataset == "pcam":
            train = PCamDataset(self.data_dir, "train", limit=self.limit_train)
            val = PCamDataset(self.data_dir, "valid")
            test = PCamDataset(self.data_dir, "test", limit=self.limit_test)
            self.classes = list(PCAM_CLASSES)
            self._train_base, self._val_base, self._test = train, val, test
            self._train_idx = np.arange(len(train))
            self._val_idx = np.arange(len(val))
            self._crop = 1.0
            self._native = PCAM_SIZE
        else:
            tr_root, te_root, native, crop = self._folders()
            if self.test_fraction is not None:  # one folder of classes: seeded hold-out
                root = Path(self.data_dir)
                classes, every = scan_class_folders(root, self.exclude)
                labels_all = np.array([y for _, y in every])
                groups_all = self._groups([p for p, _ in every])
                keep, held = holdout(labels_all, self.test_fraction, self.seed, groups_all)
                tr, te = [every[i] for i in keep], [every[i] for i in held]
                log.info(
                    "folder %s: %d files held out as test (test_fraction %s%s, seed %d)",
                    root,
                    len(te),
                    self.test_fraction,
                    f", grouped by {self.group_regex!r}" if groups_all is not None else "",
                    self.seed,
                )
            else:
                for key, r in (("train", tr_root), ("test", te_root)):
                    if not r.is_dir():
                        raise ConfigError(
                            "datamodule.data_dir",
                            f"expected the {key} split at {str(r)!r}. {HOW_TO_GET.get(self.dataset, '')}",
                        )
                classes, tr = scan_class_folders(tr_root, self.exclude)
                _, te = scan_class_folders(te_root, self.exclude, classes)
            if self.check_files:
                pixels = self.check_files != "header"
                check_images(tr, f"{self.dataset} train ({tr_root})", native, pixels)
                check_images(te, f"{self.dataset} test ({te_root})", native, pixels)
            self.classes = classes
            base = ClassFolderDataset(tr, classes, native)
            self._train_base = base
            self._val_base = ClassFolderDataset(tr, classes, native)
            self._test = ClassFolderDataset(te, classes, native)
            labels = base.targets()
            tr_idx, va_idx = holdout(
                labels, self.val_fraction, self.seed, self._groups([p for p, _ in tr])
            )
            if self.limit_train and self.limit_train < len(tr_idx):
                tr_idx, _ = train_test_split(
                    tr_idx,
                    train_size=self.limit_train,
                    stratify=labels[tr_idx],
                    random_state=self.seed,
                )
            self._train_idx, self._val_idx = np.sort(tr_idx), np.sort(va_idx)
            if self.limit_test and self.limit_test < len(self._test):
                keep, _ = train_test_split(
                    np.arange(len(self._test)),
                    train_size=self.limit_test,
                    stratify=self._test.targets(),
                    random_state=self.seed,
                )
                self._test.samples = [self._test.samples[i] for i in np.sort(keep)]
            self._crop = crop
            self._native = native
        self._check_classes()
        log.info(
            "%s: %d classes %s, train %d / val %d / test %d",
            self.dataset,
            self.num_classes,
            self.classes,
            len(self._train_idx),
            len(self._val_idx),
            len(self._test),
        )

    def state_dict(self) -> dict:
        """How a new tile becomes the network's input, and what its outputs mean: Lightning
        stores it in every stage's checkpoint, so ``pipeline=predict`` needs neither the
        training data nor its config (experiments/sd_mae/predict.py)."""
        if not self.classes:
            return {}
        return {
            "classes": list(self.classes),
            "img_size": self.img_size,
            "native_size": self._native,  # tiles are first resized to this (bicubic), if set
            "crop_ratio": self._crop,  # resize to img_size / crop_ratio, centre-crop img_size
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "dataset": self.dataset,
        }

    def load_state_dict(self, state: dict) -> None:
        """A resumed stage re-reads the files (same classes, same transforms); the saved
        state is kept only for inspection."""
        self.saved_state = dict(state)

    def _groups(self, paths: list[Path]) -> np.ndarray | None:
        return groups_from_names(paths, self.group_regex) if self.group_regex else None

    # ----------------------------------------------------------- transforms
    def set_stage(self, stage: str) -> None:
        """Switch augmentation for the next stage of a chained study."""
        check_choice("datamodule.stage", stage, STAGES)
        self.stage = stage

    def _loader(self, base: Dataset, idx, transform, shuffle: bool, bs: int) -> DataLoader:
        ds = _Transformed(base, transform)
        if idx is not None:
            ds = Subset(ds, idx.tolist())
        if shuffle:  # order and augmentation from (seed, epoch), resumable (docs/conventions.md)
            return seeded_train_loader(
                ds,
                bs,
                self.seed,
                num_workers=self.num_workers,
                drop_last=len(ds) > bs,
                persistent_workers=self.num_workers > 0,
            )
        return DataLoader(
            ds,
            batch_size=bs,
            shuffle=shuffle,
            num_workers=self.num_workers,
            drop_last=shuffle and len(ds) > bs,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        tf = train_transform(
            self.stage,
            self.img_size,
            min_scale=self.min_crop_scale.get(self.stage),
            randaugment_magnitude=self.randaugment_magnitude,
            finetune_augment=self.finetune_augment,
        )
        return self._loader(self._train_base, self._train_idx, tf, True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        tf = eval_transform(self.img_size, self._crop)
        return self._loader(self._val_base, self._val_idx, tf, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        tf = eval_transform(self.img_size, self._crop)
        return self._loader(self._test, None, tf, False, self.eval_batch_size)

    def sample_images(self, n: int) -> torch.Tensor:
        """``n`` test images spread evenly over the (class-sorted) test split, for figures."""
        ds = _Transformed(self._test, eval_transform(self.img_size, self._crop))
        idx = np.linspace(0, len(ds) - 1, num=min(n, len(ds))).round().astype(int)
        return torch.stack([ds[int(i)][0] for i in idx])

    def train_eval_dataloader(self) -> DataLoader:
        """Training images with the evaluation transform (reconstruction figures, features)."""
        tf = eval_transform(self.img_size, self._crop)
        return self._loader(self._train_base, self._train_idx, tf, False, self.eval_batch_size)


class _Transformed(Dataset):
    """Applies a stage's transform on top of a dataset that returns PIL images."""

    def __init__(self, base: Dataset, transform) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        img, y = self.base[i]
        return self.transform(img), y
