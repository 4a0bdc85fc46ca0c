"""What a pipeline gets: the config, the job directory and ready-made objects."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

log = logging.getLogger(__name__)


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
        """
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
