"""Typed checks of the composed config, run before anything is built or read.

Hydra types nothing: ``seed=abc`` or ``trainer.max_epochs=abc`` compose fine and used to fail
minutes later (after the data was read) with a bare traceback. These checks cover the top-level
keys every experiment shares and the Trainer's arguments; component arguments are checked by
their constructors (``core.checks``). Each failure is a ``ConfigError``: key, value, what is
allowed.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from core.checks import ConfigError
from experiments.runner.resolvers import run_dir_or

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu", "xla")
PRECISIONS = (
    "64-true", "64", 64, "32-true", "32", 32, "16-mixed", "16-true", "16", 16,
    "bf16-mixed", "bf16-true", "bf16", "transformer-engine", "transformer-engine-float16", None,
)  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(key: str, value: Any, low: int | None = None, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not _is_int(value) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        none = " or null" if optional else ""
        raise ConfigError(key, f"got {value!r}; expected an integer{bound}{none}")


def _bool(key: str, value: Any, optional: bool = False) -> None:
    if (value is None and optional) or isinstance(value, bool):
        return
    raise ConfigError(key, f"got {value!r}; expected true or false")


def _str(key: str, value: Any, optional: bool = True) -> None:
    if (value is None and optional) or isinstance(value, str):
        return
    raise ConfigError(key, f"got {value!r}; expected a string{' or null' if optional else ''}")


def _batches(key: str, value: Any) -> None:
    """``limit_*_batches`` / ``overfit_batches``: a count (int >= 0) or a fraction in [0, 1]."""
    if value is None or (_is_int(value) and value >= 0):
        return
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return
    raise ConfigError(
        key, f"got {value!r}; expected a batch count (int >= 0) or a fraction in [0, 1]"
    )


def _devices(value: Any) -> None:
    """Lightning's forms: a count >= 1, -1 / "auto" (all), "0,1" or [0, 1] (indices)."""
    if isinstance(value, str) and "," in value:
        ok = all(p.strip().isdigit() for p in value.split(",") if p.strip())
    elif isinstance(value, str):
        ok = value == "auto" or value.strip() == "-1" or (value.isdigit() and int(value) > 0)
    elif _is_int(value):
        ok = value > 0 or value == -1
    elif isinstance(value, (list, tuple, ListConfig)):
        ok = len(value) > 0 and all(_is_int(v) and v >= 0 for v in value)
    else:
        ok = False
    if not ok:
        raise ConfigError(
            "trainer.devices",
            f"got {value!r}; allowed values: a number of devices >= 1, -1 or 'auto' (all), "
            "or device indices such as [0, 1]",
        )


def trainer_arguments() -> list[str]:
    """Names ``lightning.Trainer`` accepts (what ``trainer.<key>`` may be)."""
    import lightning as L

    return [p for p in inspect.signature(L.Trainer.__init__).parameters if p != "self"]


def close_matches(word: str, candidates: list[str]) -> str:
    """`` (did you mean: a, b?)`` or an empty string."""
    found = difflib.get_close_matches(word, candidates, n=3, cutoff=0.6)
    return f" (did you mean: {', '.join(found)}?)" if found else ""


