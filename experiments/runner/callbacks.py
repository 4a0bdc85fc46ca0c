"""Lightning callbacks of the runner."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Callback


class EpochSeed(Callback):
    """Reseed every RNG at the start of each training epoch from (seed, epoch).

    Lightning restores weights, optimizer and loop state from a checkpoint but not the RNG
    streams, so a resumed run would draw different dropout masks and shuffles than an
    uninterrupted one. Seeding per epoch makes ``ckpt_path=last`` reach the same final metrics.
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        L.seed_everything(self.seed * 1000 + trainer.current_epoch, workers=True, verbose=False)


class FailAtEpoch(Callback):
    """Raise at the start of a given epoch: simulates a crash (used by tests and to try resume)."""

    def __init__(self, epoch: int, message: str = "simulated interruption") -> None:
        self.epoch = int(epoch)
        self.message = message

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError(f"{self.message} at epoch {self.epoch}")
