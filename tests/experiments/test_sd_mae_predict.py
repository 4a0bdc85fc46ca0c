"""pipeline=predict for sd_mae: a folder of tiles in, class probabilities and embeddings out."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from core.checks import ConfigError
from experiments.runner.predict import load_trained
from experiments.sd_mae.checkpoint import save_encoder
from experiments.sd_mae.predict import TilePredictor, stage_kind
from models.sd_mae import ViTEncoder
from tests.experiments.test_sd_mae_e2e import TINY as E2E_TINY
from tests.helpers import run_experiment, run_predict

CLASSES = ["LYM", "MUS", "NORM", "STR", "TUM"]


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def _probs(row: dict[str, str]) -> list[float]:
    return [float(row[f"p_{c}"]) for c in CLASSES]


def test_predict_tiles_with_the_fine_tune_and_the_probe_as_the_test_pipeline_does(tmp_path):
    # the chain without its pre-training stage (an encoder.pt given): probe + one fine-tune
    encoder = save_encoder(
        tmp_path / "encoder.pt",
        ViTEncoder(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2),
    )
    overrides = [*E2E_TINY, f"pipeline.encoder_ckpt={encoder}", "pipeline.probe_random=false"]
    _, run_dir = run_experiment(overrides, tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]

    test_split = next((tmp_path / "data" / "embedded").glob("sd_mae_tiles_*")) / "test"
    inputs = tmp_path / "tiles"
    for c in CLASSES:  # one level deeper than the class folders: any depth is read
        shutil.copytree(test_split / c, inputs / "slide" / c)
    tile = next((inputs / "slide" / "TUM").iterdir())
    Image.open(tile).resize((48, 48)).save(inputs / "big.jpg")  # resized to the native 32 px
    (inputs / "slide" / "cut.png").write_bytes(tile.read_bytes()[:60])
    (inputs / "notes.txt").write_text("not an image")

    out = tmp_path / "predictions"
    extra = ("predict.predictor.embeddings=true",)
    proc = run_predict("sd_mae", run_dir, inputs, out, tmp_path, "predict_run", extra)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "predict_summary.json").read_text())
    assert list(summary["skipped"]) == [str(inputs / "slide" / "cut.png")]
    assert "cut.png" in summary["skipped"][str(inputs / "slide" / "cut.png")]
    assert summary["checkpoint"].startswith(str(run_dir / "checkpoints" / "finetune0"))  # auto

    rows = _rows(out / "predictions.csv")
    assert list(next(iter(rows.values()))) == ["path", "class"] + [f"p_{c}" for c in CLASSES]
    assert len(rows) == 5 * 2 + 1 and "big.jpg" in rows
    for row in rows.values():
        assert row["class"] == CLASSES[int(np.argmax(_probs(row)))]
        assert sum(_probs(row)) == pytest.approx(1.0, abs=1e-4)
    emb = np.load(out / "embeddings.npy")
    assert emb.dtype == np.float32 and emb.shape == (len(rows), 32)
    assert (out / "embeddings_paths.txt").read_text().split() == list(rows)

    # The test pipeline's own inputs (the datamodule's test loader) through the same classifier
    # give the same probabilities, and the same accuracy as the run logged.
    dm = instantiate(
        OmegaConf.load(run_dir / "config_resolved.yaml").datamodule, _convert_="partial"
    )
    dm.setup("test")
    names = [f"slide/{p.parent.name}/{p.name}" for p, _ in dm._test.samples]
    for stage, acc_key in (("finetune0", "test/acc_ft0"), ("probe", "test/probe_acc")):
        ckpt = TilePredictor.choose_checkpoint(run_dir, classifier=stage.rstrip("0"))
        predictor = TilePredictor(load_trained(ckpt), OmegaConf.create({}))
        with torch.no_grad():
            want = torch.cat([torch.softmax(predictor.module.classify(x), -1) for x, _ in dm.test_dataloader()])  # fmt: skip
        if stage == "finetune0":
            got = np.array([_probs(rows[n]) for n in names])
        else:  # the probe in process, through the predictor's own reading of the files
            files = predictor.inputs(inputs)
            for f in files:
                if f.name != "cut.png":
                    predictor.predict(f, tmp_path)
            predictor.finish(tmp_path)
            probe_rows = _rows(tmp_path / "predictions.csv")
            got = np.array([_probs(probe_rows[n]) for n in names])
        np.testing.assert_allclose(got, want.numpy(), atol=2e-6)
        hits = [CLASSES[int(np.argmax(p))] == n.split("/")[1] for p, n in zip(got, names)]
        assert np.mean(hits) == pytest.approx(metrics[acc_key], abs=1e-6), stage


def test_a_missing_classifier_lists_what_the_run_has(tmp_path):
    ckpt = tmp_path / "checkpoints"
    for stage in ("pretrain", "probe", "probe_random"):
        (ckpt / stage).mkdir(parents=True)
    (ckpt / "probe" / "best-000-000003.ckpt").write_bytes(b"")
    assert TilePredictor.choose_checkpoint(tmp_path) == ckpt / "probe" / "best-000-000003.ckpt"
    with pytest.raises(ConfigError, match="predict.predictor.classifier") as err:
        TilePredictor.choose_checkpoint(tmp_path, classifier="finetune")
    assert "checkpoints/probe/, checkpoints/probe_random/" in str(err.value)
    with pytest.raises(ConfigError, match="allowed: auto, finetune"):
        TilePredictor.choose_checkpoint(tmp_path, classifier="best")
    with pytest.raises(ConfigError, match="no classifier"):  # the pre-training checkpoint
        stage_kind(ckpt / "pretrain" / "last.ckpt", {"net.decoder_embed.weight": None})
