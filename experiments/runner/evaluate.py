"""``train=false ckpt_path=<file or run dir>``: find the checkpoint to evaluate and check it fits.

Evaluation used to test whatever weights the module had (random ones) when the checkpoint was
not found, with only a warning. Here a missing checkpoint, a run directory without any
checkpoint, a file that is not a Lightning checkpoint or one whose weights do not fit the model
is a ``ConfigError`` naming ``ckpt_path``, raised before any data is read. Which file a run
directory stands for is decided by ``experiments.runner.checkpoints`` (shared with predict).
"""

from __future__ import annotations

from pathlib import Path

import torch

from core.checks import ConfigError
from experiments.runner.checkpoints import KEY, load_checkpoint, resolve_checkpoint

__all__ = [
    "KEY",
    "best_checkpoint_of",
    "eval_checkpoint",
    "fit_problem",
    "load_checked",
    "state_dict_of",
]


def eval_checkpoint(ckpt_path: str | None, output_dir: Path, stage: str | None = None) -> Path:
    """The checkpoint file ``train=false`` evaluates (``experiments.runner.checkpoints`` order)."""
    return resolve_checkpoint(ckpt_path, output_dir, stage, needed_by="train=false")


def best_checkpoint_of(run_dir: Path, stage: str | None = None) -> Path:
    """The checkpoint of a run directory (or of one stage of it) that evaluate tests."""
    return resolve_checkpoint(run_dir, stage=stage, needed_by="train=false")


def state_dict_of(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The weights a checkpoint holds (those under ``prefix``, without it)."""
    state = load_checkpoint(path)["state_dict"]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_checked(module: torch.nn.Module, path: Path, prefix: str = "") -> None:
    """Load the checkpoint's weights into ``module`` strictly; a mismatch is a ConfigError."""
    weights = state_dict_of(path, prefix)
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ConfigError(KEY, f"got {str(path)!r}: {fit_problem(err)}") from None


def fit_problem(err: RuntimeError) -> str:
    """One line from torch's multi-line ``load_state_dict`` error."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    details = [ln for ln in lines[1:] if ln][:3]
    return "its weights do not fit the model: " + " ".join(details)[:400]
