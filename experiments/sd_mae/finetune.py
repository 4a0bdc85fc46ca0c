"""End-to-end fine-tuning of a ViT-S classifier (or the supervised baseline from scratch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.checks import check_positive, check_range
from experiments.sd_mae.checkpoint import load_encoder
from experiments.sd_mae.classify import ClassifierBase
from experiments.sd_mae.optim import build_scheduler, decay_groups, scaled_lr, steps_for
from models.sd_mae.classifier import ViTClassifier


class FineTune(ClassifierBase):
    """AdamW, layer-wise lr decay, drop-path (in the model), label smoothing; MAE's recipe.

    ``encoder_ckpt: null`` trains the same ViT from random init: the paper's supervised row.
    """

    def __init__(
        self,
        net: ViTClassifier,
        encoder_ckpt: str | None = None,
        class_names: list[str] | None = None,
        base_lr: float = 1e-3,
        batch_size: int = 256,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        layer_decay: float = 0.75,
        label_smoothing: float = 0.1,
        warmup_epochs: float = 5,
    ) -> None:
        num_classes = net.head.out_features
        super().__init__(num_classes, class_names)
        check_positive("module.base_lr", base_lr)
        check_range("module.layer_decay", layer_decay, 0, 1, low_open=True)
        check_range("module.label_smoothing", label_smoothing, 0, 1, high_open=True)
        self.save_hyperparameters(ignore=["net"])
        if encoder_ckpt:
            load_encoder(encoder_ckpt, net.encoder)
        self.net = net

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.net(x), y, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, on_epoch=True, on_step=False, prog_bar=True)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        groups = decay_groups(
            self.net.named_parameters(),
            hp.weight_decay,
            self.net.layer_id,
            self.net.encoder.depth + 1,
            hp.layer_decay,
        )
        opt = torch.optim.AdamW(
            groups, lr=scaled_lr(hp.base_lr, hp.batch_size), betas=tuple(hp.betas)
        )
        total, warm = steps_for(self.trainer, hp.warmup_epochs)
        sched = build_scheduler(opt, total, warm)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
