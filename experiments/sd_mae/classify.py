"""Shared evaluation for the probe and fine-tune modules: loss, acc, kappa, F1 (torchmetrics)."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics as tm


class ClassifierBase(L.LightningModule):
    """Subclasses implement :meth:`classify` (images -> logits) and the optimiser; this logs
    the validation / test metrics both the probe and the fine-tune report."""

    def __init__(self, num_classes: int, class_names: list[str] | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(num_classes)]
        )
        kw = {"task": "multiclass", "num_classes": num_classes}
        self.val_acc = tm.Accuracy(**kw)
        self.val_acc_best = tm.MaxMetric()
        self.test_acc = tm.Accuracy(**kw)
        self.test_kappa = tm.CohenKappa(**kw)
        self.test_f1 = tm.F1Score(**kw, average="macro")
        self.test_f1_per = tm.F1Score(**kw, average=None)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes); abstract: LinearProbe and FineTune each implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement classify()")

    def _eval_step(self, batch, split: str) -> None:
        x, y = batch
        logits = self.classify(x)
        loss = F.cross_entropy(logits, y)
        pred = logits.argmax(-1)
        self.log(f"{split}/loss", loss, on_epoch=True, prog_bar=split == "val")
        if split == "val":
            self.val_acc.update(pred, y)
            self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        else:
            for m in (self.test_acc, self.test_kappa, self.test_f1, self.test_f1_per):
                m.update(pred, y)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best.update(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.log("test/acc", self.test_acc.compute())
        self.log("test/kappa", self.test_kappa.compute())
        self.log("test/f1_macro", self.test_f1.compute())
        for name, v in zip(self.class_names, self.test_f1_per.compute()):
            self.log(f"test/f1_{name}", v)
        for m in (self.test_acc, self.test_kappa, self.test_f1, self.test_f1_per):
            m.reset()
