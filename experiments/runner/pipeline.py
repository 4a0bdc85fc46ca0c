"""The default pipeline: fit, then test the best checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from experiments.runner.callbacks import LastCheckpoint
from experiments.runner.context import RunContext
from experiments.runner.evaluate import eval_checkpoint, load_checked

log = logging.getLogger(__name__)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Keep the scalar entries of a Lightning ``callback_metrics`` dict as plain floats."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def fit_and_test(ctx: RunContext) -> dict[str, Any]:
    """``trainer.fit`` (resuming from ``cfg.ckpt_path``), then ``trainer.test`` on the best checkpoint.

    With ``train=false`` it tests ``cfg.ckpt_path`` (a file, or a run directory's best
    checkpoint; see ``experiments.runner.evaluate``) and nothing else.

    Returns the final ``val/*`` and ``test/*`` metrics (and ``train/*`` of the last epoch).
    """
    cfg = ctx.cfg
    if ctx.module is None or ctx.datamodule is None:
        raise ValueError(
            "the fit_and_test pipeline needs both `module` and `datamodule` configs; "
            "pick them in the experiment preset (override /module: ..., /datamodule: ...)"
        )
    evaluate = None if cfg.get("train", True) else eval_checkpoint(cfg.ckpt_path, ctx.output_dir)
    if evaluate is not None:  # before any data is read: a checkpoint that does not fit fails here
        load_checked(ctx.module, evaluate)
    trainer = ctx.make_trainer()
    metrics: dict[str, Any] = {}
    if cfg.get("train", True):
        trainer.fit(
            ctx.module,
            datamodule=ctx.datamodule,
            ckpt_path=resolve_ckpt_path(cfg.get("ckpt_path"), ctx.output_dir),
            weights_only=False,  # the job's own checkpoints (hparams may hold partials)
        )
        metrics.update(scalar_metrics(trainer.callback_metrics))
    if cfg.get("test", True):
        ckpt = str(evaluate) if evaluate is not None else _best_checkpoint(trainer)
        if ckpt is None and trainer.fast_dev_run:
            log.info("fast_dev_run writes no checkpoint: testing the weights the fit ended with")
        elif ckpt is None:
            log.warning("no best checkpoint found: testing the current weights")
        results = trainer.test(
            ctx.module, datamodule=ctx.datamodule, ckpt_path=ckpt, weights_only=False
        )
        for result in results:
            metrics.update(scalar_metrics(result))
        metrics.update(scalar_metrics(trainer.callback_metrics))
        if ckpt:
            metrics["evaluated_checkpoint" if evaluate is not None else "best_checkpoint"] = ckpt
    return metrics


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """``"last"`` -> this job's ``checkpoints/last.ckpt`` (None, with a warning, if absent)."""
    if ckpt_path != "last":
        return ckpt_path
    last = output_dir / "checkpoints" / LastCheckpoint.FILE_NAME
    if last.exists():
        log.info("resuming from %s", last)
        return str(last)
    log.warning("ckpt_path=last but %s does not exist: starting from scratch", last)
    return None


def _best_checkpoint(trainer: Any) -> str | None:
    """Path of the best checkpoint of the first monitoring ModelCheckpoint, if any."""
    for cb in getattr(trainer, "checkpoint_callbacks", []):
        if getattr(cb, "monitor", None) and getattr(cb, "best_model_path", ""):
            return cb.best_model_path
    return None


def fitted_checkpoint(trainer: Any, fallback: Path) -> str:
    """The best checkpoint of a finished fit, for a stage that hands its weights on.

    ``debug=fast_dev_run`` (and a fit that never validated) writes no best checkpoint; a
    chained pipeline (deep_gmm's DNN pre-training) then goes on with the weights the fit ended
    with, saved to ``fallback``, instead of stopping: the debug run still covers every stage.
    """
    best = _best_checkpoint(trainer)
    if best:
        return best
    fallback.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(fallback), weights_only=True)
    log.warning("no best checkpoint (fast_dev_run or no validation): using the final weights %s", fallback)  # fmt: skip
    return str(fallback)