def check_trainer(trainer: DictConfig) -> None:
    """Types and ranges of the Trainer's arguments, and no unknown ones."""
    allowed = trainer_arguments()
    for key in trainer:
        if key in ("_target_", "_partial_", "_convert_", "_recursive_"):
            continue
        if key not in allowed:
            raise ConfigError(
                f"trainer.{key}",
                f"not an argument of lightning.Trainer{close_matches(str(key), allowed)}",
            )
    get = trainer.get
    if get("accelerator") not in ACCELERATORS and not str(get("accelerator", "")).startswith("_"):
        raise ConfigError(
            "trainer.accelerator",
            f"got {get('accelerator')!r}; allowed values: {', '.join(ACCELERATORS)}",
        )
    _devices(get("devices", "auto"))
    _int("trainer.num_nodes", get("num_nodes", 1), low=1)
    if get("precision") not in PRECISIONS:
        allowed_p = ", ".join(str(p) for p in PRECISIONS if isinstance(p, str) and "-" in p)
        raise ConfigError(
            "trainer.precision", f"got {get('precision')!r}; allowed values: {allowed_p}"
        )
    _int("trainer.max_epochs", get("max_epochs"), low=-1, optional=True)
    _int("trainer.min_epochs", get("min_epochs"), low=0, optional=True)
    _int("trainer.max_steps", get("max_steps", -1), low=-1)
    _int("trainer.min_steps", get("min_steps"), low=0, optional=True)
    _int("trainer.check_val_every_n_epoch", get("check_val_every_n_epoch"), low=1, optional=True)
    _int("trainer.log_every_n_steps", get("log_every_n_steps"), low=1, optional=True)
    _int("trainer.accumulate_grad_batches", get("accumulate_grad_batches", 1), low=1)
    _int("trainer.num_sanity_val_steps", get("num_sanity_val_steps"), low=-1, optional=True)
    for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches",
                 "limit_predict_batches", "overfit_batches"):  # fmt: skip
        _batches(f"trainer.{name}", get(name))
    fdr = get("fast_dev_run", False)
    if not (isinstance(fdr, bool) or (_is_int(fdr) and fdr >= 0)):
        raise ConfigError(
            "trainer.fast_dev_run", f"got {fdr!r}; expected true, false or a batch count >= 0"
        )
    vci = get("val_check_interval")
    ok_vci = vci is None or (_is_int(vci) and vci >= 1) or (isinstance(vci, float) and 0 < vci <= 1)
    if not ok_vci and not isinstance(vci, (str, DictConfig)):  # str/dict: a time interval
        raise ConfigError(
            "trainer.val_check_interval",
            f"got {vci!r}; expected a number of training batches (int >= 1), a fraction of the "
            "epoch in (0, 1] or null",
        )
    gcv = get("gradient_clip_val")
    if gcv is not None and (not _is_number(gcv) or gcv < 0):
        raise ConfigError(
            "trainer.gradient_clip_val", f"got {gcv!r}; expected a number >= 0 or null"
        )
    det = get("deterministic")
    if det not in (None, True, False, "warn"):
        raise ConfigError(
            "trainer.deterministic", f"got {det!r}; allowed values: true, false, 'warn'"
        )
    for name in (
        "enable_checkpointing",
        "enable_progress_bar",
        "enable_model_summary",
        "benchmark",
    ):
        _bool(f"trainer.{name}", get(name), optional=True)


def check_config(cfg: DictConfig, experiments: list[str] | None = None) -> None:
    """Fail with a ``ConfigError`` on the first mistyped or out-of-range shared key.

    ``experiments``: the available ``+experiment`` presets, listed when none was chosen.
    """
    if cfg.get("module") is None and cfg.get("datamodule") is None:
        names = ", ".join(experiments or []) or "see conf/experiment/"
        raise ConfigError(
            "experiment",
            f"no experiment chosen; run `python run.py +experiment=<name>` with one of: {names}",
        )
    _int("seed", cfg.get("seed"), low=0)
    _str("task_name", cfg.get("task_name"), optional=False)
    for key in ("train", "test", "print_config", "flush_denormals"):
        _bool(key, cfg.get(key, True))
    _str("optimized_metric", cfg.get("optimized_metric"))
    _str("ckpt_path", cfg.get("ckpt_path"))
    _str("resume", cfg.get("resume"))
    if not cfg.get("train", True) and not cfg.get("test", True):
        raise ConfigError("train", "train=false and test=false: nothing to run")
    if cfg.get("resume"):
        run_dir_or(
            cfg.resume, ""
        )  # an earlier run's directory, also with an explicit hydra.run.dir
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "last") and not Path(ckpt).expanduser().exists():
        raise ConfigError("ckpt_path", f"got {ckpt!r}: no such file or directory")
    if cfg.get("trainer") is not None:
        check_trainer(cfg.trainer)
