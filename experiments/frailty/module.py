"""Frailty classification from gait windows (Amjad et al.): DeepConvLSTM, Keras-style L2,
Adam, optional class weights, and the paper's Table 3 metrics on the test split."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix
from torch import nn
from torchmetrics import MaxMetric
from torchmetrics.classification import MulticlassAccuracy

from core.checks import ConfigError, check_positive, check_range
from experiments.frailty.metrics import table3_from_labels

CLASS_NAMES = ("robust", "pre_frail", "frail")


def balanced_class_weights(counts: Sequence[int]) -> torch.Tensor:
    """scikit-learn's ``class_weight='balanced'``: n / (K * n_k); absent classes get 0."""
    counts = np.asarray(counts, dtype=float)
    weights = np.divide(
        counts.sum(), len(counts) * counts, out=np.zeros_like(counts), where=counts > 0
    )
    return torch.tensor(weights, dtype=torch.float32)


class FrailtyClassifier(L.LightningModule):
    """Cross-entropy on window labels + ``l2 * sum(w**2)`` over the conv and dense kernels.

    Args:
        net: a model with ``l2_penalty()`` (``models.frailty.DeepConvLSTM``).
        optimizer: partial optimizer (Adam; the paper's best lr was 0.0268).
        l2: Keras-style L2 rate on conv and dense kernels (paper: 4e-4). Unlike Adam's
            ``weight_decay`` this is part of the loss, as in mcfly, and leaves LSTMs and
            biases alone.
        class_weights: ``null`` (the paper), ``balanced`` (from the training windows, the
            remedy the paper suggests for the frail minority) or one weight per class.
        class_names: names used in metric keys (``test/f1_<name>``).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        l2: float = 4e-4,
        class_weights: str | Sequence[float] | None = None,
        class_names: Sequence[str] = CLASS_NAMES,
    ) -> None:
        super().__init__()
        check_range("module.l2", l2, 0)
        class_names = tuple(class_names)
        if isinstance(class_weights, str):
            if class_weights != "balanced":
                raise ConfigError(
                    "module.class_weights",
                    f"got {class_weights!r}; use null, 'balanced' or one weight per class",
                )
        elif class_weights is not None:
            class_weights = [float(w) for w in class_weights]
            if len(class_weights) != len(class_names):
                raise ConfigError(
                    "module.class_weights",
                    f"got {len(class_weights)} weights for {len(class_names)} classes "
                    f"{list(class_names)}",
                )
            for i, w in enumerate(class_weights):
                check_positive(f"module.class_weights[{i}]", w)
        if not hasattr(net, "l2_penalty"):
            raise ConfigError("module.net", f"{type(net).__name__} has no l2_penalty()")
        self.save_hyperparameters(ignore=["net", "optimizer"])
        self.net = net
        self.optimizer_factory = optimizer
        self.l2 = float(l2)
        self.class_weights_cfg = class_weights
        self.class_names = class_names
        k = len(class_names)
        self.register_buffer("class_weight", torch.ones(k))
        self.val_acc = MulticlassAccuracy(k, average="micro")
        self.val_bacc = MulticlassAccuracy(k, average="macro")
        self.val_acc_best = MaxMetric()
        self.train_majority: int | None = None
        self.test_true: list[np.ndarray] = []
        self.test_pred: list[np.ndarray] = []
        self.test_confusion: np.ndarray | None = None
        self.test_subject_votes: dict[int, np.ndarray] = {}
        self.test_subject_labels: dict[int, int] = {}

    def setup(self, stage: str) -> None:
        """The net takes its channel count from the datamodule (3, 6, 9 ... IMU columns);
        balanced weights need the training windows' class counts."""
        dm = getattr(self._trainer, "datamodule", None)  # None when used without a Trainer
        channels = getattr(dm, "in_channels", None)
        if channels is not None and hasattr(self.net, "build"):
            try:
                self.net.build(int(channels))
            except ValueError as err:
                raise ConfigError("model.in_channels", str(err)) from err
        if hasattr(dm, "class_counts"):  # the trivial reference: always this class
            self.train_majority = int(np.argmax(dm.class_counts("train")))
        if self.class_weights_cfg == "balanced":
            if dm is None:
                raise RuntimeError("class_weights='balanced' needs the datamodule's class counts")
            self.class_weight = balanced_class_weights(dm.class_counts("train")).to(self.device)
        elif self.class_weights_cfg is not None:
            self.class_weight = torch.tensor(self.class_weights_cfg, device=self.device)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """A checkpoint knows its channel count: build an unbuilt net from it first, so
        ``runner.load.load_run`` / ``load_from_checkpoint`` work without a datamodule."""
        weight = state_dict.get("net.input_norm.weight")
        if weight is not None and not getattr(self.net, "built", True):
            self.net.build(int(weight.shape[0]))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch[0], batch[1]
        logits = self(x)
        ce = F.cross_entropy(logits, y, weight=self.class_weight.to(logits.dtype))
        return ce, logits, y

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        ce, _, _ = self._step(batch)
        loss = ce + self.l2 * self.net.l2_penalty() if self.l2 else ce
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/ce", ce, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        ce, logits, y = self._step(batch)
        self.val_acc(logits, y)
        self.val_bacc(logits, y)
        # Keras' val_loss (what mcfly's EarlyStopping monitors) includes the L2 terms.
        loss = ce + self.l2 * self.net.l2_penalty() if self.l2 else ce
        self.log("val/loss", loss, on_epoch=True, prog_bar=True)
        self.log("val/ce", ce, on_epoch=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)
        self.log("val/balanced_acc", self.val_bacc, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())

    def on_test_epoch_start(self) -> None:
        self.test_subject_votes, self.test_subject_labels = {}, {}
        self.test_true, self.test_pred = [], []

    def test_step(self, batch, batch_idx: int) -> None:
        ce, logits, y = self._step(batch)
        self.log("test/loss", ce, on_epoch=True)
        pred = logits.argmax(dim=1)
        self.test_true.append(y.cpu().numpy())
        self.test_pred.append(pred.cpu().numpy())
        if len(batch) > 2:  # participant-level majority vote over the test windows
            k = len(self.class_names)
            for p, t, c in zip(batch[2].tolist(), y.tolist(), pred.tolist()):
                votes = self.test_subject_votes.setdefault(p, np.zeros(k, dtype=np.int64))
                votes[c] += 1
                self.test_subject_labels[p] = t

    def on_test_epoch_end(self) -> None:
        true = np.concatenate(self.test_true) if self.test_true else np.zeros(0, np.int64)
        pred = np.concatenate(self.test_pred) if self.test_pred else np.zeros(0, np.int64)
        self.test_confusion = confusion_matrix(
            true, pred, labels=list(range(len(self.class_names)))
        )
        for key, value in table3_from_labels(true, pred, self.class_names).items():
            self.log(f"test/{key}", value)
        if self.train_majority is not None and len(true):
            # accuracy of always answering the training set's most frequent class
            self.log("test/majority_acc", float(np.mean(true == self.train_majority)))
        if self.test_subject_votes:
            pids = sorted(self.test_subject_votes)
            hits = [
                int(self.test_subject_votes[p].argmax() == self.test_subject_labels[p])
                for p in pids
            ]
            self.log("test/subject_acc", float(np.mean(hits)))
            self.log("test/subjects", float(len(pids)))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(params=self.parameters())
