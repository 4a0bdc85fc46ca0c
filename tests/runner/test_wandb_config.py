"""wandb gets the resolved config as plain values (no object reprs, nothing built twice)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from tests.helpers import ROOT
from tests.runner.wandb_records import offline_config, strings


def test_sleep_tsr_config_reaches_wandb_as_values(tmp_path, monkeypatch):
    import wandb

    import experiments.runner  # noqa: F401  (registers the resolvers the configs use)
    from experiments.runner.builders import build_loggers

    monkeypatch.setenv("WANDB_MODE", "offline")
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["+experiment=sleep_tsr", "loss.gamma=0.01", f"paths.output_dir={tmp_path}"],
        )
    built: list[str] = []  # what Hydra builds: the loggers, not a second module or Trainer
    monkeypatch.setattr("hydra._internal.instantiate._instantiate2._call_target", _recording(built))
    loggers = build_loggers(cfg, Path(tmp_path), None)
    (wb,) = [lg for lg in loggers if type(lg).__name__ == "WandbLogger"]
    assert wb.experiment is not None  # starts the offline run with the config
    wandb.finish()

    assert all("WandbLogger" in t or "CSVLogger" in t for t in built), built
    config = offline_config(tmp_path)
    assert config["loss"]["gamma"] == 0.01
    assert config["module"]["optimizer"]["lr"] == 0.001
    assert config["trainer"]["max_epochs"] == 3
    assert config["trainer"]["val_check_interval"] == 40
    assert config["seed"] == 42
    assert config["datamodule"]["num_subjects"] == 8
    assert config["model"]["_target_"].endswith("SeqSleepNet")
    assert not [s for s in strings(config) if " object at 0x" in s or s.startswith("<")]


def _recording(built: list[str]):
    from hydra._internal.instantiate import _instantiate2

    original = _instantiate2._call_target

    def call(_target_, _partial_, args, kwargs, full_key):
        built.append(getattr(_target_, "__name__", str(_target_)))
        return original(_target_, _partial_, args, kwargs, full_key)

    return call
