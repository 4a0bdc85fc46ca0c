"""Pipeline for DGMMs whose hidden layers start from a DNN: train that DNN first, then the DGMM.

With ``module.init_ckpt: auto`` each job is self-contained (the sweep presets of Table 1 and
Table 6 need a DNN per seed): a DNN from ``cfg.pretrain.model`` is trained in the job's
``pretrain_dnn/`` stage, its best checkpoint initialises (and in the separate regime, freezes)
the DGMM's hidden layers, then the default fit-and-test runs. Any other ``init_ckpt`` is
passed through unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
from hydra.utils import instantiate

from experiments.deep_gmm.module import FrameStateClassifier
from experiments.runner.context import RunContext
from experiments.runner.pipeline import fit_and_test, fitted_checkpoint, scalar_metrics

log = logging.getLogger(__name__)


def pretrain_then_fit(ctx: RunContext) -> dict[str, Any]:
    module = ctx.module
    metrics: dict[str, Any] = {}
    training = ctx.cfg.get("train", True)  # train=false: fit_and_test tests ckpt_path alone
    if not training and isinstance(module, FrameStateClassifier) and module.init_ckpt == "auto":
        module.init_ckpt = None  # every weight comes from ckpt_path: there is no DNN to pre-train
    if training and isinstance(module, FrameStateClassifier) and module.init_ckpt == "auto":
        pre = ctx.cfg.get("pretrain")
        if pre is None or pre.get("model") is None:
            raise ValueError(
                "module.init_ckpt=auto needs a `pretrain.model` (the DNN) in the experiment preset"
            )
        # Reseed so every job of a sweep with this seed pre-trains the very same DNN, whatever
        # random numbers building its own (differently sized) DGMM consumed before.
        L.seed_everything(int(ctx.cfg.seed), workers=True)
        dnn = FrameStateClassifier(
            net=instantiate(pre.model),
            optimizer=instantiate(ctx.cfg.module.optimizer),
            num_states=module.hparams.num_states,
            regime="joint",
        )
        trainer = ctx.make_trainer(stage="pretrain_dnn", max_epochs=int(pre.max_epochs))
        log.info("pre-training the DNN whose hidden layers initialise the DGMM")
        trainer.fit(dnn, datamodule=ctx.datamodule)
        # the best checkpoint; under debug=fast_dev_run (none written) the final weights
        ckpt = fitted_checkpoint(
            trainer, ctx.output_dir / "checkpoints" / "pretrain_dnn" / "final.ckpt"
        )
        metrics.update(
            {
                f"pretrain/{k.split('/', 1)[-1]}": v
                for k, v in scalar_metrics(trainer.callback_metrics).items()
                if k.startswith("val/")
            }
        )
        # The DNN baseline of Table 1 / Table 6 is this very network: report its test figures.
        for result in trainer.test(
            dnn, datamodule=ctx.datamodule, ckpt_path=ckpt, weights_only=False
        ):
            metrics.update(
                {f"dnn/{k.replace('/', '_')}": v for k, v in scalar_metrics(result).items()}
            )
        module.load_hidden(ckpt)
        metrics["pretrain_checkpoint"] = ckpt
    metrics.update(fit_and_test(ctx))
    return metrics
