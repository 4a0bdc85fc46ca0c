"""Frame-level state classification with a DNN or a (subspace) Deep GMM, in the paper's regimes.

Regimes (``regime``):
  joint     every layer trained together (the paper's jointly optimised DGMM);
  separate  hidden layers initialised from a DNN checkpoint and frozen; only the bottleneck and
            the GMM layer train (the "separately optimised" DGMM of Table 1);
  staged    means and weights first with the variances fixed for ``variance_warmup_steps``
            steps, then all parameters (Section 3's faster schedule).
``init_ckpt`` initialises the first hidden layers from any DNN run's checkpoint (Lightning
``.ckpt`` of this module, or a plain ``state_dict`` with ``hidden.<i>.fc.*`` keys); ``"auto"``
asks the ``experiments.deep_gmm.pipeline.pretrain_then_fit`` pipeline to train that DNN first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from core.checks import ConfigError, check_choice, check_range

log = logging.getLogger(__name__)

REGIMES = ("joint", "separate", "staged")
# Steps between reads of the non-finite-loss counter: reading a device value back synchronises
# the host with the accelerator, so the check happens every N steps and at each epoch end.
FINITE_CHECK_EVERY = 50


def _hidden_state(path: Path) -> dict[str, torch.Tensor]:
    """``hidden.<i>.fc.*`` tensors of a DNN checkpoint (Lightning or plain state_dict)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    out = {}
    for key, value in state.items():
        for prefix in ("net.hidden.", "hidden."):
            if key.startswith(prefix):
                out["hidden." + key[len(prefix) :]] = value
    return out


