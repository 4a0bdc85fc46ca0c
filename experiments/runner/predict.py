"""``pipeline=predict``: apply a trained model to new files, the same way for every paper.

    python run.py +experiment=<paper> pipeline=predict ckpt_path=<checkpoint or run dir> \\
        predict.input=<file or folder> [predict.output=<dir>]

The checkpoint carries the training run's resolved config (``EmbedRunConfig``) and the
datamodule's state (normalisation statistics, class names, ...), so prediction needs neither
the training data nor the training config. The paper's ``predict.predictor`` (set in its
experiment preset) finds the input files, predicts one file at a time and writes the field's
formats; this module runs the loop: a progress bar over the files, a bad file skipped with its
name and reason while the others go on, a summary of what was written and what was skipped, and
a ``DataError`` (exit 2) when nothing could be predicted.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from core.checks import ConfigError
from core.errors import DataError
from experiments.runner.callbacks import EmbedRunConfig
from experiments.runner.checkpoints import resolve_checkpoint
from experiments.runner.context import RunContext

log = logging.getLogger(__name__)

SUMMARY_FILE = "predict_summary.json"
# A file that fails with one of these is a bad input: skipped and named, the others go on.
BAD_INPUT_ERRORS = (DataError, OSError, ValueError)


@dataclass
class TrainedModel:
    """A checkpoint ready to predict with: its run config, its raw dict and the module."""

    checkpoint: Path
    config: DictConfig  # the training run's resolved config
    raw: dict[str, Any] = field(repr=False)  # the checkpoint dict (datamodule state included)
    _module: L.LightningModule | None = field(default=None, repr=False)

    @property
    def module(self) -> L.LightningModule:
        """``config.module`` rebuilt with the checkpoint's weights (strict), in eval mode."""
        if self._module is None:
            if not self.config.get("module"):
                raise ConfigError("ckpt_path", f"{self.checkpoint}: its run config has no module")
            module = instantiate(self.config.module, _convert_="partial")
            try:
                module.load_state_dict(self.raw["state_dict"])
            except (KeyError, RuntimeError) as err:
                raise ConfigError(
                    "ckpt_path", f"{self.checkpoint} does not fit the model of its config: {err}"
                ) from err
            self._module = module.eval()
        return self._module

    def datamodule_state(self) -> dict[str, Any]:
        """What the training datamodule saved (``state_dict``) under its class name."""
        target = str(self.config.get("datamodule", {}).get("_target_", ""))
        name = target.rsplit(".", 1)[-1]
        state = self.raw.get(name)
        if not isinstance(state, dict) or not state:
            raise ConfigError(
                "ckpt_path",
                f"{self.checkpoint} holds no {name} state (normalisation statistics, class "
                "names): it was written before predict existed; retrain to use it with predict",
            )
        return state


class Predictor(Protocol):
    """What a paper's ``predict.predictor`` builds: ``predictor(trained, options)``."""

    def inputs(self, root: Path) -> list[Path]:
        """The files to predict under ``root`` (``root`` itself when it is a file)."""

    def predict(self, path: Path, out_dir: Path) -> list[Path]:
        """Predict one input file; return the files written. Raise ``DataError`` on a bad file."""

    def finish(self, out_dir: Path) -> list[Path]:
        """Write what spans all files (tables over nights, participants, ...)."""

    # Optional: ``choose_checkpoint(run_dir: Path, **its keys) -> Path`` (a classmethod or
    # staticmethod) picks the checkpoint of a run directory given as ckpt_path, for a chained
    # run whose model is not the run's best checkpoint (sd_mae: probe or fine-tune).


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A CSV of dict rows (columns in first-seen order): the per-file tables predictors write."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return path


def is_predict(cfg: DictConfig) -> bool:
    """True for ``pipeline=predict`` (which sets ``predict.enabled``)."""
    node = cfg.get("predict")
    return bool(node is not None and node.get("enabled", False))


def load_trained(ckpt: Path, map_location: str = "cpu") -> TrainedModel:
    """The checkpoint and the run config inside it (or beside it, for older checkpoints)."""
    try:
        raw = torch.load(ckpt, map_location=map_location, weights_only=False)
    except Exception as err:
        raise ConfigError("ckpt_path", f"{ckpt} is not a readable checkpoint ({err})") from err
    config = raw.get(EmbedRunConfig.KEY)
    if config is None:  # written before configs were embedded: use the run directory's copy
        beside = next((p / "config_resolved.yaml" for p in ckpt.parents if (p / "config_resolved.yaml").is_file()), None)  # fmt: skip
        if beside is None:
            raise ConfigError(
                "ckpt_path",
                f"{ckpt} carries no run config and no config_resolved.yaml lies above it",
            )
        config = OmegaConf.to_container(OmegaConf.load(beside))
    return TrainedModel(ckpt, OmegaConf.create(config), raw)


def predict(ctx: RunContext) -> dict[str, float]:
    """The pipeline behind ``pipeline=predict``."""
    opts = ctx.cfg.predict
    if not opts.get("input"):
        raise ConfigError("predict.input", "pipeline=predict needs predict.input=<file or folder>")
    source = Path(str(opts.input)).expanduser()
    if not source.exists():
        raise ConfigError("predict.input", f"got {str(source)!r}: no such file or folder")
    if not opts.get("predictor"):
        raise ConfigError(
            "predict.predictor",
            f"experiment {ctx.cfg.get('task_name')!r} defines no predictor for pipeline=predict",
        )
    factory = instantiate(opts.predictor)  # functools.partial(<paper's predictor>, **its keys)
    choose = getattr(getattr(factory, "func", factory), "choose_checkpoint", None)
    keys = dict(getattr(factory, "keywords", None) or {})
    pick = (lambda run_dir: choose(run_dir, **keys)) if choose is not None else None
    ckpt = resolve_checkpoint(ctx.cfg.get("ckpt_path"), needed_by="pipeline=predict", choose=pick)
    trained = load_trained(ckpt)
    log.info("predicting with %s", trained.checkpoint)
    out_dir = (
        Path(str(opts.output)).expanduser()
        if opts.get("output")
        else ctx.output_dir / "predictions"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor: Predictor = factory(trained=trained, options=opts)
    files = predictor.inputs(source)
    if not files:
        raise DataError(f"{source}: no input files found for this model")
    written: list[Path] = []
    done: list[str] = []
    skipped: dict[str, str] = {}
    for path in tqdm(files, desc="predict", unit="file"):  # no inference_mode: a GP fits here
        try:
            written += predictor.predict(path, out_dir)
            done.append(str(path))
        except BAD_INPUT_ERRORS as err:
            skipped[str(path)] = f"{type(err).__name__}: {err}"
            log.warning("skipped %s: %s", path, err)
    if done:
        written += predictor.finish(out_dir)
    summary = {
        "checkpoint": str(trained.checkpoint),
        "input": str(source),
        "output": str(out_dir),
        "predicted": done,
        "skipped": skipped,
        "written": [str(p) for p in written],
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    log.info(
        "predict: %d of %d files predicted, %d skipped, %d files written to %s",
        len(done), len(files), len(skipped), len(written), out_dir,
    )  # fmt: skip
    for path, why in skipped.items():
        log.info("  skipped %s: %s", path, why)
    if not done:
        raise DataError(
            f"{source}: nothing could be predicted ({len(skipped)} of {len(files)} files skipped; "
            f"reasons in {out_dir / SUMMARY_FILE})"
        )
    return {"predict/files": float(len(done)), "predict/skipped": float(len(skipped))}
