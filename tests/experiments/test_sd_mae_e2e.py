"""The SD-MAE presets through the real CLI (tests/helpers.py), on tiny embedded tiles."""

import json

import pytest
import torch

from experiments.sd_mae.checkpoint import save_encoder
from experiments.sd_mae.figures import compare_sweep
from models.sd_mae import ViTEncoder
from tests.helpers import config_error_in_process, run_experiment, run_sweep

TINY = [
    "+experiment=sd_mae",
    "logger=csv",
    "print_config=false",
    "datamodule.embedded_n_train=6",
    "datamodule.embedded_n_test=2",
    "datamodule.embedded_tile_size=32",
    "datamodule.img_size=16",
    "datamodule.batch_size=8",
    "datamodule.val_fraction=0.2",
    "model.patch_size=4",
    "model.embed_dim=32",
    "model.depth=1",
    "model.num_heads=2",
    "model.decoder_dim=16",
    "model.decoder_depth=1",
    "model.decoder_heads=2",
    "module.objective.head_hidden_dim=16",
    "module.objective.head_bottleneck_dim=8",
    "module.objective.head_out_dim=32",
    "pipeline.pretrain_epochs=1",
    "pipeline.probe_epochs=1",
    "pipeline.finetune_epochs=1",
    "pipeline.figure_images=2",
]


def _metrics(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow  # ~30 s on an idle 2-core machine
def test_chain_pretrain_probe_finetune(tmp_path):
    _, run_dir = run_experiment([*TINY, "pipeline.n_finetunes=2"], tmp_path)
    rec = _metrics(run_dir)
    assert rec["status"] == "ok"
    m = rec["metrics"]
    for key in (
        "test/acc",
        "test/acc_std",
        "test/acc_ft0",
        "test/acc_ft1",
        "test/probe_acc",
        "test/probe_acc_random",
        "test/kappa",
        "test/f1_macro",
        "pretrain/val_mse",
    ):
        assert key in m, key
    assert m["test/acc"] == pytest.approx((m["test/acc_ft0"] + m["test/acc_ft1"]) / 2)
    enc = torch.load(run_dir / "checkpoints" / "encoder.pt", weights_only=False)
    assert enc["arch"]["embed_dim"] == 32 and enc["method"] == "sdmae"
    assert (run_dir / "figures" / "reconstruction.png").stat().st_size > 1000
    for stage in ("pretrain", "probe", "probe_random", "finetune0", "finetune1"):
        assert (run_dir / stage).is_dir() or (run_dir / "checkpoints" / stage).is_dir(), stage


def test_bad_mask_ratio_is_a_config_error(tmp_path):
    proc, run_dir = run_experiment([*TINY, "model.mask_ratio=1.0"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "model.mask_ratio" in proc.stderr and "(0, 1)" in proc.stderr
    assert not (tmp_path / "data" / "embedded").exists()  # failed before any data was written


def test_mask_ratio_that_masks_no_patch_is_a_config_error(tmp_path):
    message = config_error_in_process([*TINY, "model.mask_ratio=0.01"], tmp_path)
    assert message.startswith("model.mask_ratio") and "= 0 of the 16 patches" in message


def test_probe_on_checkpoint_of_another_architecture(tmp_path):
    ckpt = save_encoder(
        tmp_path / "vit.pt",
        ViTEncoder(img_size=16, patch_size=4, embed_dim=64, depth=1, num_heads=2),
    )
    proc, _ = run_experiment([*TINY, f"pipeline.encoder_ckpt={ckpt}"], tmp_path, check=False)
    assert proc.returncode == 2
    assert "embed_dim: checkpoint 64 vs model 32" in proc.stderr
    assert not (tmp_path / "data" / "embedded").exists()


@pytest.mark.slow
def test_methods_sweep_fills_table(tmp_path):
    proc, sweep = run_sweep(
        [
            *TINY,
            "+sweep=sd_mae_methods_cpu",
            "datamodule.embedded_n_train=6",
            "datamodule.embedded_n_test=2",
            "pipeline.pretrain_epochs=1",
            "pipeline.probe_epochs=1",
            "pipeline.finetune_epochs=1",
            "pipeline.n_finetunes=2",
        ],
        tmp_path,
    )
    table = (sweep / "summary.md").read_text()
    for method in ("supervised", "mae", "mae_contrastive", "sdmae"):
        assert method in table
    assert "test/probe_acc" in table
    png = compare_sweep(sweep)  # Fig. 3: MAE vs SD-MAE (vs contrastive), same images and masks
    assert png.stat().st_size > 1000


@pytest.mark.slow
def test_mask_ratio_sweep_plots(tmp_path):
    proc, sweep = run_sweep(
        [
            *TINY,
            "+sweep=sd_mae_mask_ratio_cpu",
            "datamodule.embedded_n_train=6",
            "datamodule.embedded_n_test=2",
            "pipeline.pretrain_epochs=1",
            "pipeline.probe_epochs=1",
            "pipeline.finetune_epochs=1",
        ],
        tmp_path,
    )
    assert "model.mask_ratio" in (sweep / "summary.md").read_text()
    assert (sweep / "plot_model.mask_ratio.png").stat().st_size > 1000
