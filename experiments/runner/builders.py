"""Build loggers, callbacks and trainers from the config."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from experiments.runner.callbacks import EmbedRunConfig
from experiments.runner.resume import runner_callbacks
from experiments.runner.rng import keeps_global_rng

log = logging.getLogger(__name__)

WANDB_ID_FILE = "wandb_run_id.txt"


@keeps_global_rng  # building them must not change any number
def build_loggers(
    cfg: DictConfig, output_dir: Path, sweep_name: str | None, stage: str | None = None
) -> list[Any]:
    """Instantiate ``cfg.logger``: csv always, wandb grouped by sweep and resumable by id."""
    loggers: list[Any] = []
    for name, lg_cfg in (cfg.get("logger") or {}).items():
        if lg_cfg is None or "_target_" not in lg_cfg:
            continue
        lg_cfg = OmegaConf.create(OmegaConf.to_container(lg_cfg, resolve=True))
        with open_dict(lg_cfg):
            if "WandbLogger" in lg_cfg._target_:
                if lg_cfg.get("mode") == "disabled":
                    continue
                _fill_wandb(lg_cfg, cfg, output_dir, sweep_name)
            elif "CSVLogger" in lg_cfg._target_:
                lg_cfg.version = _fresh_csv_version(lg_cfg, stage)
        log.info("logger %s -> %s", name, lg_cfg._target_)
        loggers.append(_instantiate_logger(lg_cfg))
    return loggers


def _instantiate_logger(lg_cfg: DictConfig) -> Any:
    """Build one logger; a run ``config`` is handed over as plain data, never instantiated.

    The wandb ``config`` holds the whole run config, ``_target_`` keys included: instantiating
    it recursively built a second datamodule, module, Trainer and loggers and logged their reprs.
    """
    config = lg_cfg.pop("config", None) if "config" in lg_cfg else None
    if config is None:
        return instantiate(lg_cfg, _convert_="all")
    if isinstance(config, DictConfig):
        config = OmegaConf.to_container(config)
    factory = instantiate(lg_cfg, _convert_="all", _partial_=True)
    return factory(config=config)


def _fresh_csv_version(lg_cfg: DictConfig, stage: str | None) -> str:
    """The CSV folder for this attempt: a resumed run appends ``-resumed-N`` instead of overwriting."""
    base = stage or str(lg_cfg.get("version") or "")
    version, attempt = base, 1
    while (Path(lg_cfg.save_dir) / lg_cfg.name / version / "metrics.csv").exists():
        attempt += 1
        version = f"{base}-resumed-{attempt}" if base else f"resumed-{attempt}"
    return version


def _fill_wandb(lg_cfg: DictConfig, cfg: DictConfig, output_dir: Path, sweep_name: str | None):
    """Name/group the run and reuse its id when the job directory already has one (resume)."""
    id_file = output_dir / WANDB_ID_FILE
    if lg_cfg.get("id") is None:
        if id_file.exists():
            lg_cfg.id = id_file.read_text().strip()
        else:
            lg_cfg.id = uuid.uuid4().hex[:8]
            output_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(lg_cfg.id)
    lg_cfg.resume = "allow"
    if lg_cfg.get("name") is None:
        lg_cfg.name = f"{cfg.task_name}/{output_dir.name}"
    if lg_cfg.get("group") is None and sweep_name:
        lg_cfg.group = sweep_name
    lg_cfg.config = plain_config(cfg)


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config without the ``hydra`` node, as plain Python values."""
    masked = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return OmegaConf.to_container(masked, resolve=True, throw_on_missing=False)


@keeps_global_rng  # building them must not change any number
def build_callbacks(cfg: DictConfig, stage: str | None = None) -> list[L.Callback]:
    """Instantiate ``cfg.callbacks``; a ``stage`` gets its own checkpoint folder."""
    callbacks: list[L.Callback] = []
    for _, cb_cfg in (cfg.get("callbacks") or {}).items():
        if cb_cfg is None or "_target_" not in cb_cfg:
            continue
        if stage and "dirpath" in cb_cfg:
            cb_cfg = cb_cfg.copy()
            with open_dict(cb_cfg):
                cb_cfg.dirpath = str(Path(cb_cfg.dirpath) / stage)
        callbacks.append(instantiate(cb_cfg))
    return callbacks


@keeps_global_rng  # building them must not change any number
def build_trainer(
    cfg: DictConfig,
    output_dir: Path,
    sweep_name: str | None,
    shared_loggers: list[Any] | None = None,
    stage: str | None = None,
    **overrides: Any,
) -> L.Trainer:
    """A Trainer from ``cfg.trainer``; ``overrides`` replace its arguments."""
    loggers = (
        shared_loggers
        if shared_loggers is not None and stage is None
        else build_loggers(cfg, output_dir, sweep_name, stage)
    )
    callbacks = overrides.pop("callbacks", None)
    if callbacks is None:
        callbacks = build_callbacks(cfg, stage)
    callbacks = [*callbacks, EmbedRunConfig(plain_config(cfg))]
    callbacks = runner_callbacks(cfg, list(callbacks), stage)  # exact resume, whatever the config
    kwargs: dict[str, Any] = {"logger": loggers or False, "callbacks": callbacks}
    kwargs.update(overrides)
    if stage and "default_root_dir" not in overrides:
        kwargs["default_root_dir"] = str(output_dir / stage)
    return instantiate(cfg.trainer, **kwargs)
