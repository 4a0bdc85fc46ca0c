"""Load a finished run back (config, module with its best weights, metrics) in one call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from experiments.runner.io import METRICS_FILE, read_json


@dataclass
class LoadedRun:
    cfg: DictConfig
    module: Any
    metrics: dict[str, Any]
    checkpoint: Path | None


def load_run(run_dir: str | Path, checkpoint: str = "best", map_location: str = "cpu") -> LoadedRun:
    """``load_run("outputs/example/runs/<time>")`` -> config, module (weights loaded), metrics.

    ``checkpoint`` is ``"best"``, ``"last"`` or a path. Uses ``config_resolved.yaml`` so no
    Hydra context is needed (works in a notebook).
    """
    run_dir = Path(run_dir)
    cfg_file = run_dir / "config_resolved.yaml"
    if not cfg_file.exists():
        raise FileNotFoundError(f"{cfg_file} not found: is {run_dir} a job directory of run.py?")
    cfg = OmegaConf.load(cfg_file)
    module = instantiate(cfg.module, _convert_="partial") if cfg.get("module") else None
    ckpt = _checkpoint_path(run_dir, checkpoint)
    if module is not None and ckpt is not None:
        state = torch.load(ckpt, map_location=map_location, weights_only=False)
        module.load_state_dict(state["state_dict"])
        module.eval()
    record = read_json(run_dir / METRICS_FILE) or {}
    return LoadedRun(cfg, module, record.get("metrics", {}), ckpt)


def _checkpoint_path(run_dir: Path, which: str) -> Path | None:
    ckpt_dir = run_dir / "checkpoints"
    if which == "last":
        path = ckpt_dir / "last.ckpt"
        return path if path.exists() else None
    if which == "best":
        best = sorted(ckpt_dir.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
        return best[-1] if best else None
    return Path(which)
