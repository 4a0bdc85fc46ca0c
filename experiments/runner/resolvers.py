"""OmegaConf resolvers the configs use; ``experiments.runner`` registers them when imported.

``${launch_dir:}`` is the directory the command was started from. It stands in for Hydra's
``${hydra:runtime.cwd}``, which cannot be resolved while a multirun creates its sweep directory
(HydraConfig is not set yet), so ``paths.*`` and ``hydra.sweep.dir`` must not depend on it.
"""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from core.checks import ConfigError

_LAUNCH_DIR = os.getcwd()


def register_resolvers() -> None:
    """Idempotent: safe to call from tests and notebooks that compose the configs themselves."""
    # `resume=<run dir>` reuses that directory (and its last.ckpt / wandb run) instead of a new one.
    OmegaConf.register_new_resolver("run_dir_or", run_dir_or, replace=True)
    OmegaConf.register_new_resolver("launch_dir", lambda: _LAUNCH_DIR, replace=True)


def run_dir_or(resume: str | None, default: str) -> str:
    """``resume`` when given (it must be an earlier run's directory), else ``default``.

    Checked here, where Hydra picks the job directory: a mistyped ``resume=`` used to create
    that directory and start a fresh run in it.
    """
    if not resume:
        return default
    path = Path(str(resume)).expanduser()
    if not path.is_dir():
        raise ConfigError(
            "resume",
            f"got {str(resume)!r}: no such directory; resume= takes the directory of an earlier "
            "run (outputs/<task>/runs/<time>)",
        )
    if not any((path / name).exists() for name in (".hydra", "metrics.json", "checkpoints")):
        raise ConfigError(
            "resume",
            f"got {str(resume)!r}: not a run directory of run.py (no .hydra/, metrics.json or "
            "checkpoints/ in it)",
        )
    return str(resume)
