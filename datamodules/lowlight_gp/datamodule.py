"""LightningDataModule: CNN training pairs + the evaluation images of the lowlight_gp study.

``data_dir`` is a folder of bright photographs (the COCO test images in the paper; any nesting,
JPEG/PNG). It is split by ``seed`` into ``n_test`` evaluation images, ``n_val`` validation images
and the rest for training the reference CNN. Training samples are random ``crop_size`` crops,
darkened at a random one of the 26 levels (25 gammas + the original), paired with the bright
crop. All images are first resized to ``eval_size`` (the paper times 256 x 256 images), so the
CNN sees content at the scale it enhances. ``lowlight_dir`` is a folder of real low-light
photographs (ExDark) enhanced for qualitative output only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from core.checks import ConfigError, check_data_dir, check_positive, check_range
from core.sampling import EpochSeededRandomSampler, seeded_train_loader
from datamodules.lowlight_gp.darken import LEVELS, darken
from datamodules.lowlight_gp.embedded import write_embedded
from datamodules.lowlight_gp.folder import read_folder, resize_rgb

log = logging.getLogger(__name__)

HOW_TO_GET = (
    "Point it at a folder of bright RGB photographs, e.g. the COCO 2017 val images "
    "(http://images.cocodataset.org/zips/val2017.zip, unzip and pass the val2017/ folder)."
)
HOW_TO_GET_LOWLIGHT = (
    "Point it at the ExDark images (https://github.com/cs-chan/Exclusively-Dark-Image-Dataset, "
    "unzip ExDark.zip; class subfolders are fine)."
)


class DarkenedCrops(Dataset):
    """Random (dark, bright) crop pairs from a list of RGB images (uint8 or float in [0, 1]),
    (3, c, c) float32 each.

    Item ``j`` is a pure function of (seed, j): validation uses j < length (fixed crops), training
    draws j = epoch * length + i through :class:`EpochIndexSampler`, so every epoch sees new crops
    and a resumed run replays exactly the same ones.
    """

    def __init__(self, images: list[np.ndarray], crop: int, length: int, seed: int) -> None:
        self.images, self.crop, self.length, self.seed = images, crop, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, int(j)))
        img = self.images[int(rng.integers(len(self.images)))]
        h, w, _ = img.shape
        top, left = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        bright = img[top : top + self.crop, left : left + self.crop]
        if bright.dtype == np.uint8:
            bright = bright.astype(np.float64) / 255.0
        if rng.random() < 0.5:
            bright = bright[:, ::-1]
        dark = darken(bright, LEVELS[int(rng.integers(len(LEVELS)))])
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()  # noqa: E731
        return to_t(dark), to_t(bright)


class EpochIndexSampler(EpochSeededRandomSampler):
    """The runner's (seed, epoch) permutation, offset by epoch * N so crops differ per epoch."""

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * len(self.data_source)
        yield from (offset + i for i in super().__iter__())


