"""LightningModule training the reference CNN on (darkened, original) crop pairs.

LM (a 1-channel net) trains on the Y channel of both crops; CM (3 channels) on RGB. Loss: MSE
between the unclipped CNN output and the bright crop (the pixel-space mapping GPE trains).
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from core.checks import ConfigError

_Y = torch.tensor([0.299, 0.587, 0.114])


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB -> (B, 1, H, W) BT.601 luma (the LM plane)."""
    return (x * _Y.to(x)[None, :, None, None]).sum(1, keepdim=True)


def batch_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean PSNR (dB) over a batch of [0, 1] images."""
    mse = ((pred - target) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    return (10 * torch.log10(1.0 / mse)).mean()


class ReferenceCNNModule(L.LightningModule):
    """Trains ``net`` (models.lowlight_gp.ReferenceCNN) to map low-light crops to bright ones."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
    ) -> None:
        super().__init__()
        if getattr(net, "in_channels", None) not in (1, 3):
            raise ConfigError("model.in_channels", "must be 1 (LM, Y channel) or 3 (CM, RGB)")
        self.save_hyperparameters(logger=False, ignore=["net"])
        self.net = net

    def _planes(self, x: torch.Tensor) -> torch.Tensor:
        return rgb_to_y(x) if self.net.in_channels == 1 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        dark, bright = (self._planes(t) for t in batch)
        raw = self.net.raw(dark)
        return F.mse_loss(raw, bright), batch_psnr(raw.clamp(0, 1), bright)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, psnr = self._step(batch)
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/psnr", psnr, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, psnr = self._step(batch)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True)
        self.log("val/psnr", psnr, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):
        opt = self.hparams.optimizer(params=self.parameters())
        if self.hparams.scheduler is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": self.hparams.scheduler(optimizer=opt)}
