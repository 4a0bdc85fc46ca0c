"""Hydra callback: write the sweep report when a multirun ends."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class SweepReportCallback(Callback):
    """Builds ``summary.csv`` / ``summary.md`` / plots in the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from experiments.runner.report import write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            write_report(sweep_dir)
            log.info("sweep report: %s", sweep_dir / "summary.md")
            print(f"\nSweep summary: {sweep_dir / 'summary.md'}")
        except Exception as err:  # the jobs' own results are already on disk
            log.exception("could not write the sweep report for %s: %s", sweep_dir, err)