class LowLightDataModule(L.LightningDataModule):
    """Bright-image folder -> CNN training crops + evaluation images; optional low-light folder."""

    def __init__(
        self,
        data_dir: str | None = None,
        lowlight_dir: str | None = None,
        embedded_dir: str = "data/embedded/lowlight_gp",
        n_test: int = 2,
        n_val: int = 1,
        max_test_images: int | None = None,
        eval_size: int = 256,
        crop_size: int = 48,
        train_samples: int = 512,
        val_samples: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
        min_size: int = 32,
        seed: int = 42,
    ) -> None:
        super().__init__()
        if data_dir is not None:
            check_data_dir("datamodule.data_dir", data_dir, HOW_TO_GET)
        if lowlight_dir is not None:
            check_data_dir("datamodule.lowlight_dir", lowlight_dir, HOW_TO_GET_LOWLIGHT)
        check_positive("datamodule.n_test", n_test, integer=True)
        check_range("datamodule.n_val", n_val, low=0)
        check_positive("datamodule.eval_size", eval_size, integer=True)
        check_positive("datamodule.crop_size", crop_size, integer=True)
        if crop_size > eval_size:
            raise ConfigError(
                "datamodule.crop_size", f"got {crop_size}; must be <= eval_size ({eval_size})"
            )
        check_positive("datamodule.train_samples", train_samples, integer=True)
        check_positive("datamodule.val_samples", val_samples, integer=True)
        check_positive("datamodule.batch_size", batch_size, integer=True)
        check_range("datamodule.min_size", min_size, low=8)
        if max_test_images is not None:
            check_positive("datamodule.max_test_images", max_test_images, integer=True)
        self.save_hyperparameters(logger=False)
        self.train_images: list[np.ndarray] = []
        self.val_images: list[np.ndarray] = []
        self.test_images: list[tuple[str, np.ndarray]] = []
        self.lowlight_images: list[tuple[str, np.ndarray]] = []
        self.skipped: list[tuple[Path, str]] = []

    # ---- folders ----------------------------------------------------------------------
    def _folders(self) -> tuple[Path, Path | None]:
        hp = self.hparams
        if hp.data_dir is not None:
            low = Path(hp.lowlight_dir) if hp.lowlight_dir else None
            return Path(hp.data_dir), low
        root = Path(hp.embedded_dir)
        low = Path(hp.lowlight_dir) if hp.lowlight_dir else root / "lowlight"
        return root / "bright", low

    def prepare_data(self) -> None:
        if self.hparams.data_dir is None:
            write_embedded(self.hparams.embedded_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.test_images:
            return
        hp = self.hparams
        bright_dir, low_dir = self._folders()
        # Streamed: every image is resized to eval_size (uint8) as it is read.
        good, bad = read_folder(bright_dir, hp.min_size, size=hp.eval_size)
        self.skipped = list(bad)
        need = hp.n_test + hp.n_val + 1
        if len(good) < need:
            raise ConfigError(
                "datamodule.data_dir",
                f"{bright_dir} has {len(good)} usable RGB images ({len(bad)} skipped); need at "
                f"least n_test + n_val + 1 = {need}",
            )
        order = np.random.default_rng(hp.seed).permutation(len(good))
        test = [good[i] for i in order[: hp.n_test]]
        if hp.max_test_images is not None:
            test = test[: hp.max_test_images]
        val = [good[i] for i in order[hp.n_test : hp.n_test + hp.n_val]]
        train = [good[i] for i in order[hp.n_test + hp.n_val :]]
        # Test images as float; CNN crops stay uint8 (converted per crop, 8x less memory).
        self.test_images = [(im.name, resize_rgb(im.rgb, None)) for im in test]
        self.train_images = [im.rgb for im in train]
        self.val_images = [im.rgb for im in val] or self.train_images
        if low_dir is not None and low_dir.is_dir():
            low_good, low_bad = read_folder(low_dir, hp.min_size, size=hp.eval_size)
            self.skipped += low_bad
            self.lowlight_images = [(im.name, resize_rgb(im.rgb, None)) for im in low_good]
        log.info(
            "lowlight_gp data: %d train / %d val / %d test images, %d low-light, %d skipped",
            len(self.train_images), len(val), len(self.test_images),
            len(self.lowlight_images), len(self.skipped),
        )  # fmt: skip

    # ---- loaders (reference-CNN training) -----------------------------------------------
    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        ds = DarkenedCrops(self.train_images, hp.crop_size, hp.train_samples, seed=hp.seed)
        sampler = EpochIndexSampler(ds, seed=hp.seed)
        return seeded_train_loader(
            ds, hp.batch_size, hp.seed, sampler=sampler, num_workers=hp.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        ds = DarkenedCrops(
            self.val_images,
            self.hparams.crop_size,
            self.hparams.val_samples,
            seed=self.hparams.seed,
        )
        return DataLoader(ds, self.hparams.batch_size, num_workers=self.hparams.num_workers)
