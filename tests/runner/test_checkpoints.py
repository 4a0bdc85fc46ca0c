"""``ckpt_path=<run dir>`` resolves to the same file for evaluate and predict, in one order."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from core.checks import ConfigError
from experiments.runner.checkpoints import resolve_checkpoint
from experiments.runner.evaluate import eval_checkpoint


def _ckpt(path: Path, mtime: float, callbacks: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "callbacks": callbacks or {}}, path)
    os.utime(path, (mtime, mtime))
    return path


def _both(ckpt_path, **kwargs) -> Path:
    """The file evaluate picks, checked to be the one predict picks."""
    evaluated = eval_checkpoint(str(ckpt_path), Path("/nonexistent"), **kwargs)
    assert resolve_checkpoint(str(ckpt_path), needed_by="pipeline=predict", **kwargs) == evaluated
    return evaluated


def test_best_then_last_then_newest(tmp_path):
    ckpts = tmp_path / "checkpoints"
    other = _ckpt(ckpts / "reference_cnn_cm.ckpt", 100)
    assert _both(tmp_path) == other  # only a pipeline's own file: the newest *.ckpt
    last = _ckpt(ckpts / "last.ckpt", 50)
    assert _both(tmp_path) == last  # last.ckpt before other files, even older ones
    best = _ckpt(ckpts / "best-001-000010.ckpt", 10)
    assert _both(tmp_path) == best  # the best checkpoint before everything
    assert _both(ckpts) == best  # the checkpoints folder itself
    assert _both(last) == last  # a file is itself


def test_several_best_recorded_or_named_by_the_callback(tmp_path):
    ckpts = tmp_path / "checkpoints"
    old = _ckpt(ckpts / "best-001-000010.ckpt", 10)
    state = {"ModelCheckpoint{'monitor': 'val/acc'}": {"best_model_path": str(old)}}
    _ckpt(ckpts / "best-002-000020.ckpt", 20, callbacks=state)
    assert _both(tmp_path) == ckpts / old.name  # the newest one's callback names the best
    (tmp_path / "metrics.json").write_text(
        json.dumps({"metrics": {"best_checkpoint": str(ckpts / "best-002-000020.ckpt")}})
    )
    assert _both(tmp_path).name == "best-002-000020.ckpt"  # what the run's own test used


def test_ambiguous_best_is_an_error(tmp_path):
    for i, name in enumerate(("best-001.ckpt", "best-002.ckpt")):
        _ckpt(tmp_path / "checkpoints" / name, 10 + i)
    with pytest.raises(ConfigError, match="several best checkpoints .*best-001.ckpt, best-002"):
        _both(tmp_path)


def test_stage_folder(tmp_path):
    probe = _ckpt(tmp_path / "checkpoints" / "probe" / "best-003.ckpt", 10)
    _ckpt(tmp_path / "checkpoints" / "finetune0" / "last.ckpt", 10)
    assert _both(tmp_path, stage="probe") == probe
    assert _both(tmp_path, stage="finetune0").name == "last.ckpt"


def test_nothing_found_lists_what_is_there(tmp_path):
    (tmp_path / "checkpoints" / "probe").mkdir(parents=True)
    (tmp_path / "checkpoints" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError) as err:
        resolve_checkpoint(str(tmp_path), needed_by="pipeline=predict")
    msg = str(err.value)
    assert msg.startswith("ckpt_path: got") and "no checkpoint in" in msg
    assert "found: checkpoints/notes.txt, checkpoints/probe/" in msg
    with pytest.raises(ConfigError, match="no such file or directory"):
        resolve_checkpoint(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="got null; pipeline=predict needs a checkpoint"):
        resolve_checkpoint(None, needed_by="pipeline=predict")
