"""Tests of the lowlight_gp data: gamma levels, the folder reader's bad-image handling, the
embedded default and the datamodule."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.checks import ConfigError
from datamodules.lowlight_gp.darken import GAMMAS, LEVELS, darken
from datamodules.lowlight_gp.datamodule import LowLightDataModule
from datamodules.lowlight_gp.embedded import write_embedded
from datamodules.lowlight_gp.folder import read_folder


def _photo(h: int = 80, w: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], 2) * 200 + 20
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def test_levels_are_the_original_plus_25_gammas():
    assert len(GAMMAS) == 25 and len(LEVELS) == 26 and LEVELS[0] == 1.0
    assert GAMMAS[0] == 2.0 and GAMMAS[-1] == 7.0 and np.all(np.diff(GAMMAS) > 0)
    img = _photo() / 255.0
    means = [darken(img, g).mean() for g in LEVELS]
    assert np.all(np.diff(means) < 0)  # darker at every level
    assert np.allclose(darken(img, 1.0), img, atol=0.5 / 255)
    with pytest.raises(ValueError, match="brighten"):
        darken(img, 0.5)


def test_folder_reports_and_skips_bad_images(tmp_path, caplog):
    good = _photo()
    _write(tmp_path / "a" / "good.png", good)
    _write(tmp_path / "good2.jpg", _photo(seed=1))
    _write(tmp_path / "grey.png", good[..., 0])
    _write(tmp_path / "rgba.png", np.dstack([good, np.full(good.shape[:2], 255, np.uint8)]))
    _write(tmp_path / "deep.png", good.astype(np.uint16) * 256)
    _write(tmp_path / "tiny.png", good[:10, :10])
    _write(tmp_path / "flat.png", np.full_like(good, 77))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    images, bad = read_folder(tmp_path, min_size=32)
    assert [im.name for im in images] == ["good", "good2"]
    assert np.array_equal(images[0].rgb, good[..., ::-1])  # BGR on disk -> RGB
    reasons = {p.name: r for p, r in bad}
    assert set(reasons) == {
        "grey.png",
        "rgba.png",
        "deep.png",
        "tiny.png",
        "flat.png",
        "broken.jpg",
    }
    assert "grayscale" in reasons["grey.png"] and "RGBA" in reasons["rgba.png"]
    assert "16" in reasons["deep.png"] and "smaller" in reasons["tiny.png"]
    assert "constant" in reasons["flat.png"] and "unreadable" in reasons["broken.jpg"]
    assert "skipping" in caplog.text


def test_embedded_photographs_are_written_once_and_read_back(tmp_path):
    root = write_embedded(tmp_path / "emb")
    images, bad = read_folder(root / "bright")
    assert len(images) == 7 and not bad
    assert {"astronaut", "china", "flower"} <= {im.name for im in images}
    low, _ = read_folder(root / "lowlight")
    assert len(low) == 2 and all(im.rgb.mean() < 40 for im in low)
    stamp = (root / "bright" / "astronaut.png").stat().st_mtime_ns
    write_embedded(tmp_path / "emb")
    assert (root / "bright" / "astronaut.png").stat().st_mtime_ns == stamp


def test_datamodule_splits_and_yields_pairs(tmp_path):
    for i in range(5):
        _write(tmp_path / "coco" / f"im{i}.jpg", _photo(seed=i))
    _write(tmp_path / "coco" / "grey.png", _photo()[..., 0])
    dm = LowLightDataModule(
        data_dir=str(tmp_path / "coco"), n_test=2, n_val=1, eval_size=64, crop_size=32,
        train_samples=8, val_samples=4, batch_size=4,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.test_images) == 2 and len(dm.train_images) == 2 and len(dm.skipped) == 1
    assert dm.test_images[0][1].shape == (64, 64, 3)
    dark, bright = next(iter(dm.train_dataloader()))
    assert dark.shape == bright.shape == (4, 3, 32, 32) and dark.dtype == torch.float32
    assert torch.all(dark <= bright + 1 / 255)  # gamma >= 1 only darkens
    v1 = next(iter(dm.val_dataloader()))[0]
    v2 = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(v1, v2)  # fixed validation crops


def test_datamodule_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="datamodule.data_dir.*val2017"):
        LowLightDataModule(data_dir=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="datamodule.lowlight_dir.*ExDark"):
        LowLightDataModule(lowlight_dir=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="datamodule.crop_size"):
        LowLightDataModule(crop_size=300, eval_size=256)
    for i in range(2):
        _write(tmp_path / "few" / f"im{i}.png", _photo(seed=i))
    dm = LowLightDataModule(data_dir=str(tmp_path / "few"), n_test=2, n_val=1)
    with pytest.raises(ConfigError, match="2 usable RGB images"):
        dm.setup("fit")


def test_training_crops_depend_only_on_seed_and_epoch(tmp_path):
    for i in range(4):
        _write(tmp_path / "coco" / f"im{i}.png", _photo(seed=i))
    kw = dict(data_dir=str(tmp_path / "coco"), n_test=1, n_val=1, eval_size=64, crop_size=32,
              train_samples=8, batch_size=8)  # fmt: skip
    a, b = LowLightDataModule(**kw), LowLightDataModule(**kw)
    for dm in (a, b):
        dm.setup("fit")
    la, lb = a.train_dataloader(), b.train_dataloader()
    la.sampler.set_epoch(1)
    lb.sampler.set_epoch(1)
    assert torch.equal(next(iter(la))[0], next(iter(lb))[0])  # same (seed, epoch) -> same crops
    lb.sampler.set_epoch(2)
    assert not torch.equal(next(iter(la))[0], next(iter(lb))[0])
