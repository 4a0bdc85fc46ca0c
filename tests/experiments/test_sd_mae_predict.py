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
from PIL import Image

from core.checks import ConfigError
from experiments.runner.task import instantiate_checked
from experiments.sd_mae.checkpoint import save_encoder
from experiments.sd_mae.predict import TilePredictor, stage_kind
from models.sd_mae import ViTEncoder
from tests.experiments.test_sd_mae_e2e import TINY as E2E_TINY
from tests.helpers import (
    compose_config,
    fit_test_in_process,
    predict_in_process,
    run_experiment,
    run_predict,
)

CLASSES = ["LYM", "MUS", "NORM", "STR", "TUM"]


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def _probs(row: dict[str, str]) -> list[float]:
    return [float(row[f"p_{c}"]) for c in CLASSES]


def _tiles(test_split: Path, inputs: Path) -> Path:
    """The test split one level deeper (any depth is read), a bigger JPEG copy of a tile
    (resized to the native size), a truncated PNG and a text file; returns the bad PNG."""
    for c in CLASSES:
        shutil.copytree(test_split / c, inputs / "slide" / c)
    tile = next((inputs / "slide" / "TUM").iterdir())
    Image.open(tile).resize((48, 48)).save(inputs / "big.jpg")
    (inputs / "slide" / "cut.png").write_bytes(tile.read_bytes()[:60])
    (inputs / "notes.txt").write_text("not an image")
    return inputs / "slide" / "cut.png"


def check_outputs(out: Path, bad: Path, n_tiles: int, embed_dim: int | None) -> dict:
    """Every output's format; returns the prediction rows by path."""
    summary = json.loads((out / "predict_summary.json").read_text())
    assert list(summary["skipped"]) == [str(bad)]
    assert bad.name in summary["skipped"][str(bad)]  # named, with the reason
    rows = _rows(out / "predictions.csv")
    assert list(next(iter(rows.values()))) == ["path", "class"] + [f"p_{c}" for c in CLASSES]
    assert len(rows) == n_tiles + 1 and "big.jpg" in rows
    for row in rows.values():  # the class is the most probable one (6 decimals may tie)
        assert float(row[f"p_{row['class']}"]) >= max(_probs(row)) - 1e-6
        assert sum(_probs(row)) == pytest.approx(1.0, abs=1e-4)
    if embed_dim is not None:
        emb = np.load(out / "embeddings.npy")
        assert emb.dtype == np.float32 and emb.shape == (len(rows), embed_dim)
        assert (out / "embeddings_paths.txt").read_text().split() == list(rows)
    return rows


def test_predict_tiles_as_the_test_pipeline_did_with_fine_tune_and_probe(tmp_path):
    """A probe and a fine-tune trained and tested in process, saved where a chain run saves
    them; the runner's predict loop picks the fine-tune, then the probe on request."""
    cfg = compose_config(E2E_TINY, tmp_path)
    torch.manual_seed(0)
    dm = instantiate(cfg.datamodule, _convert_="partial")
    dm.prepare_data()
    dm.setup("fit")
    ckpts = tmp_path / "run" / "checkpoints"
    tested = {}
    for stage, node in (("probe", cfg.sd_mae.probe), ("finetune0", cfg.sd_mae.finetune)):
        dm.set_stage(stage.rstrip("0"))
        module = instantiate_checked(node, encoder_ckpt=None, class_names=list(dm.classes))
        metrics = fit_test_in_process(cfg, module, dm, ckpts / stage / "best-000-000001.ckpt")
        with torch.no_grad():
            probs = [torch.softmax(module.eval().classify(x), -1) for x, _ in dm.test_dataloader()]
        tested[stage] = (metrics["test/acc"], torch.cat(probs).numpy())
    (ckpts / "pretrain").mkdir()  # the chain's main checkpoint: no classifier, never chosen

    test_split = next((tmp_path / "data" / "embedded").glob("sd_mae_tiles_*")) / "test"
    bad = _tiles(test_split, tmp_path / "tiles")
    names = [f"slide/{p.parent.name}/{p.name}" for p, _ in dm._test.samples]
    base = ["+experiment=sd_mae", f"ckpt_path={tmp_path / 'run'}", f"predict.input={tmp_path / 'tiles'}"]  # fmt: skip
    for stage, extra in (
        ("finetune0", ["predict.predictor.embeddings=true"]),  # classifier=auto
        ("probe", ["predict.predictor.classifier=probe"]),
    ):
        out = tmp_path / f"out_{stage}"
        predict_in_process([*base, f"predict.output={out}", *extra], tmp_path, stage)
        summary = json.loads((out / "predict_summary.json").read_text())
        assert Path(summary["checkpoint"]).parent.name == stage
        rows = check_outputs(out, bad, len(names), 32 if stage == "finetune0" else None)
        acc, want = tested[stage]
        np.testing.assert_allclose([_probs(rows[n]) for n in names], want, atol=2e-6)
        hits = [rows[n]["class"] == n.split("/")[1] for n in names]
        assert np.mean(hits) == pytest.approx(acc, abs=1e-6), stage

    with pytest.raises(ConfigError, match="checkpoints/probe/, checkpoints/finetune0/"):
        predict_in_process([*base, "predict.predictor.classifier=probe_random"], tmp_path, "x")


@pytest.mark.slow  # CLI start-ups; the in-process test above checks the same in depth
def test_cli_train_the_chain_then_predict_tiles(tmp_path):
    # the chain without its pre-training stage (an encoder.pt given): probe + one fine-tune
    encoder = save_encoder(
        tmp_path / "encoder.pt",
        ViTEncoder(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2),
    )
    overrides = [*E2E_TINY, f"pipeline.encoder_ckpt={encoder}", "pipeline.probe_random=false"]
    _, run_dir = run_experiment(overrides, tmp_path)
    acc = json.loads((run_dir / "metrics.json").read_text())["metrics"]["test/acc_ft0"]
    test_split = next((tmp_path / "data" / "embedded").glob("sd_mae_tiles_*")) / "test"
    bad = _tiles(test_split, tmp_path / "tiles")

    out = tmp_path / "predictions"
    extra = ("predict.predictor.embeddings=true",)
    proc = run_predict("sd_mae", run_dir, tmp_path / "tiles", out, tmp_path, "predict_run", extra)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["checkpoint"].startswith(str(run_dir / "checkpoints" / "finetune0"))  # auto
    rows = check_outputs(out, bad, 5 * 2, 32)
    tested = [n for n in rows if n.startswith("slide/")]
    assert np.mean([rows[n]["class"] == n.split("/")[1] for n in tested]) == pytest.approx(acc)


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
