"""``train=false ckpt_path=<run dir or .ckpt>``: enhance with exactly that reference CNN.

The enhancer itself is fitted per image (k-means + GP, seeded), so the checkpoint of a run is
its reference CNN: ``reference_cnn_<mode>.pt`` of a run directory (the net it enhanced with,
trained or cached), else its ``checkpoints/best-*.ckpt``, or a given ``.ckpt``. Its
``net.*`` weights must fit ``model`` for the run's mode, else a ``ConfigError`` names
``ckpt_path`` before any image is read.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from hydra.utils import instantiate

from core.checks import ConfigError
from experiments.runner.context import RunContext
from experiments.runner.evaluate import eval_checkpoint, fit_problem, load_checked

log = logging.getLogger(__name__)


def checkpoint_cnn(ctx: RunContext, mode: str) -> torch.nn.Module | None:
    """The reference CNN of ``ckpt_path`` when ``train=false`` (None otherwise)."""
    cfg = ctx.cfg
    if cfg.get("train", True) or not cfg.get("ckpt_path"):
        return None
    net = instantiate(cfg.model, in_channels=1 if mode == "lm" else 3)
    used = Path(cfg.ckpt_path).expanduser() / f"reference_cnn_{mode}.pt"
    if used.is_file():  # a run directory: the very CNN that run enhanced with (cached or trained)
        log.info("evaluating the reference CNN %s", used)
        try:
            net.load_state_dict(torch.load(used, map_location="cpu", weights_only=True))
        except RuntimeError as err:
            raise ConfigError("ckpt_path", f"got {str(used)!r}: {fit_problem(err)}") from None
        return net.eval()
    load_checked(net, eval_checkpoint(cfg.ckpt_path, ctx.output_dir), prefix="net.")
    return net.eval()


def require_reference_cnn(ctx: RunContext, mode: str, cache: Path) -> None:
    """``train=false`` needs a CNN to evaluate: ``ckpt_path`` (checked now) or a cached one."""
    if checkpoint_cnn(ctx, mode) is None and not (
        ctx.cfg.lowlight.reference_cache and cache.exists()
    ):
        raise ConfigError(
            "ckpt_path",
            "got null; train=false enhances with a trained reference CNN: give "
            "ckpt_path=<run directory or .ckpt>, or train it once with the same settings "
            f"(cached as {cache})",
        )
