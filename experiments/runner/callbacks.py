"""Lightning callbacks of the runner."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class StepSeed(Callback):
    """Reseed every RNG before each training batch from (seed, global step).

    Lightning restores weights, optimizer and loop state from a checkpoint but not the RNG
    streams, and skips ``on_train_epoch_start`` for the epoch it resumes in. Seeding per step
    gives a resumed run the same dropout masks and augmentations as an uninterrupted one; the
    data order comes from ``core.sampling.EpochSeededRandomSampler``.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step_seed = (self.seed * 1_000_003 + trainer.global_step) % (2**32)
        random.seed(step_seed)
        np.random.seed(step_seed)  # noqa: NPY002 (global RNG on purpose: code under it uses it)
        torch.manual_seed(step_seed)


class FailAtEpoch(Callback):
    """Raise at the start of a given epoch: simulates a crash (used by tests and to try resume)."""

    def __init__(self, epoch: int, message: str = "simulated interruption") -> None:
        self.epoch = int(epoch)
        self.message = message

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"{self.message} at epoch {self.epoch}")


class LastCheckpoint(Callback):
    """Write ``<dirpath>/last.ckpt`` at the end of every training epoch, atomically.

    Lightning's ``save_last`` only writes when a top-k checkpoint was written in the same step,
    and a crash during the write would leave a broken file; this callback always leaves either
    the previous or the new complete checkpoint, which ``ckpt_path=last`` resumes from.
    """

    FILE_NAME = "last.ckpt"

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    @property
    def path(self) -> Path:
        return self.dirpath / self.FILE_NAME

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        tmp = self.dirpath / f".{self.FILE_NAME}.tmp"
        trainer.save_checkpoint(tmp)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)


class EmbedRunConfig(Callback):
    """Store the run's resolved config in every checkpoint it writes.

    ``pipeline=predict`` and ``load_run`` rebuild the model from the checkpoint alone, so a
    checkpoint copied to another machine needs neither the training config nor its data.
    """

    KEY = "run_config"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[self.KEY] = self.config
