"""The task function behind ``run.py``: checks, builds, runs the pipeline, records the result."""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from core.checks import ConfigError
from core.denormals import flush_denormals
from core.errors import DataError
from experiments.runner.builders import build_loggers, build_trainer
from experiments.runner.cli import one_line
from experiments.runner.config_tree import print_config_tree
from experiments.runner.confighash import config_hash, fingerprint, reusable_run
from experiments.runner.context import RunContext
from experiments.runner.io import METRICS_FILE, read_json, write_json_atomic
from experiments.runner.predict import is_predict, predict
from experiments.runner.preflight import (
    available_experiments,
    kept_record,
    refuse,
    restore_record,
)
from experiments.runner.schema import check_config

log = logging.getLogger(__name__)


def _hydra_info(task_name: str) -> tuple[bool, list[str], str | None, str | None]:
    """(is multirun, this job's overrides, sweep name, job number) — empty outside Hydra."""
    if not HydraConfig.initialized():
        return False, [], None, None
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    sweep_name = None
    if multirun:
        sweep_name = f"{task_name}/{Path(hc.sweep.dir).name}"
    job_num = str(hc.job.num) if multirun else None
    return multirun, list(hc.overrides.task), sweep_name, job_num


def _optimized(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    key = cfg.get("optimized_metric")
    if not key or cfg.get("predict", {}).get("enabled"):  # predict writes files, not metrics
        return None
    value = metrics.get(key)
    if value is None:
        log.warning("optimized_metric %r is not among the final metrics %s", key, sorted(metrics))
        return None
    return float(value)


def instantiate_objects(cfg: DictConfig) -> tuple[Any, Any]:
    """Build the datamodule and the module (their constructors check the config; no data read).

    ``pipeline=predict`` builds neither: the model comes from the checkpoint's own config.
    """
    if is_predict(cfg):
        return None, None
    return _build(cfg, "datamodule"), _build(cfg, "module")


def build_pipeline(cfg: DictConfig) -> Any:
    """The configured pipeline callable, or the predict pipeline for ``pipeline=predict``."""
    return predict if is_predict(cfg) else instantiate(cfg.pipeline)


def _build(cfg: DictConfig, key: str) -> Any:
    """Instantiate ``cfg[key]`` (None when absent), surfacing ConfigErrors."""
    return instantiate_checked(cfg[key]) if cfg.get(key) else None


def instantiate_checked(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` whose constructor ConfigError comes out unwrapped.

    Hydra wraps constructor exceptions in ``InstantiationException``; pipelines that build
    their own stage modules use this so the user still sees the key and allowed values (exit 2).
    """
    try:
        return instantiate(node, **kwargs, _convert_="partial")
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def apply_debug(cfg: DictConfig) -> None:
    """Merge a ``debug=<preset>`` over the composed config, so it wins over the experiment."""
    debug = cfg.get("debug")
    if not debug:
        return
    with open_dict(cfg):
        for key, value in debug.items():
            if key in cfg and isinstance(cfg[key], DictConfig) and isinstance(value, DictConfig):
                cfg[key] = OmegaConf.merge(cfg[key], value)
            else:
                cfg[key] = value


def run_task(cfg: DictConfig) -> float | None:
    """Run one job end to end and write ``metrics.json``; never lose other jobs of a sweep.

    In a single run an error propagates (non-zero exit); in a multirun it is recorded as a failed
    row and the sweep goes on.
    """
    apply_debug(cfg)
    if cfg.get("resume") and not cfg.get("ckpt_path"):
        with open_dict(cfg):
            cfg.ckpt_path = "last"
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    multirun, overrides, sweep_name, job_num = _hydra_info(str(cfg.get("task_name")))
    previous = kept_record(read_json(output_dir / METRICS_FILE))
    try:  # typed checks and the settings of an earlier run here, before anything is built
        check_config(cfg, available_experiments())
        flat = fingerprint(cfg)
        finished = reusable_run(previous, flat, cfg.get("ckpt_path") == "last", str(output_dir))
    except ConfigError as err:
        refuse(output_dir, err, previous, overrides, job_num)
        if not multirun:
            raise
        return math.nan
    if finished is not None:
        log.info("job already finished in %s with the same settings: skipping", output_dir)
        restore_record(output_dir, finished)
        return _optimized(cfg, finished.get("metrics", {}))

    if cfg.get("print_config", True) and rank_zero_only.rank == 0:
        print_config_tree(cfg)
    _save_resolved_config(cfg, output_dir)

    record: dict[str, Any] = {
        "task_name": cfg.get("task_name"),
        "job_num": job_num,
        "overrides": overrides,
        "started": dt.datetime.now().isoformat(timespec="seconds"),
        "status": "running",
        "metrics": {},
        "config_hash": config_hash(flat),
        "config": flat,
    }
    start = time.perf_counter()
    loggers: list[Any] = []
    error: BaseException | None = None
    try:
        if cfg.get("flush_denormals", True):
            flush_denormals(True)  # the same speed on every x86 CPU (core/denormals.py)
        L.seed_everything(int(cfg.seed), workers=True)
        datamodule, module = instantiate_objects(cfg)
        pipeline = build_pipeline(cfg)
        loggers = build_loggers(cfg, output_dir, sweep_name)
        factory = partial(build_trainer, cfg, output_dir, sweep_name, loggers)
        ctx = RunContext(cfg, output_dir, datamodule, module, factory, loggers)
        metrics = pipeline(ctx) or {}
        record["metrics"] = metrics
        record["status"] = "ok"
        log.info("final metrics (%s):\n%s", output_dir / METRICS_FILE, metrics_table(metrics))
    except ConfigError as err:
        error = err
        record.update(status="config_error", error=str(err))
        log.error("config error: %s", err)
    except DataError as err:
        error = err
        record.update(status="data_error", error=one_line(str(err)))
        log.error("data error: %s", err)
    except BaseException as err:  # KeyboardInterrupt too: the record says where it stopped
        error = err
        record.update(
            status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()
        )
        log.error("job failed: %s\n%s", err, traceback.format_exc())
    finally:
        record["duration_s"] = round(time.perf_counter() - start, 3)
        if rank_zero_only.rank == 0:
            write_json_atomic(output_dir / METRICS_FILE, record)
        _finish_loggers(loggers, failed=error is not None)

    if error is not None and (not multirun or isinstance(error, KeyboardInterrupt)):
        raise error
    if error is not None:
        return math.nan
    return _optimized(cfg, record["metrics"])


def metrics_table(metrics: dict[str, Any]) -> str:
    """``  key  value`` lines of the numeric final metrics, sorted (what a run prints at its end)."""
    rows = {
        k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if not rows:
        return "  (none)"
    width = max(len(k) for k in rows)
    return "\n".join(f"  {k:<{width}}  {v:.6g}" for k, v in sorted(rows.items()))


def _save_resolved_config(cfg: DictConfig, output_dir: Path) -> None:
    """``config_resolved.yaml``: every interpolation replaced, next to Hydra's ``.hydra/``."""
    if rank_zero_only.rank != 0:
        return
    try:
        keys = [k for k in cfg if k != "hydra"]
        resolved = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
        (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(resolved))
    except Exception as err:  # an unresolvable value is reported by the run itself
        log.warning("could not write the resolved config: %s", err)


def _finish_loggers(loggers: list[Any], failed: bool) -> None:
    """Close wandb so the next job of a sweep starts a fresh run."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            try:
                import wandb

                if wandb.run is not None:
                    wandb.finish(exit_code=1 if failed else 0)
            except Exception as err:
                log.warning("wandb.finish failed: %s", err)
        elif hasattr(logger, "finalize"):
            try:
                logger.finalize("failed" if failed else "success")
            except Exception as err:
                log.warning("could not finalize %s: %s", type(logger).__name__, err)
