"""Architecture search: an Optuna RandomSampler sweep over mcfly's ranges, and its ranking."""

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from experiments.frailty.search import best_job
from models.frailty import McflyDeepConvLSTMSpace

ROOT = Path(__file__).resolve().parents[2]


def _compose(overrides):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides, return_hydra_config=True)


@pytest.mark.parametrize("name", ["frailty_arch", "frailty_arch_cpu"])
def test_optuna_random_search_draws_mcflys_ranges(name):
    """The sweep is hydra-optuna-sweeper's RandomSampler over exactly mcfly's ranges."""
    cfg = _compose(["+experiment=frailty", f"+sweep={name}"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.RandomSampler"
    space = McflyDeepConvLSTMSpace()
    params = dict(sweeper.params)
    layers = f"int(interval({space.min_conv_layers}, {space.max_conv_layers}))"
    assert params.pop("frailty_search.conv_layers") == layers
    layers = f"int(interval({space.min_lstm_layers}, {space.max_lstm_layers}))"
    assert params.pop("frailty_search.lstm_layers") == layers
    for i in range(1, space.max_conv_layers + 1):
        assert params.pop(f"frailty_search.conv_{i}") == "int(interval(10, 100))"
    for i in range(1, space.max_lstm_layers + 1):
        assert params.pop(f"frailty_search.lstm_{i}") == "int(interval(10, 100))"
    assert params.pop("frailty_search.lr") == "tag(log, interval(1e-4, 1e-1))"  # 10^-U(1,4)
    assert params.pop("frailty_search.l2") == "tag(log, interval(1e-4, 1e-1))"
    assert not params and cfg.optimized_metric == "val/acc_best"


def test_a_drawn_trial_builds_that_architecture():
    draw = ["frailty_search.conv_layers=2", "frailty_search.conv_1=17", "frailty_search.conv_2=88"]
    draw += ["frailty_search.lstm_layers=3", "frailty_search.lstm_3=61", "frailty_search.lr=0.02"]
    cfg = _compose(["+experiment=frailty", "+sweep=frailty_arch", *draw])
    net = instantiate(cfg.model, _convert_="partial").build(6)
    convs = [m.out_channels for m in net.conv if isinstance(m, torch.nn.Conv2d)]
    assert convs == [17, 88] and [m.hidden_size for m in net.lstms] == [29, 95, 61]
    assert cfg.module.optimizer.lr == 0.02 and cfg.module.l2 == 4e-4
    default = instantiate(_compose(["+experiment=frailty", "+sweep=frailty_arch"]).model)
    assert default.lstm_units == [29, 95, 94, 46] and default.conv_filters == [54]  # the paper's


def test_best_job_ranks_on_validation(tmp_path):
    for job, (val, test) in enumerate([(0.6, 0.9), (0.8, 0.5), (0.7, 0.7)]):
        d = tmp_path / str(job)
        d.mkdir()
        rec = {"status": "ok", "overrides": [f"frailty_search.trial=t0{job}"]}
        rec["metrics"] = {"val/acc_best": val, "test/acc": test}
        (d / "metrics.json").write_text(json.dumps(rec))
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "metrics.json").write_text(json.dumps({"status": "failed"}))
    rows = best_job(tmp_path)
    assert [r["job"] for r in rows] == ["1", "2", "0"]  # by validation, not by test


def test_gstride_datamodule_leaves_every_unknown_name_mandatory():
    """A ??? merged over defaults would keep the default; the GSTRIDE file must not inherit."""
    from omegaconf import OmegaConf

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", ["+experiment=frailty", "datamodule=frailty/gstride"])
    assert OmegaConf.is_missing(cfg.datamodule, "data_dir")
    for key in ("participants_file", "id_column", "score_column", "recording_pattern"):
        assert OmegaConf.is_missing(cfg.datamodule.schema, key), key
    assert OmegaConf.is_missing(cfg.datamodule.schema, "channel_columns")
