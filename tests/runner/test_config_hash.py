"""The config fingerprint in metrics.json: what it covers, and when a finished job is reused."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

import experiments.runner  # noqa: F401  (registers the resolvers the configs use)
from core.checks import ConfigError
from experiments.runner.confighash import config_hash, fingerprint, reusable_run
from tests.helpers import ROOT


def _flat(*overrides: str) -> dict:
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=sleep_tsr", *overrides])
    return fingerprint(cfg)


def test_fingerprint_covers_settings_not_locations_or_loggers():
    base = _flat("paths.output_dir=/a/run")
    assert base["loss.gamma"] == 0.0001 and base["trainer.max_epochs"] == 3
    assert base["module.optimizer.lr"] == 0.001 and base["seed"] == 42
    moved = _flat(
        "paths.output_dir=/b/other",
        "paths.data_dir=/elsewhere",
        "logger=csv",
        "callbacks.progress_bar.refresh_rate=0",
        "ckpt_path=last",
        "hydra/launcher=joblib",
        "trainer.accelerator=cpu",
        "print_config=false",
        "+callbacks.crash._target_=experiments.runner.callbacks.FailAtEpoch",
        "+callbacks.crash.epoch=1",
    )
    assert moved == base and config_hash(moved) == config_hash(base)
    changed = _flat("paths.output_dir=/a/run", "loss.gamma=0.01", "trainer.max_epochs=30")
    assert config_hash(changed) != config_hash(base)
    assert {k for k in base if base[k] != changed[k]} == {"loss.gamma", "trainer.max_epochs"}


def test_a_finished_job_is_reused_only_with_the_same_settings():
    flat = {"seed": 1, "trainer.max_epochs": 20, "module.optimizer.lr": 0.001}
    done = {"status": "ok", "config": dict(flat), "config_hash": config_hash(flat), "metrics": {}}
    assert reusable_run(done, dict(flat), resuming=True, where="d") == done
    assert reusable_run(done, dict(flat), resuming=False, where="d") is None  # a fresh run
    new = flat | {"trainer.max_epochs": 30, "module.optimizer.lr": 0.003}
    with pytest.raises(ConfigError) as err:
        reusable_run(done, new, resuming=True, where="d")
    assert str(err.value).startswith("module.optimizer.lr, trainer.max_epochs: differ from the")
    assert "trainer.max_epochs: 20 -> 30" in str(err.value)
    interrupted = done | {"status": "failed"}
    assert reusable_run(interrupted, dict(flat), resuming=True, where="d") is None  # resumes
    with pytest.raises(ConfigError, match="interrupted run"):
        reusable_run(interrupted, new, resuming=True, where="d")
    with pytest.raises(ConfigError, match="without a config fingerprint"):
        reusable_run({"status": "ok", "metrics": {}}, flat, resuming=True, where="d")
