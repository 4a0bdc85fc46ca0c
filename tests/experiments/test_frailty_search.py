"""Architecture-search presets: regenerated identically, resolve to the sampled trials."""

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from experiments.frailty.search import best_job, render_preset
from models.frailty import sample_architectures

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name, n, cpu", [("frailty_arch", 8, False), ("frailty_arch_cpu", 2, True)]
)
def test_committed_presets_are_the_generators_output(name, n, cpu):
    path = ROOT / "conf" / "sweep" / f"{name}.yaml"
    cmd = f"python -m experiments.frailty.search write --n {n} --seed 0"
    cmd += " --cpu" * cpu + f" --out conf/sweep/{name}.yaml"
    assert path.read_text() == render_preset(n, 0, cpu, cmd), f"re-run: {cmd}"


def test_trial_override_selects_that_architecture():
    trials = sample_architectures(8, 0)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            ["+experiment=frailty", "+sweep=frailty_arch", "frailty_search.trial=t05"],
            return_hydra_config=True,
        )
    assert list(cfg.model.conv_filters) == trials[5]["conv_filters"]
    assert list(cfg.model.lstm_units) == trials[5]["lstm_units"]
    assert cfg.module.optimizer.lr == trials[5]["lr"] and cfg.module.l2 == trials[5]["l2"]
    assert cfg.hydra.sweeper.params["frailty_search.trial"] == ",".join(
        f"t{i:02d}" for i in range(8)
    )
    net = instantiate(cfg.model, _convert_="partial")
    assert [lstm.hidden_size for lstm in net.lstms] == trials[5]["lstm_units"]


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
