"""End-to-end fine-tuning of a ViT-S classifier (or the supervised baseline from scratch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2

from core.checks import check_positive, check_range
from experiments.sd_mae.checkpoint import load_encoder
from experiments.sd_mae.classify import ClassifierBase
from experiments.sd_mae.optim import build_scheduler, scaled_lr, steps_for
from models.sd_mae.classifier import ViTClassifier


class FineTune(ClassifierBase):
    """MAE's fine-tune recipe from timm's parts: AdamW with layer-wise lr decay from
    ``timm.optim.create_optimizer_v2(..., layer_decay=...)`` (layer ids from the classifier's
    ``group_matcher``), ``timm.data.Mixup`` (mixup 0.8, cutmix 1.0, label smoothing inside) with
    ``SoftTargetCrossEntropy``, drop-path in the model. ``mixup: 0`` and ``cutmix: 0`` switch
    mixing off (plain cross-entropy with label smoothing): the CPU preset's lighter recipe.

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
        mixup: float = 0.8,
        cutmix: float = 1.0,
    ) -> None:
        num_classes = net.head.out_features
        super().__init__(num_classes, class_names)
        check_positive("module.base_lr", base_lr)
        check_range("module.layer_decay", layer_decay, 0, 1, low_open=True)
        check_range("module.label_smoothing", label_smoothing, 0, 1, high_open=True)
        check_range("module.mixup", mixup, 0)
        check_range("module.cutmix", cutmix, 0)
        self.save_hyperparameters(ignore=["net"])
        if encoder_ckpt:
            load_encoder(encoder_ckpt, net.encoder)
        self.net = net
        self.mixup = None
        if mixup > 0 or cutmix > 0:
            self.mixup = Mixup(
                mixup_alpha=mixup,
                cutmix_alpha=cutmix,
                label_smoothing=label_smoothing,
                num_classes=num_classes,
            )
            self.soft_ce = SoftTargetCrossEntropy()

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.mixup is not None and len(x) % 2 == 0:  # timm's Mixup pairs images: even batch
            x, soft = self.mixup(x, y)
            loss = self.soft_ce(self.net(x), soft)
        else:
            loss = F.cross_entropy(self.net(x), y, label_smoothing=self.hparams.label_smoothing)
        self.log("train/loss", loss, on_epoch=True, on_step=False, prog_bar=True)
        return loss

    def configure_optimizers(self):
        hp = self.hparams
        opt = create_optimizer_v2(
            self.net,
            "adamw",
            lr=scaled_lr(hp.base_lr, hp.batch_size),
            weight_decay=hp.weight_decay,
            layer_decay=hp.layer_decay,
            betas=tuple(hp.betas),
        )
        total, warm = steps_for(self.trainer, hp.warmup_epochs)
        sched = build_scheduler(opt, total, warm)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
