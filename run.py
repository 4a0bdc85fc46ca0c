"""Entry point: ``python run.py +experiment=<name>`` or ``python run.py -m +experiment=<name> ...``."""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from core.checks import ConfigError
from experiments.runner.task import run_task

os.environ.setdefault("HYDRA_FULL_ERROR", "0")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run one job; the return value is the metric a sweeper optimises (``optimized_metric``)."""
    try:
        return run_task(cfg)
    except ConfigError as err:
        print(f"\nConfig error: {err}\n", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
