"""What a pipeline gets: the config, the job directory and ready-made objects."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
from omegaconf import DictConfig

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RunContext:
    """Everything a pipeline needs; the runner builds it after the config checks passed."""

    cfg: DictConfig
    output_dir: Path
    datamodule: L.LightningDataModule | None
    module: L.LightningModule | None
    trainer_factory: Callable[..., L.Trainer]
    loggers: list[Any] = field(default_factory=list)

    def make_trainer(self, **overrides: Any) -> L.Trainer:
        """A Trainer from ``cfg.trainer`` with the run's loggers and callbacks.

        ``overrides`` replace trainer arguments (e.g. ``max_epochs`` for one stage of a chain).
        Under a debug preset that sets ``max_epochs`` a stage runs at most that many epochs, so
        ``debug=limit`` stays short for a chained pipeline too (sd_mae: 30 + 20 + 10 epochs).
        """
        cap = ((self.cfg.get("debug") or {}).get("trainer") or {}).get("max_epochs")
        stage_epochs = overrides.get("max_epochs")
        if cap is not None and stage_epochs is not None and int(stage_epochs) > int(cap):
            log.info("debug preset: %s runs %d of its %d epochs", overrides.get("stage", "stage"), cap, stage_epochs)  # fmt: skip
            overrides["max_epochs"] = int(cap)
        return self.trainer_factory(**overrides)

    def log_figure(self, key: str, png_path: str | Path, step: int | None = None) -> None:
        """Log a saved PNG to wandb (when on); the file itself stays in the job directory."""
        for logger in self.loggers:
            if type(logger).__name__ == "WandbLogger":
                try:
                    logger.log_image(key=key, images=[str(png_path)], step=step)
                except Exception as err:  # a figure must never break a finished run
                    log.warning("could not log %s to wandb: %s", key, err)

    def figures_dir(self) -> Path:
        """``<output_dir>/figures``, created on first use."""
        path = self.output_dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def item_limit(self, stage: str = "test", total: int | None = None) -> int | None:
        """How many items a pipeline's own loop over ``stage`` data may cover (None: all).

        Work a pipeline does outside the Trainer (lowlight_gp enhancing every test image at 26
        levels, figure loops) follows the Trainer's limits, so ``debug=fast_dev_run`` stays one
        batch of everything: ``fast_dev_run`` -> 1 (or its count), ``overfit_batches`` -> its
        count, else ``limit_<stage>_batches`` (a count, or a fraction of ``total``).
        """
        trainer = self.cfg.get("trainer") or {}
        fdr = trainer.get("fast_dev_run", False)
        if fdr:
            return 1 if fdr is True else int(fdr)
        overfit = trainer.get("overfit_batches", 0) or 0
        if overfit:
            return int(overfit) if isinstance(overfit, int) else 1
        limit = trainer.get(f"limit_{stage}_batches")
        if limit is None or isinstance(limit, bool):
            return None
        if isinstance(limit, int):
            return limit
        if float(limit) >= 1.0 or total is None:
            return None
        return max(1, math.ceil(float(limit) * total)) if limit > 0 else 0

    def limit(self, items: Sequence[T], stage: str = "test", what: str = "items") -> list[T]:
        """The first ``item_limit`` of ``items`` (all of them without a limit), logged."""
        items = list(items)
        n = self.item_limit(stage, len(items))
        if n is None or n >= len(items):
            return items
        log.info("trainer limits: %d of %d %s", n, len(items), what)
        return items[:n]
