"""A fingerprint of the settings that decide a job's numbers, stored in ``metrics.json``.

Rerunning a sweep into its directory with ``ckpt_path=last`` skips finished jobs. Without a
fingerprint a job finished under other settings (20 epochs, lr 1e-3) was skipped and then
reported under the new ones (30 epochs, lr 3e-3). The fingerprint leaves out what does not change
a number: where files go (``paths``, output and data directories), the launcher (``hydra``)
and the accelerator, how to resume (``resume``, ``ckpt_path``), loggers, the progress bar, printing and the sweep report.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from core.checks import ConfigError

# top-level keys that never change a number (debug is already merged into trainer & co.)
EXCLUDED_TOP = (
    "hydra", "paths", "resume", "ckpt_path", "logger", "print_config", "tags", "debug",
    "report", "optimized_metric",
)  # fmt: skip
# keys (at any depth) that name a location, not a setting
EXCLUDED_LEAVES = ("data_dir", "dirpath", "default_root_dir", "save_dir", "output_dir", "log_dir")
# the progress bar and summary print; the accelerator says where it runs (like the launcher:
# `auto` and `cpu` on a CPU machine are the same run)
EXCLUDED_PATHS = (
    "callbacks.progress_bar", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.accelerator",
)  # fmt: skip
# interpolations that make a value a location
LOCATION_REFS = ("${paths.", "${hydra:", "${launch_dir:", "${now:", "${run_dir_or:")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        if not node and prefix:
            out[prefix[:-1]] = {}
        return out
    return {prefix[:-1]: node}


def _excluded(key: str, raw: Any) -> bool:
    if key.split(".", 1)[0] in EXCLUDED_TOP or key.rsplit(".", 1)[-1] in EXCLUDED_LEAVES:
        return True
    if any(key == p or key.startswith(p + ".") for p in EXCLUDED_PATHS):
        return True
    return isinstance(raw, str) and any(ref in raw for ref in LOCATION_REFS)


def hashed_config(cfg: DictConfig) -> dict[str, Any]:
    """``{"module.optimizer.lr": 0.001, ...}``: the resolved settings the fingerprint covers."""
    keys = [k for k in cfg if k not in EXCLUDED_TOP]
    masked = OmegaConf.masked_copy(cfg, keys)
    raw = _flatten(OmegaConf.to_container(masked, resolve=False))
    try:
        resolved = _flatten(OmegaConf.to_container(masked, resolve=True))
    except Exception:  # an unresolvable value: fingerprint its expression instead
        resolved = raw
    return {
        k: json.loads(json.dumps(resolved.get(k, v), default=str))
        for k, v in raw.items()
        if not _excluded(k, v)
    }


def config_hash(flat: dict[str, Any]) -> str:
    blob = json.dumps(flat, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def differing_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Keys whose value differs (or that exist on one side only), sorted."""
    return sorted(
        k for k in set(old) | set(new) if old.get(k, "<absent>") != new.get(k, "<absent>")
    )


def mismatch_error(
    old: dict[str, Any] | None, new: dict[str, Any], where: str, what: str = "finished"
) -> ConfigError:
    """The error for a job directory that holds a run made with other settings."""
    if old is None:
        return ConfigError(
            "ckpt_path",
            f"{where} holds a {what} run without a config fingerprint (written by an older "
            "runner), so it cannot tell whether the settings match; rerun into a new directory",
        )
    keys = differing_keys(old, new)
    shown = "; ".join(
        f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in keys[:8]
    )
    more = f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
    return ConfigError(
        ", ".join(keys[:8]) + more,
        f"differ from the {what} run in {where} ({shown}); rerun with its settings to "
        "reuse it, or write into a new directory (drop ckpt_path=last / resume, or a new "
        "hydra.sweep.dir)",
    )


def _is_fault_injector(key: str, flat: dict[str, Any]) -> bool:
    """``callbacks.<name>.*`` of a ``FailAtEpoch``: simulates a crash, changes no number."""
    parts = key.split(".")
    if len(parts) < 3 or parts[0] != "callbacks":
        return False
    target = flat.get(f"callbacks.{parts[1]}._target_", "")
    return str(target).endswith("callbacks.FailAtEpoch")


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """``hashed_config`` without fault-injection callbacks (a crash test resumes without them)."""
    flat = hashed_config(cfg)
    return {k: v for k, v in flat.items() if not _is_fault_injector(k, flat)}


def reusable_run(
    previous: dict[str, Any] | None, flat: dict[str, Any], resuming: bool, where: str
) -> dict[str, Any] | None:
    """The finished record to reuse (the job is skipped), or None (the job runs).

    Only when resuming (``ckpt_path=last`` / ``resume=``) is an earlier run in the directory
    reused or continued, and only if it was made with the same settings; otherwise a
    ``ConfigError`` names the keys that differ.
    """
    if not resuming or previous is None:
        return None
    finished = previous.get("status") == "ok"
    old = previous.get("config")
    if old is None and not finished:
        return None  # an attempt that failed before it recorded its settings
    if old is None or old != flat:
        raise mismatch_error(old, flat, where, "finished" if finished else "interrupted")
    return previous if finished else None
