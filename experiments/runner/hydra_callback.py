"""Hydra callback: write the sweep report when a multirun ends, and fail if a job failed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from experiments.runner.io import METRICS_FILE, read_json

log = logging.getLogger(__name__)

FAILED_EXIT = 1


def failed_jobs(sweep_dir: Path) -> tuple[int, int]:
    """(jobs not ``ok``, all jobs) of a sweep directory, from each job's ``metrics.json``."""
    from experiments.runner.report import job_dirs

    jobs = job_dirs(sweep_dir) if sweep_dir.is_dir() else []
    status = [(read_json(jd / METRICS_FILE) or {}).get("status") for jd in jobs]
    return sum(s != "ok" for s in status), len(status)


class SweepReportCallback(Callback):
    """Builds ``summary.csv`` / ``summary.md`` / plots in the sweep directory.

    A sweep with failed jobs (each a row carrying its error) ends with
    ``k of N jobs failed: see <sweep dir>/summary.md`` and exit status 1, so a script or CI
    that launched it notices.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from experiments.runner.report import write_report

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            write_report(sweep_dir)
            log.info("sweep report: %s", sweep_dir / "summary.md")
            print(f"\nSweep summary: {sweep_dir / 'summary.md'}")
        except Exception as err:  # the jobs' own results are already on disk
            log.exception("could not write the sweep report for %s: %s", sweep_dir, err)
        failed, total = failed_jobs(sweep_dir)
        if failed:
            print(
                f"{failed} of {total} jobs failed: see {sweep_dir / 'summary.md'}", file=sys.stderr
            )
            raise SystemExit(FAILED_EXIT)