def load_hidden_layers(net: nn.Module, path: str | Path, layers: int | None = None) -> int:
    """Copy the first ``layers`` (default: all of ``net``'s) hidden layers from a DNN checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("module.init_ckpt", f"{path} not found; give the checkpoint of a DNN run")
    hidden = getattr(net, "hidden", None)
    n = len(hidden) if hidden is not None else 0
    layers = n if layers is None else layers
    if layers > n:
        raise ConfigError("module.init_layers", f"got {layers} but the model has {n} hidden layers")
    source = _hidden_state(path)
    target = net.state_dict()
    for i in range(layers):
        for name in ("weight", "bias"):
            key = f"hidden.{i}.fc.{name}"
            if key not in source:
                raise ConfigError(
                    "module.init_ckpt",
                    f"{path} has no {key}: it holds {len({k.split('.')[1] for k in source})} hidden layers, {layers} needed",
                )
            if source[key].shape != target[key].shape:
                raise ConfigError(
                    "module.init_ckpt",
                    f"{path}: {key} is {tuple(source[key].shape)} but the model needs {tuple(target[key].shape)}; "
                    "the DNN must have the same input size and width",
                )
            target[key] = source[key]
    net.load_state_dict(target)
    log.info("initialised %d hidden layers from %s", layers, path)
    return layers


class FrameStateClassifier(L.LightningModule):
    """CE on p(s|x) (softmax output or the GMM posterior of Eq. 5) + the online prior's CE."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        num_states: int,
        regime: str = "joint",
        init_ckpt: str | None = None,
        init_layers: int | None = None,
        variance_warmup_steps: int = 0,
        prior_lr: float = 0.05,
        scheduler: Callable | None = None,
    ) -> None:
        super().__init__()
        check_choice("module.regime", regime, REGIMES)
        check_range("module.variance_warmup_steps", variance_warmup_steps, 0)
        check_range("module.prior_lr", prior_lr, 0, low_open=True)
        if getattr(net, "num_states", num_states) != num_states:
            raise ConfigError(
                "module.num_states", f"got {num_states} but the model has {net.num_states} outputs"
            )
        if regime == "separate" and not init_ckpt:
            raise ConfigError(
                "module.init_ckpt",
                "the separate regime freezes hidden layers taken from a DNN: set module.init_ckpt=PATH "
                "(a DNN run's checkpoint) or module.init_ckpt=auto (the deep_gmm presets then train the DNN first)",
            )
        if regime == "staged":
            if not hasattr(net, "variance_parameters"):
                raise ConfigError(
                    "module.regime", "staged training needs a GMM model (variances to hold fixed)"
                )
            if variance_warmup_steps < 1:
                raise ConfigError(
                    "module.variance_warmup_steps",
                    "staged training needs a positive number of steps",
                )
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.regime, self.init_ckpt, self.init_layers = regime, init_ckpt, init_layers
        self.variance_warmup_steps = variance_warmup_steps
        self.prior_lr = prior_lr
        if init_ckpt and init_ckpt != "auto":
            self.load_hidden(init_ckpt)
        # nan_strategy="disable": the default "warn" reads every value back (a host sync per step)
        # and drops NaNs; here a NaN stays visible and the training step's own check stops the run.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_acc = MulticlassAccuracy(num_states, average="micro")
        self.test_acc = MulticlassAccuracy(num_states, average="micro")
        self.val_loss = MeanMetric(nan_strategy="disable")
        self.test_loss = MeanMetric(nan_strategy="disable")
        self._nonfinite: torch.Tensor | None = None  # device-side count of non-finite CE steps
        self.val_acc_best = MaxMetric()

    # -- set-up ------------------------------------------------------------------------------
    def load_hidden(self, path: str | Path) -> None:
        load_hidden_layers(self.net, path, self.init_layers)
        self.init_ckpt = str(path)
        self._apply_freeze()

    def _apply_freeze(self) -> None:
        if self.regime == "separate":
            for p in self.net.hidden.parameters():
                p.requires_grad_(False)

    def setup(self, stage: str) -> None:
        if self.init_ckpt == "auto":
            raise ConfigError(
                "module.init_ckpt", "`auto` needs pipeline=deep_gmm_pretrain (trains the DNN first)"
            )
        dm = getattr(self.trainer, "datamodule", None)
        first = next((m for m in self.net.modules() if isinstance(m, nn.Linear)), None)
        if (
            dm is not None
            and hasattr(dm, "input_dim")
            and first is not None
            and first.in_features != dm.input_dim
        ):
            raise ConfigError(
                "model.in_features",
                f"the model takes {first.in_features} inputs but the datamodule gives {dm.input_dim} "
                "((left + 1 + right context) x n_mels)",
            )
        if (
            dm is not None
            and getattr(dm, "num_states", self.hparams.num_states) != self.hparams.num_states
        ):
            raise ConfigError(
                "module.num_states",
                f"got {self.hparams.num_states}, datamodule has {dm.num_states}",
            )

    def on_train_epoch_start(self) -> None:
        if self.regime == "separate":
            self.net.hidden.eval()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        if self.regime == "staged":
            train_var = self.global_step >= self.variance_warmup_steps
            for p in self.net.variance_parameters():
                p.requires_grad_(train_var)

    # -- steps -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _ce(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self(x)
        return F.cross_entropy(logits, y), logits

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        ce, _ = self._ce(batch)
        loss = ce
        if hasattr(self.net, "prior_loss"):
            prior = self.net.prior_loss(batch[1])
            loss = loss + prior  # the prior has its own parameters only: no effect on the net
            self.log("train/prior_ce", prior, on_step=False, on_epoch=True)
        self._count_nonfinite(ce)
        self.train_loss(ce)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _count_nonfinite(self, ce: torch.Tensor) -> None:
        """Count non-finite losses on the device; read the count back only every N steps."""
        bad = (~torch.isfinite(ce.detach())).to(torch.int32)
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite + bad
        if (self.global_step + 1) % FINITE_CHECK_EVERY == 0:
            self.check_finite()

    def check_finite(self) -> None:
        """Raise if any step since the last check had a non-finite CE (one host sync)."""
        if self._nonfinite is None:
            return
        bad, self._nonfinite = int(self._nonfinite), None
        if bad:
            raise FloatingPointError(
                f"non-finite CE in {bad} training step(s) up to step {self.global_step}; "
                "raise model.var_floor or lower the lr"
            )

    def on_train_epoch_end(self) -> None:
        self.check_finite()

    def validation_step(self, batch, batch_idx: int) -> None:
        ce, logits = self._ce(batch)
        self.val_loss(ce)
        self.val_acc(logits, batch[1])
        self.log("val/loss", self.val_loss, on_epoch=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute())

    def on_test_epoch_start(self) -> None:
        # Trivial reference: always answer the training split's most frequent state.
        dm = getattr(self.trainer, "datamodule", None)
        self._majority = getattr(dm, "train_majority", None)
        self._majority_hits = torch.zeros((), dtype=torch.long, device=self.device)
        self._test_frames = 0

    def test_step(self, batch, batch_idx: int) -> None:
        ce, logits = self._ce(batch)
        self.test_loss(ce)
        self.test_acc(logits, batch[1])
        if getattr(self, "_majority", None) is not None:
            self._majority_hits += (batch[1] == self._majority).sum()
            self._test_frames += batch[1].numel()
        self.log("test/loss", self.test_loss, on_epoch=True)
        self.log("test/acc", self.test_acc, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        # The paper's tables report model size and training steps beside accuracy and CE.
        params = sum(p.numel() for p in self.net.parameters())
        trainable = sum(
            p.numel()
            for n, p in self.net.named_parameters()
            if not (self.regime == "separate" and n.startswith("hidden."))
        )
        self.log("test/params_m", params / 1e6)
        self.log("test/trainable_params_m", trainable / 1e6)
        self.log("test/train_steps", float(self.global_step))
        if getattr(self, "_test_frames", 0):
            self.log("test/majority_acc", self._majority_hits.item() / self._test_frames)

    def configure_optimizers(self):
        params, prior = [], []
        for n, p in self.net.named_parameters():
            if self.regime == "separate" and n.startswith("hidden."):
                continue
            (prior if n.startswith("prior.") else params).append(p)
        groups = [{"params": params}]
        if prior:  # the label-frequency estimate converges in ~100 steps at its own rate
            groups.append({"params": prior, "lr": self.prior_lr})
        opt = self.optimizer_factory(params=groups)
        if self.scheduler_factory is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer=opt),
                "interval": "epoch",
            },
        }
