"""Entry point: ``python run.py +experiment=<name>`` or ``python run.py -m +experiment=<name> ...``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from experiments.runner.cli import guarded, user_errors
from experiments.runner.task import run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run one job; the return value is the metric a sweeper optimises (``optimized_metric``).

    A config mistake or a damaged data file ends the command with one line and exit code 2
    (``experiments.runner.cli.guarded``); in a multirun the job becomes a failed row instead.
    """
    with user_errors():
        return run_task(cfg)


if __name__ == "__main__":
    guarded(main)
