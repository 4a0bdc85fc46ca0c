"""Masked-image pre-training: plain MAE, SD-MAE (self-distillation) or MAE + self-contrastive."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from core.checks import ConfigError, check_choice, check_positive, check_range
from experiments.sd_mae.objective import METHODS, PretrainObjective
from experiments.sd_mae.optim import build_scheduler, decay_groups, scaled_lr, steps_for
from losses.sd_mae.self_distill import CENTER_ON, TOKEN_REDUCE
from models.sd_mae.mae import MaskedAutoencoder

# "supervised" is the paper's baseline row: nothing is pre-trained, the chained pipeline goes
# straight to fine-tuning a randomly initialised ViT.
PRETRAIN_METHODS = (*METHODS, "supervised")


def _check_masks_something(ratio: float, num_patches: int) -> None:
    """``int(ratio * N)`` patches are masked: 0 would silently train a plain autoencoder."""
    if int(ratio * num_patches) < 1:
        raise ConfigError(
            "model.mask_ratio",
            f"{ratio} masks int({ratio} x {num_patches}) = 0 of the {num_patches} patches (a plain "
            f"autoencoder, nothing to predict); allowed: {1 / num_patches:.4g} <= mask_ratio < 1 "
            f"for this grid",
        )


class MAEPretrain(L.LightningModule):
    """Wraps a :class:`MaskedAutoencoder` and a :class:`PretrainObjective`.

    Optimiser: AdamW(betas 0.9/0.95, wd 0.05), lr = base_lr * batch / 256, warm-up then cosine.
    """

    def __init__(
        self,
        net: MaskedAutoencoder,
        method: str = "sdmae",
        objective: dict[str, Any] | None = None,
        base_lr: float = 1.5e-4,
        batch_size: int = 256,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_epochs: float = 5,
    ) -> None:
        super().__init__()
        check_choice("module.method", method, PRETRAIN_METHODS)
        check_range("model.mask_ratio", net.mask_ratio, 0, 1, low_open=True, high_open=True)
        _check_masks_something(net.mask_ratio, net.encoder.num_patches)
        check_positive("module.base_lr", base_lr)
        check_positive("module.batch_size", batch_size, integer=True)
        obj = dict(objective or {})
        if "alpha" in obj:
            check_range("module.objective.alpha", obj["alpha"], 0, 1)
        if "center_on" in obj:
            check_choice("module.objective.center_on", obj["center_on"], CENTER_ON)
        if "token_reduce" in obj:
            check_choice("module.objective.token_reduce", obj["token_reduce"], TOKEN_REDUCE)
        if "sinkhorn_iters" in obj:
            check_positive("module.objective.sinkhorn_iters", obj["sinkhorn_iters"], integer=True)
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.method = method
        self.objective = PretrainObjective(
            "mae" if method == "supervised" else method,
            enc_dim=net.embed_dim,
            dec_dim=net.decoder_dim,
            **obj,
        )

    def _step(self, batch, split: str) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        out = self.objective(self.net(x))
        on_step = split == "train"
        for name, v in out.items():
            key = f"{split}/{name}"
            self.log(
                key, v, on_epoch=True, on_step=on_step and name == "loss", prog_bar=name == "loss"
            )
        return out["loss"]

    def on_train_epoch_start(self) -> None:
        self.objective.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # lets probe/fine-tune load the encoder straight from this .ckpt, with the arch check
        checkpoint["encoder_arch"] = dict(self.net.encoder.arch)

    def configure_optimizers(self):
        hp = self.hparams
        groups = decay_groups(self.named_parameters(), hp.weight_decay)
        opt = torch.optim.AdamW(
            groups, lr=scaled_lr(hp.base_lr, hp.batch_size), betas=tuple(hp.betas)
        )
        total, warm = steps_for(self.trainer, hp.warmup_epochs)
        sched = build_scheduler(opt, total, warm)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
