"""What the task does before it builds anything: the record of a refused job, the presets list."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from core.checks import ConfigError
from experiments.runner.io import METRICS_FILE, write_json_atomic

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def available_experiments() -> list[str]:
    """The ``+experiment=<name>`` presets (Hydra's search path, else ``conf/experiment/``)."""
    try:
        from hydra.core.global_hydra import GlobalHydra

        names = GlobalHydra.instance().config_loader().get_group_options("experiment")
        if names:
            return sorted(names)
    except Exception:
        pass
    return sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def kept_record(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run's own record: a refused attempt keeps the record it refused under ``previous``."""
    if (
        record
        and record.get("status") == "config_error"
        and isinstance(record.get("previous"), dict)
    ):
        return record["previous"]
    return record


def refuse(
    output_dir: Path,
    err: ConfigError,
    previous: dict[str, Any] | None,
    overrides: list[str],
    job_num: str | None,
) -> None:
    """Write ``metrics.json`` for a job refused before it started (a failed sweep row).

    An earlier run's record in the same directory is kept under ``previous``, so a mistyped
    rerun never loses finished results (a rerun with the right settings restores it).
    """
    log.error("config error: %s", err)
    record: dict[str, Any] = {
        "status": "config_error",
        "error": str(err),
        "overrides": overrides,
        "job_num": job_num,
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "metrics": {},
    }
    if previous is not None:
        record["previous"] = previous
    try:
        write_json_atomic(output_dir / METRICS_FILE, record)
    except OSError as io_err:
        log.warning("could not write %s: %s", output_dir / METRICS_FILE, io_err)


def restore_record(output_dir: Path, record: dict[str, Any]) -> None:
    """Put a finished run's record back after an earlier refused attempt had set it aside."""
    path = output_dir / METRICS_FILE
    from experiments.runner.io import read_json

    if read_json(path) != record:
        write_json_atomic(path, record)
