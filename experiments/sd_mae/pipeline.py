"""The paper's study in one job: pre-train once -> linear probe -> fine-tune N times.

The encoder checkpoint of the pre-training stage is handed to the probe and every fine-tune;
a randomly initialised encoder is probed too, as the floor pre-training must beat. Returns
``test/acc`` (mean over fine-tunes), ``test/acc_std``, ``test/probe_acc``,
``test/probe_acc_random`` and friends, so a sweep over ``method`` fills Table 1.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from experiments.runner.builders import build_callbacks
from experiments.runner.context import RunContext
from experiments.runner.pipeline import scalar_metrics
from experiments.runner.task import instantiate_checked
from experiments.sd_mae.checkpoint import save_encoder
from experiments.sd_mae.evaluate import evaluate_chain
from experiments.sd_mae.figures import reconstruction_grid
from experiments.sd_mae.pretrain import MAEPretrain

log = logging.getLogger(__name__)


def _fit_test(
    ctx: RunContext, module: L.LightningModule, stage: str, epochs: int
) -> dict[str, float]:
    """Fit one classifier stage (best checkpoint on val/acc) and test that checkpoint."""
    trainer = ctx.make_trainer(stage=stage, max_epochs=epochs)
    trainer.fit(module, datamodule=ctx.datamodule)
    out = scalar_metrics(trainer.callback_metrics)
    best = next(
        (
            c.best_model_path
            for c in trainer.checkpoint_callbacks
            if c.monitor and c.best_model_path
        ),
        None,
    )
    res = trainer.test(module, datamodule=ctx.datamodule, ckpt_path=best, weights_only=False)
    for r in res:
        out.update(scalar_metrics(r))
    return out


def _pretrain(ctx: RunContext, module: MAEPretrain, epochs: int, n_images: int) -> dict[str, Any]:
    """Fit the MAE, export ``encoder.pt`` / ``mae.pt`` and draw the reconstruction grid."""
    cfg, dm = ctx.cfg, ctx.datamodule
    dm.set_stage("pretrain")
    callbacks = [
        cb
        for cb in build_callbacks(cfg, "pretrain")
        if not (isinstance(cb, ModelCheckpoint) and cb.monitor)  # no val/acc while pre-training
    ]
    trainer = ctx.make_trainer(stage="pretrain", max_epochs=epochs, callbacks=callbacks)
    trainer.fit(module, datamodule=dm, ckpt_path=cfg.get("ckpt_path"), weights_only=False)
    metrics = {
        f"pretrain/{k.replace('/', '_').removesuffix('_epoch')}": v
        for k, v in scalar_metrics(trainer.callback_metrics).items()
        if not k.endswith("_step")
    }
    ckpt_dir = ctx.output_dir / "checkpoints"
    enc_path = save_encoder(
        ckpt_dir / "encoder.pt", module.net.encoder, method=module.method, epochs=epochs
    )
    imgs = dm.sample_images(n_images)
    net = module.net.cpu()
    torch.save(
        {
            "config": net.config,
            "state_dict": net.state_dict(),
            "method": module.method,
            "samples": imgs,
        },
        ckpt_dir / "mae.pt",
    )
    png = reconstruction_grid({module.method: net}, imgs, ctx.figures_dir() / "reconstruction.png")
    ctx.log_figure("figures/reconstruction", png)
    metrics["encoder_ckpt"] = str(enc_path)
    return metrics


def pretrain_probe_finetune(
    ctx: RunContext,
    pretrain_epochs: int = 100,
    probe_epochs: int = 90,
    finetune_epochs: int = 100,
    n_finetunes: int = 3,
    probe_random: bool = True,
    encoder_ckpt: str | None = None,
    figure_images: int = 4,
) -> dict[str, Any]:
    """Run the chain; ``encoder_ckpt`` skips pre-training and evaluates a given encoder."""
    cfg: DictConfig = ctx.cfg
    dm, module = ctx.datamodule, ctx.module
    if dm is None or not isinstance(module, MAEPretrain):
        raise ValueError("the sd_mae pipeline needs datamodule=sd_mae* and module=sd_mae/pretrain")
    if "sd_mae" not in cfg or "probe" not in cfg.sd_mae or "finetune" not in cfg.sd_mae:
        raise ValueError("the sd_mae pipeline needs sd_mae.probe and sd_mae.finetune configs")
    if not cfg.get("train", True):  # evaluate the stage checkpoints of ckpt_path, train nothing
        return evaluate_chain(ctx, n_finetunes)
    method = module.method
    if encoder_ckpt and method != "supervised":  # architecture check before any data is read
        instantiate_checked(cfg.sd_mae.probe, encoder_ckpt=encoder_ckpt)
    dm.prepare_data()
    dm.setup("fit")
    metrics: dict[str, Any] = {}
    if method == "supervised":
        enc = None
    elif encoder_ckpt:
        enc = encoder_ckpt
    else:
        metrics.update(_pretrain(ctx, module, pretrain_epochs, figure_images))
        enc = metrics["encoder_ckpt"]
    names = list(dm.classes)

    probes = ([("probe", enc)] if enc else []) + ([("probe_random", None)] if probe_random else [])
    for stage, ckpt in probes:
        L.seed_everything(int(cfg.seed), workers=True)
        dm.set_stage("probe")
        probe = instantiate_checked(cfg.sd_mae.probe, encoder_ckpt=ckpt, class_names=names)
        res = _fit_test(ctx, probe, stage, probe_epochs)
        suffix = stage.removeprefix("probe")  # "" or "_random"
        metrics[f"test/probe_acc{suffix}"] = res.get("test/acc", float("nan"))
        metrics[f"test/probe_kappa{suffix}"] = res.get("test/kappa", float("nan"))
        metrics[f"val/probe_acc_best{suffix}"] = res.get("val/acc_best", float("nan"))

    runs: list[dict[str, float]] = []
    for i in range(n_finetunes):
        L.seed_everything(int(cfg.seed) + 1000 * i, workers=True)
        dm.set_stage("finetune")
        ft = instantiate_checked(cfg.sd_mae.finetune, encoder_ckpt=enc, class_names=names)
        res = _fit_test(ctx, ft, f"finetune{i}", finetune_epochs)
        runs.append(res)
        metrics[f"test/acc_ft{i}"] = res.get("test/acc", float("nan"))
    if runs:
        for key in sorted({k for r in runs for k in r if k.startswith(("test/", "val/acc_best"))}):
            vals = np.array([r[key] for r in runs if key in r], dtype=float)
            metrics[key] = float(vals.mean())
            if key in ("test/acc", "test/kappa", "test/f1_macro"):
                metrics[f"{key}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    _write_summary(ctx.output_dir, method, metrics)
    return metrics


def _write_summary(out_dir: Path, method: str, metrics: dict[str, Any]) -> None:
    """A human-readable line per stage next to metrics.json."""
    keys = ["test/probe_acc", "test/probe_acc_random", "test/acc", "test/acc_std"]
    lines = [f"method: {method}"] + [f"{k}: {metrics[k]:.4f}" for k in keys if k in metrics]
    (out_dir / "sd_mae_summary.txt").write_text("\n".join(lines) + "\n")
    log.info("SD-MAE chain finished: %s", "; ".join(lines))
