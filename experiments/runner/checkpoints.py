"""``ckpt_path=<file | run dir | last>`` -> one checkpoint file, the same way for every command.

``train=false`` (evaluate) and ``pipeline=predict`` both take a run directory; they used to
resolve it differently (evaluate: the best checkpoint or an error; predict: best, else last,
else the newest file), so the two could use different weights of the same run. One order here:

1. the run's best checkpoint: the one its ``metrics.json`` records as ``best_checkpoint`` (what
   its own test used), else the only ``best-*.ckpt``, else the one its ``ModelCheckpoint``
   state names when several are left (a rerun into the same directory);
2. ``last.ckpt`` (the newest state: a run that never validated, e.g. under ``debug=...``);
3. the newest other ``*.ckpt`` (a pipeline's own file, e.g. ``reference_cnn_cm.ckpt``).

Nothing found is one ``ConfigError`` naming ``ckpt_path`` and listing what the folder holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from core.checks import ConfigError
from experiments.runner.io import METRICS_FILE, read_json

log = logging.getLogger(__name__)

KEY = "ckpt_path"
BEST_GLOB = "best-*.ckpt"
LAST = "last.ckpt"


def resolve_checkpoint(
    ckpt_path: str | Path | None,
    output_dir: Path | None = None,
    stage: str | None = None,
    needed_by: str = "train=false",
    choose: Callable[[Path], Path] | None = None,
) -> Path:
    """The checkpoint file ``ckpt_path`` names (see the module docstring for the order).

    ``last`` is this job's ``<output_dir>/checkpoints/last.ckpt``; ``stage`` picks one stage's
    folder of a chained pipeline (``checkpoints/<stage>/``); ``needed_by`` names the command in
    the error when ``ckpt_path`` is null; ``choose(run_dir)`` picks in a run directory instead
    (a predictor's ``choose_checkpoint``: sd_mae's probe or fine-tune stage).
    """
    if not ckpt_path:
        raise ConfigError(
            KEY,
            f"got null; {needed_by} needs a checkpoint: give ckpt_path=<file.ckpt> or "
            "ckpt_path=<run directory> (its best checkpoint)",
        )
    if str(ckpt_path) == "last" and output_dir is not None:
        path = Path(output_dir) / "checkpoints" / LAST
    else:
        path = Path(str(ckpt_path)).expanduser()
    if not path.exists():
        raise ConfigError(KEY, f"got {str(path)!r}: no such file or directory")
    if path.is_file():
        log.info("using checkpoint %s", path)
        return path
    if choose is not None:
        return choose(path)
    ckpt_dir = checkpoint_dir(path, stage)
    found = sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else []
    best = [p for p in found if p.match(BEST_GLOB)]
    if best:
        chosen = _best_of(path, ckpt_dir, best, stage)
        why = "the best checkpoint"
    elif (ckpt_dir / LAST) in found:
        chosen, why = ckpt_dir / LAST, "no best checkpoint: its last checkpoint"
    elif found:
        chosen = max(found, key=lambda p: p.stat().st_mtime)
        why = "no best or last checkpoint: its newest checkpoint"
    else:
        raise ConfigError(KEY, f"got {str(path)!r}: no checkpoint in {ckpt_dir} ({_listing(path)})")
    log.info("using checkpoint %s (%s of run directory %s)", chosen, why, path)
    if not best:
        log.warning("%s has no %s: using %s", ckpt_dir, BEST_GLOB, chosen.name)
    return chosen


def checkpoint_dir(run_dir: Path, stage: str | None = None) -> Path:
    """``<run_dir>/checkpoints[/<stage>]``, or ``run_dir`` itself when it is that folder."""
    base = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    return base / stage if stage else base


def _best_of(run_dir: Path, ckpt_dir: Path, best: list[Path], stage: str | None) -> Path:
    """One of several ``best-*.ckpt``: the recorded one, the only one, or the callback's."""
    record = read_json(run_dir / METRICS_FILE) or {}
    recorded = (record.get("metrics") or {}).get("best_checkpoint")
    if not stage and recorded and Path(recorded).resolve() in {p.resolve() for p in best}:
        return Path(recorded)
    if len(best) == 1:
        return best[0]
    newest = max(best, key=lambda p: p.stat().st_mtime)
    for key, value in (load_checkpoint(newest).get("callbacks") or {}).items():
        name = Path(value.get("best_model_path") or "").name if isinstance(value, dict) else ""
        if "ModelCheckpoint" in str(key) and name in {p.name for p in best}:
            return ckpt_dir / name
    raise ConfigError(
        KEY,
        f"got {str(run_dir)!r}: several best checkpoints ({', '.join(p.name for p in best)}) "
        "and none recorded as the best; give one of them as ckpt_path",
    )


def _listing(run_dir: Path, limit: int = 12) -> str:
    """What a run directory holds where a checkpoint was expected (for the error message)."""
    names = []
    for sub in (run_dir / "checkpoints", run_dir):
        if sub.is_dir():
            names += [str(p.relative_to(run_dir)) + ("/" if p.is_dir() else "") for p in sorted(sub.iterdir())]  # fmt: skip
            break
    if not names:
        return "it is empty"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return "found: " + ", ".join(names[:limit]) + more


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict; an unreadable file or one without ``state_dict`` is a ConfigError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise ConfigError(
            KEY, f"got {str(path)!r}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ConfigError(KEY, f"got {str(path)!r}: not a Lightning checkpoint (no state_dict)")
    return state
