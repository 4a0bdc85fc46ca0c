"""Exact resume: what a checkpoint must carry beyond weights, optimizer and loop counters.

Lightning restores the model, optimizers, LR schedulers and its loop progress, and (for a loader
with ``state_dict``) the data loader's state. It does not restore: where in an epoch the data
order was, the partial sums of the epoch-level metrics logged so far in that epoch, the states
of torchmetrics objects (``MaxMetric`` best trackers, metrics updated in ``training_step``), and
the metrics already logged (``callback_metrics``) when the checkpoint ends a finished fit. The
:class:`ExactResume` callback saves and restores these, for every module, so no paper repeats
it. The runner adds it (and :class:`~experiments.runner.callbacks.StepSeed`) to every Trainer
it builds, whatever ``callbacks=`` says.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torchmetrics import Metric
from torchmetrics.aggregation import MaxMetric, MinMetric

from experiments.runner.callbacks import StepSeed

log = logging.getLogger(__name__)

KEY = "exact_resume"
KILL_ENV = "RUNNER_TEST_SIGKILL_AT_STEP"


def _best_trackers(module: L.LightningModule) -> dict[str, Metric]:
    """``MaxMetric``/``MinMetric`` submodules: state kept across epochs on purpose (``*_best``)."""
    return {n: m for n, m in module.named_modules() if isinstance(m, (MaxMetric, MinMetric))}


def _metric_state(metric: Metric) -> dict[str, Any]:
    return {name: _clone(getattr(metric, name)) for name in metric._defaults}


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _set_metric_state(metric: Metric, state: dict[str, Any], device: torch.device) -> None:
    for name, value in state.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device)
        elif isinstance(value, list):
            value = [v.to(device) if isinstance(v, torch.Tensor) else v for v in value]
        setattr(metric, name, value)
    metric._update_count = max(1, metric._update_count)
    metric._computed = None


def _epoch_values(results: Any) -> dict[str, torch.Tensor]:
    """The epoch-level values of the tensors logged in training (as Lightning computes them)."""
    out: dict[str, torch.Tensor] = {}
    for result in results.values():
        if not (result.is_tensor and result.meta.on_epoch):
            continue
        if result.meta.is_mean_reduction:
            value = result.value.clone() / result.cumulated_batch_size
        else:
            value = result.value.clone()
        value = value.detach().cpu()
        out[result.meta.name] = value
        if result.meta.on_step:
            out[f"{result.meta.name}_epoch"] = value
    return out


class ExactResume(Callback):
    """Save and restore the run state Lightning leaves out, and keep sanity checks out of it.

    In the checkpoint (``checkpoint["exact_resume"]``):

    - ``best``: the states of the module's ``MaxMetric``/``MinMetric`` (e.g. ``val/acc_best``);
    - ``train_metrics``: states of torchmetrics objects logged from ``training_step`` (their
      epoch value accumulates over the epoch);
    - ``train_sums``: the partial sums of tensors logged with ``on_epoch=True`` in training;
    - ``callback_metrics``: the scalars logged so far (a fit resumed after its last epoch
      returns at once and would otherwise report nothing).

    At the start of a fresh fit (after the sanity check) the best trackers are reset, so the
    sanity check's validation never counts; on resume they are restored instead, and the
    training loader is told how many batches of the current epoch were already trained.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None
        self._pending_sums: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ save
    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        modules = dict(pl_module.named_modules())
        names = {id(m): n for n, m in modules.items()}
        train_metrics: dict[str, Any] = {}
        train_sums: dict[str, Any] = {}
        for key, result in trainer.fit_loop.epoch_loop._results.items():
            if not result.meta.on_epoch:
                continue
            if not result.is_tensor:
                name = names.get(id(result.value))
                if name is not None:
                    train_metrics[name] = _metric_state(result.value)
                continue
            state = {"value": _clone(result.value)}
            if result.meta.is_mean_reduction:
                state["cumulated_batch_size"] = _clone(result.cumulated_batch_size)
            train_sums[key] = state
        callback_metrics = {
            k: _clone(v)
            for k, v in trainer.callback_metrics.items()
            if isinstance(v, torch.Tensor) and v.numel() == 1
        }
        epoch_loop = trainer.fit_loop.epoch_loop
        if epoch_loop.batch_progress.current.ready >= trainer.num_training_batches:
            # saved after the epoch's last batch, before its epoch-end logging: a resume that
            # has nothing left to train reports the epoch values this epoch would have logged
            callback_metrics.update(_epoch_values(epoch_loop._results))
        checkpoint[KEY] = {
            "best": {n: _metric_state(m) for n, m in _best_trackers(pl_module).items()},
            "train_metrics": train_metrics,
            "train_sums": train_sums,
            "callback_metrics": callback_metrics,
        }

    # --------------------------------------------------------------- restore
    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == "fit":
            self._loaded = checkpoint.get(KEY)
            if self._loaded is None:
                log.warning(
                    "the checkpoint has no %r entry (written by an older runner): best-metric "
                    "states and partial epoch metrics start empty",
                    KEY,
                )

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_callback_metrics(trainer)  # a fit that is already done reports these

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trackers = _best_trackers(pl_module)
        if self._loaded is None:  # fresh fit: forget what the sanity check put there
            for metric in trackers.values():
                metric.reset()
            return
        state, self._loaded = self._loaded, None
        modules = dict(pl_module.named_modules())
        for name, values in {**state["best"], **state["train_metrics"]}.items():
            if isinstance(modules.get(name), Metric):
                _set_metric_state(modules[name], values, pl_module.device)
        self._restore_callback_metrics(trainer, state)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready
        if 0 < done < trainer.num_training_batches:
            self._pending_sums = dict(state["train_sums"])
            self._skip_trained_batches(trainer, done)

    def _restore_callback_metrics(
        self, trainer: L.Trainer, state: dict[str, Any] | None = None
    ) -> None:
        state = state if state is not None else self._loaded
        if state:
            trainer._logger_connector._callback_metrics.update(state["callback_metrics"])

    @staticmethod
    def _skip_trained_batches(trainer: L.Trainer, done: int) -> None:
        loader = trainer.fit_loop._combined_loader
        loaders = loader.flattened if loader is not None else []
        if loaders and all(hasattr(dl, "skip_batches") and dl.skip_batches(done) for dl in loaders):
            log.info("resuming mid-epoch: skipping the %d batches already trained", done)
            return
        log.warning(
            "resuming mid-epoch but the training loader cannot skip the %d batches already "
            "trained (build it with core.sampling.seeded_train_loader): the result will differ "
            "from an uninterrupted run",
            done,
        )

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        """Add the checkpoint's partial sums once this epoch's entries exist again."""
        if not self._pending_sums:
            return
        results = trainer.fit_loop.epoch_loop._results
        for key in [k for k in self._pending_sums if k in results]:
            saved, result = self._pending_sums.pop(key), results[key]
            device = result.value.device
            if result.meta.is_mean_reduction:
                result.value = saved["value"].to(device) + result.value
                result.cumulated_batch_size = (
                    saved["cumulated_batch_size"].to(device) + result.cumulated_batch_size
                )
            elif result.meta.is_max_reduction or result.meta.is_min_reduction:
                result.value = result.meta.reduce_fx(saved["value"].to(device), result.value)
            else:
                result.value = saved["value"].to(device) + result.value

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending_sums:
            log.warning(
                "metrics logged before the interruption were not logged again after the "
                "resume: %s (their epoch value covers the resumed part only)",
                sorted(self._pending_sums),
            )
            self._pending_sums = {}


