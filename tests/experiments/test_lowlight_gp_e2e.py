"""End-to-end runs of the lowlight_gp experiment through run.py (tiny shapes, CPU)."""

from __future__ import annotations

import csv
import json

import pytest

from tests.helpers import run_experiment, run_sweep

TINY = [
    "+experiment=lowlight_gp",
    "logger=csv",
    "trainer.max_epochs=1",
    "datamodule.eval_size=64",
    "datamodule.crop_size=32",
    "datamodule.n_test=1",
    "datamodule.train_samples=16",
    "datamodule.val_samples=8",
    "datamodule.batch_size=8",
    "model.widths=[8,8]",
    "lowlight.enhancer.k=20",
    "lowlight.enhancer.gp_iterations=10",
    "lowlight.levels=[0,12]",
    "lowlight.figures.ks=[5,20]",
]


def test_lowlight_gp_run_writes_metrics_images_and_figures(tmp_path):
    _, run_dir = run_experiment(TINY, tmp_path)
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok"
    m = record["metrics"]
    for key in ("psnr", "precision", "recall", "f1", "time", "time_cnn", "time_cluster",
                "time_gp_fit", "time_predict", "dark_psnr"):  # fmt: skip
        assert f"test/{key}" in m, key
    assert m["test/psnr"] > m["test/dark_psnr"]  # the enhancer brightens
    # PSNR per darkening level: the original (gamma 1) and the one darkened level
    assert {"test/psnr_g1.00", "test/psnr_g4.29", "test/dark_psnr_g4.29"} <= set(m)
    assert 0 <= m["test/precision"] <= 1 and 0 <= m["test/f1"] <= 1
    rows = list(csv.DictReader((run_dir / "per_image.csv").open()))
    assert [float(r["gamma"]) for r in rows] == [1.0, 4.2917]
    assert (run_dir / "figures" / "grid.png").stat().st_size > 1000
    assert (run_dir / "figures" / "psnr_time_vs_k.png").exists()
    assert len(list((run_dir / "enhanced").glob("*.png"))) == 2
    assert len(list((run_dir / "lowlight").glob("*.png"))) == 2  # embedded low-light folder
    assert (run_dir / "reference_cnn_cm.pt").exists() and (run_dir / "reference_cnn_lm.pt").exists()


def test_lowlight_gp_bad_k_is_a_config_error(tmp_path):
    proc, _ = run_experiment(
        [*TINY, "lowlight.enhancer.k=5000", "lowlight.figures.enabled=false"], tmp_path, check=False
    )
    assert proc.returncode == 2
    assert "lowlight.enhancer.k" in proc.stdout + proc.stderr


def test_lowlight_gp_missing_gpe_cnn_is_a_config_error(tmp_path):
    # In-process (the runner's exit code 2 for a ConfigError is the test above): the check
    # runs in resolve_settings, before the datamodule reads anything.
    from omegaconf import OmegaConf

    from core.checks import ConfigError
    from experiments.lowlight_gp.pipeline import resolve_settings

    exp = OmegaConf.load("conf/experiment/lowlight_gp.yaml")
    ll = OmegaConf.to_container(exp.lowlight, resolve=False)
    ll.update(reference_cnn="gpe", gpe_cnn=str(tmp_path / "none.mat"))
    ll["enhancer"]["mode"] = "cm"
    ll["enhancer"]["seed"] = 0
    with pytest.raises(ConfigError, match="lowlight.gpe_cnn"):
        resolve_settings(OmegaConf.create({"lowlight": ll}))
    ll["reference_cnn"] = "srcnn"
    with pytest.raises(ConfigError, match="lowlight.reference_cnn"):
        resolve_settings(OmegaConf.create({"lowlight": ll}))


@pytest.mark.slow
def test_lowlight_methods_sweep_gives_the_table_iii_rows(tmp_path):
    base = [o for o in TINY if not o.startswith("lowlight.levels")]
    overrides = [*base, "+sweep=lowlight_gp_methods_cpu", "lowlight.levels=[12]"]
    _, sweep_dir = run_sweep(overrides, tmp_path)
    table = (sweep_dir / "summary.md").read_text()
    for row in ("dark", "lime", "gpe", "lm_k200", "cm_k30"):
        assert row in table
    assert "(paper)" in table
