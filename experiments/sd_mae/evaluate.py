"""``train=false ckpt_path=<run dir or .ckpt>`` for the SD-MAE chain: test the stages' checkpoints.

A run directory holds one best checkpoint per classifier stage (``checkpoints/probe/``,
``probe_random/``, ``finetune<i>/``); each is tested as in the run that wrote it and the metrics
are named and averaged the same way (``test/probe_acc``, ``test/acc`` = mean over fine-tunes).
A single ``.ckpt`` is tested as the stage its folder names (a fine-tune when it names none).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from core.checks import ConfigError
from experiments.runner.context import RunContext
from experiments.runner.evaluate import KEY, best_checkpoint_of, eval_checkpoint, load_checked
from experiments.runner.pipeline import scalar_metrics
from experiments.runner.task import instantiate_checked

STAGE = re.compile(r"^(probe|probe_random|finetune\d+)$")


def _stages(ckpt_path: str | None, output_dir: Path, n_finetunes: int) -> list[tuple[str, Path]]:
    path = Path(ckpt_path).expanduser() if ckpt_path and ckpt_path != "last" else None
    if path is None or not path.is_dir():
        file = eval_checkpoint(ckpt_path, output_dir)
        stage = file.parent.name if STAGE.match(file.parent.name) else "finetune0"
        return [(stage, file)]
    names = ["probe", "probe_random"] + [f"finetune{i}" for i in range(max(n_finetunes, 1))]
    names += sorted(p.name for p in (path / "checkpoints").glob("finetune*") if p.name not in names)
    stages = [
        (s, best_checkpoint_of(path, s)) for s in names if (path / "checkpoints" / s).is_dir()
    ]
    if not stages:
        raise ConfigError(
            KEY,
            f"got {str(path)!r}: no stage checkpoints (checkpoints/probe/, checkpoints/finetune0/); "
            "is it an sd_mae run directory?",
        )
    return stages


def _module(ctx: RunContext, stage: str, class_names: list[str] | None) -> Any:
    node = ctx.cfg.sd_mae.probe if stage.startswith("probe") else ctx.cfg.sd_mae.finetune
    return instantiate_checked(node, encoder_ckpt=None, class_names=class_names)


def evaluate_chain(ctx: RunContext, n_finetunes: int) -> dict[str, Any]:
    """Test every stage checkpoint ``cfg.ckpt_path`` points at; the chain's metric names."""
    stages = _stages(ctx.cfg.get("ckpt_path"), ctx.output_dir, n_finetunes)
    for stage, file in stages:  # every checkpoint fits its module, before any data is read
        load_checked(_module(ctx, stage, None), file)
    dm = ctx.datamodule
    dm.prepare_data()
    dm.setup("fit")
    metrics: dict[str, Any] = {}
    runs: list[dict[str, float]] = []
    for stage, file in stages:
        dm.set_stage("probe" if stage.startswith("probe") else "finetune")
        module = _module(ctx, stage, list(dm.classes))
        trainer = ctx.make_trainer(stage=f"eval_{stage}")
        res: dict[str, float] = {}
        for r in trainer.test(module, datamodule=dm, ckpt_path=str(file), weights_only=False):
            res.update(scalar_metrics(r))
        metrics[f"evaluated_checkpoint/{stage}"] = str(file)
        if stage.startswith("probe"):
            suffix = stage.removeprefix("probe")
            metrics[f"test/probe_acc{suffix}"] = res.get("test/acc", float("nan"))
            metrics[f"test/probe_kappa{suffix}"] = res.get("test/kappa", float("nan"))
        else:
            runs.append(res)
            metrics[f"test/acc_ft{stage.removeprefix('finetune')}"] = res.get("test/acc", np.nan)
    for key in sorted({k for r in runs for k in r if k.startswith("test/")}):
        vals = np.array([r[key] for r in runs if key in r], dtype=float)
        metrics[key] = float(vals.mean())
        if key in ("test/acc", "test/kappa", "test/f1_macro"):
            metrics[f"{key}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    return metrics
