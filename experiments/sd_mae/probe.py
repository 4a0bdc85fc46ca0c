"""Linear probing: frozen encoder, mean-pooled tokens, BatchNorm1d(affine=False) + linear."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.optim import Lars
from torch import nn

from core.checks import check_choice, check_positive, check_range
from experiments.sd_mae.checkpoint import load_encoder
from experiments.sd_mae.classify import ClassifierBase
from experiments.sd_mae.optim import build_scheduler, scaled_lr, steps_for
from models.sd_mae.encoder import ViTEncoder


class LinearProbe(ClassifierBase):
    """MAE's linear-probe protocol: ``optimizer: lars`` is MAE's (``timm.optim.Lars``, momentum
    0.9, no weight decay, on the BatchNorm + head); ``sgd`` is plain SGD with momentum (the
    CPU preset's, tuned for its short schedule).

    ``encoder_ckpt: null`` probes a randomly initialised encoder: the floor that pre-training
    has to beat.
    """

    def __init__(
        self,
        encoder: ViTEncoder,
        num_classes: int,
        encoder_ckpt: str | None = None,
        class_names: list[str] | None = None,
        base_lr: float = 0.1,
        batch_size: int = 256,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        warmup_epochs: float = 10,
        optimizer: str = "sgd",
    ) -> None:
        super().__init__(num_classes, class_names)
        check_choice("module.optimizer", optimizer, ("lars", "sgd"))
        check_positive("module.num_classes", num_classes, integer=True)
        check_positive("module.base_lr", base_lr)
        check_range("module.momentum", momentum, 0, 1, high_open=True)
        self.save_hyperparameters(ignore=["encoder"])
        if encoder_ckpt:
            load_encoder(encoder_ckpt, encoder)
        self.encoder = encoder.requires_grad_(False)
        self.bn = nn.BatchNorm1d(encoder.embed_dim, affine=False, eps=1e-6)
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: no dropout/drop-path noise in the features
        return self

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self.encoder.eval()  # Lightning may restore sub-module modes between loops

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).mean(dim=1)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.features(x)))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.classify(x), y)
        self.log("train/loss", loss, on_epoch=True, on_step=False, prog_bar=True)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        params = list(self.bn.parameters()) + list(self.head.parameters())
        make = Lars if hp.optimizer == "lars" else torch.optim.SGD
        opt = make(
            params,
            lr=scaled_lr(hp.base_lr, hp.batch_size),
            momentum=hp.momentum,
            weight_decay=hp.weight_decay,
        )
        total, warm = steps_for(self.trainer, hp.warmup_epochs)
        sched = build_scheduler(opt, total, warm)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
