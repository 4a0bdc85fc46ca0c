"""Sleep staging with SeqSleepNet and the temporal-smoothness loss (Phan et al., 2022).

Validation and test both aggregate log-probabilities over every window covering an epoch;
the test step saves each epoch's prediction to ``<output_dir>/predictions_test.npz`` so the
sweep report can pool all folds into one confusion matrix (the paper's protocol), and the
CE on the test subject is tracked at every validation (the paper's Fig. 2) in
``<output_dir>/test_loss_curve.csv``.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from experiments.sleep_tsr.metrics import CLASSES, SequenceAggregator, confusion, staging_metrics
from losses.sleep_tsr import TemporalSmoothnessLoss

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions_test.npz"
CURVE_FILE = "test_loss_curve.csv"


class SleepStagingModule(L.LightningModule):
    """Trains ``net`` (B, L, T, F) -> (B, L, C) with Eq. 2; logs the paper's metrics."""

    def __init__(
        self,
        net: nn.Module,
        loss: TemporalSmoothnessLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_classes: int = 5,
        make_figures: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "loss", "optimizer"])
        self.net, self.loss_fn, self.optimizer_factory = net, loss, optimizer
        self.num_classes, self.make_figures = num_classes, make_figures
        self.val_acc_best = MaxMetric()
        self.eval_ce = {"val": MeanMetric(), "test": MeanMetric()}
        self.aggregators: dict[str, SequenceAggregator] = {}
        self.curve: list[dict[str, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(params=self.parameters())

    # ------------------------------------------------------------------ train
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, _, _ = batch
        logits = self(x)
        parts = self.loss_fn(logits, y, self.net.l2_parameters())
        self.log("train/loss", parts["loss"], on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/ce", parts["ce"], on_step=False, on_epoch=True)
        self.log("train/smooth", parts["smooth"], on_step=False, on_epoch=True)
        return parts["loss"]

    def on_fit_start(self) -> None:
        """On resume, keep the test-loss curve recorded before the interruption."""
        out = self._output_dir()
        if self.curve or out is None or self.global_step == 0 or not (out / CURVE_FILE).is_file():
            return
        with open(out / CURVE_FILE) as fh:
            rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(fh)]
        self.curve = [r for r in rows if r.get("step", 0) <= self.global_step]

    # ------------------------------------------------------------------ evaluation
    def _datamodule(self):  # noqa: ANN202
        return self.trainer.datamodule

    def _start(self, splits: list[str]) -> None:
        dm = self._datamodule()
        for split in splits:
            self.aggregators[split] = SequenceAggregator(
                [len(n.labels) for n in dm.eval_nights(split)], self.num_classes
            )
            self.eval_ce[split] = MeanMetric().to(self.device)

    def _eval_step(self, batch, split: str) -> None:
        x, y, rec, start = batch
        logits = self(x)
        ce = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
        self.eval_ce[split].update(ce.mean(), weight=ce.numel())
        self.aggregators[split].add(torch.log_softmax(logits, -1), rec, start)

    def _finish(self, split: str) -> tuple[dict[str, float], np.ndarray, np.ndarray, list]:
        nights = self._datamodule().eval_nights(split)
        preds = self.aggregators[split].predictions()
        y_true = np.concatenate([n.labels for n in nights])
        y_pred = np.concatenate(preds)
        covered = y_pred >= 0
        metrics = staging_metrics(y_true[covered], y_pred[covered], self.num_classes)
        metrics["loss"] = self.eval_ce[split].compute().item()
        return metrics, y_true, y_pred, nights

    def on_validation_epoch_start(self) -> None:
        dm = self._datamodule()
        self._start(["val", "test"] if getattr(dm, "track_test_loss", False) else ["val"])

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, "val" if dataloader_idx == 0 else "test")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        val, *_ = self._finish("val")
        self.val_acc_best.update(torch.tensor(val["acc"]))
        self.log("val/loss", val["loss"])
        self.log("val/acc", val["acc"], prog_bar=True)
        self.log("val/kappa", val["kappa"])
        self.log("val/f1_macro", val["f1_macro"])
        self.log("val/acc_best", self.val_acc_best.compute())
        row = {
            "step": self.global_step,
            "epoch": self.current_epoch,
            "val_ce": val["loss"],
            "val_acc": val["acc"],
        }
        if "test" in self.aggregators:
            test, *_ = self._finish("test")
            self.log("curve/test_ce", test["loss"])
            row |= {"test_ce": test["loss"], "test_acc": test["acc"]}
        self.curve.append(row)
        self._write_curve()

    def on_test_epoch_start(self) -> None:
        self._start(["test"])

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        metrics, y_true, y_pred, nights = self._finish("test")
        for key, value in metrics.items():
            self.log(f"test/{key}", value)
        out = self._output_dir()
        if out is None:
            return
        lengths = [len(n.labels) for n in nights]
        np.savez(
            out / PREDICTIONS_FILE,
            y_true=y_true,
            y_pred=y_pred,
            recording=np.repeat([n.name for n in nights], lengths),
            subject=np.repeat([n.subject for n in nights], lengths),
            confusion=confusion(y_true[y_pred >= 0], y_pred[y_pred >= 0], self.num_classes),
        )
        if self.make_figures and nights:
            self._figures(out, nights, y_true, y_pred, lengths)

    # ------------------------------------------------------------------ artefacts
    def _output_dir(self) -> Path | None:
        if self.trainer is None or not self.trainer.is_global_zero:
            return None
        root = Path(self.trainer.default_root_dir)
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _write_curve(self) -> None:
        out = self._output_dir()
        if out is None or not self.curve:
            return
        keys = sorted({k for row in self.curve for k in row})
        with open(out / CURVE_FILE, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.curve)

    def _figures(self, out: Path, nights, y_true, y_pred, lengths) -> None:  # noqa: ANN001
        from experiments.sleep_tsr.figures import plot_hypnogram, plot_loss_curve

        fig_dir = out / "figures"
        fig_dir.mkdir(exist_ok=True)
        first = lengths[0]
        paths = {
            "figures/hypnogram": plot_hypnogram(
                y_true[:first],
                y_pred[:first],
                fig_dir / f"hypnogram_{nights[0].name}.png",
                title=nights[0].name,
            )
        }
        if (out / CURVE_FILE).is_file():
            paths["figures/test_loss_curve"] = plot_loss_curve(
                out / CURVE_FILE, fig_dir / "test_loss_curve.png"
            )
        for logger in self.loggers:
            if type(logger).__name__ == "WandbLogger":
                for key, path in paths.items():
                    try:
                        logger.log_image(key=key, images=[str(path)])
                    except Exception as err:  # a figure must never break a finished run
                        log.warning("could not log %s to wandb: %s", key, err)


__all__ = ["CLASSES", "SleepStagingModule"]
