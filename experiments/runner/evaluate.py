"""``train=false ckpt_path=<file or run dir>``: find the checkpoint to evaluate and check it fits.

Evaluation used to test whatever weights the module had (random ones) when the checkpoint was
not found, with only a warning. Here a missing checkpoint, a run directory without a best
checkpoint, a file that is not a Lightning checkpoint or one whose weights do not fit the model
is a ``ConfigError`` naming ``ckpt_path``, raised before any data is read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from core.checks import ConfigError
from experiments.runner.io import METRICS_FILE, read_json

log = logging.getLogger(__name__)

KEY = "ckpt_path"


def eval_checkpoint(ckpt_path: str | None, output_dir: Path, stage: str | None = None) -> Path:
    """The checkpoint file ``train=false`` evaluates.

    ``ckpt_path`` is a ``.ckpt`` file, ``last`` (this job's ``checkpoints/last.ckpt``) or the
    directory of an earlier run, which resolves to its best checkpoint (``checkpoints/best-*``,
    or ``checkpoints/<stage>/best-*`` for one stage of a chained pipeline).
    """
    if not ckpt_path:
        raise ConfigError(
            KEY,
            "got null; train=false evaluates a checkpoint: give ckpt_path=<file.ckpt> or "
            "ckpt_path=<run directory> (its best checkpoint)",
        )
    if ckpt_path == "last":
        path = output_dir / "checkpoints" / "last.ckpt"
    else:
        path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise ConfigError(KEY, f"got {str(path)!r}: no such file or directory")
    if path.is_file():
        log.info("evaluating checkpoint %s", path)
        return path
    best = best_checkpoint_of(path, stage)
    log.info("evaluating checkpoint %s (the best checkpoint of run directory %s)", best, path)
    return best


def best_checkpoint_of(run_dir: Path, stage: str | None = None) -> Path:
    """The best checkpoint a run directory holds (the one its own test used)."""
    ckpt_dir = run_dir / "checkpoints"
    if stage:
        ckpt_dir = ckpt_dir / stage
    if not ckpt_dir.is_dir() and list(run_dir.glob("best-*.ckpt")):
        ckpt_dir = run_dir  # the checkpoints folder itself was given
    recorded = (read_json(run_dir / METRICS_FILE) or {}).get("metrics", {}).get("best_checkpoint")
    if not stage and recorded and Path(recorded).is_file():
        return Path(recorded)
    found = sorted(ckpt_dir.glob("best-*.ckpt"))
    if len(found) == 1:
        return found[0]
    if not found:
        where = f"{ckpt_dir}/best-*.ckpt"
        raise ConfigError(
            KEY,
            f"got {str(run_dir)!r}: a directory without a best checkpoint ({where}); give a "
            ".ckpt file instead",
        )
    newest = max(found, key=lambda p: p.stat().st_mtime)
    state = _load(newest)
    for key, value in (state.get("callbacks") or {}).items():
        best = value.get("best_model_path") if isinstance(value, dict) else None
        if "ModelCheckpoint" in str(key) and best and Path(best).name in {p.name for p in found}:
            return ckpt_dir / Path(best).name
    raise ConfigError(
        KEY,
        f"got {str(run_dir)!r}: several best checkpoints ({', '.join(p.name for p in found)}); "
        "give one of them as ckpt_path",
    )


def _load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ConfigError(
            KEY, f"got {str(path)!r}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ConfigError(KEY, f"got {str(path)!r}: not a Lightning checkpoint (no state_dict)")
    return state


def state_dict_of(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The weights a checkpoint holds (those under ``prefix``, without it)."""
    state = _load(path)["state_dict"]
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