class SigkillAtStep(Callback):
    """TEST HOOK: the process kills itself with SIGKILL after training step N.

    Only added when the environment variable ``RUNNER_TEST_SIGKILL_AT_STEP`` is set (``N`` or
    ``<stage>:N`` for one stage of a chained pipeline); the resume tests use it to die at an
    exact step, as a crash or a scheduler's kill would, without any cleanup.
    """

    def __init__(self, step: int) -> None:
        self.step = int(step)

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def _kill_step(stage: str | None) -> int | None:
    value = os.environ.get(KILL_ENV)
    if not value:
        return None
    want_stage, _, step = value.rpartition(":")
    if (want_stage or None) != stage:
        return None
    return int(step)


def runner_callbacks(cfg: DictConfig, callbacks: list[L.Callback], stage: str | None) -> list:
    """The callbacks every runner Trainer needs for exact, resumable runs (added if missing)."""
    extra: list[L.Callback] = []
    if not any(isinstance(cb, StepSeed) for cb in callbacks):
        extra.append(StepSeed(int(cfg.get("seed", 0))))
    if not any(isinstance(cb, ExactResume) for cb in callbacks):
        extra.append(ExactResume())
    step = _kill_step(stage)
    if step is not None:
        log.warning("%s=%s: this process will SIGKILL itself (test hook)", KILL_ENV, step)
        extra.append(SigkillAtStep(step))
    return [*callbacks, *extra]
