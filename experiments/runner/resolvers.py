"""OmegaConf resolvers the configs use; ``experiments.runner`` registers them when imported.

``${launch_dir:}`` is the directory the command was started from. It stands in for Hydra's
``${hydra:runtime.cwd}``, which cannot be resolved while a multirun creates its sweep directory
(HydraConfig is not set yet), so ``paths.*`` and ``hydra.sweep.dir`` must not depend on it.
"""

from __future__ import annotations

import os

from omegaconf import OmegaConf

_LAUNCH_DIR = os.getcwd()


def register_resolvers() -> None:
    """Idempotent: safe to call from tests and notebooks that compose the configs themselves."""
    # `resume=<run dir>` reuses that directory (and its last.ckpt / wandb run) instead of a new one.
    OmegaConf.register_new_resolver(
        "run_dir_or", lambda resume, default: resume if resume else default, replace=True
    )
    OmegaConf.register_new_resolver("launch_dir", lambda: _LAUNCH_DIR, replace=True)
