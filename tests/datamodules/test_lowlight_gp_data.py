"""Tests of the lowlight_gp data: gamma levels, the folder reader's bad-image handling, the
embedded default and the datamodule."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from core.checks import ConfigError
from core.errors import DataError
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


def test_folder_converts_grey_rgba_16bit_and_skips_unusable_images(tmp_path, caplog):
    good = _photo()
    _write(tmp_path / "a" / "good.png", good)
    _write(tmp_path / "good2.jpg", _photo(seed=1))
    _write(tmp_path / "grey.png", good[..., 0])
    _write(tmp_path / "rgba.png", np.dstack([good, np.full(good.shape[:2], 255, np.uint8)]))
    _write(tmp_path / "deep.png", good.astype(np.uint16) * 257)
    _write(tmp_path / "tiny.png", good[:10, :10])
    _write(tmp_path / "flat.png", np.full_like(good, 77))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    images, bad = read_folder(tmp_path, min_size=32)
    by_name = {im.name: im.rgb for im in images}
    assert sorted(by_name) == ["deep", "good", "good2", "grey", "rgba"]
    assert np.array_equal(by_name["good"], good[..., ::-1])  # BGR on disk -> RGB
    assert np.array_equal(by_name["grey"], np.repeat(good[..., :1], 3, 2))
    assert np.array_equal(by_name["rgba"], good[..., ::-1])
    assert np.array_equal(by_name["deep"], good[..., ::-1])  # 16-bit -> 8-bit
    reasons = {p.name: r for p, r in bad}
    assert set(reasons) == {"tiny.png", "flat.png", "broken.jpg"}
    assert "smaller" in reasons["tiny.png"] and "constant" in reasons["flat.png"]
    assert "not an image" in reasons["broken.jpg"]
    assert "skipping" in caplog.text
    # conversions are counted and named in one warning
    assert "3 conversions" in caplog.text and "grey.png" in caplog.text


def _jpeg(path: Path, img: np.ndarray, **exif) -> bytes:
    from PIL import Image

    pil = Image.fromarray(img)
    kwargs = {}
    if exif:
        e = Image.Exif()
        e[0x0112] = exif["orientation"]
        kwargs["exif"] = e
    pil.save(path, "JPEG", quality=92, **kwargs)
    return path.read_bytes()


def test_folder_skips_truncated_and_bit_flipped_jpegs_and_applies_exif(tmp_path, caplog):
    img = _photo(96, 128)
    raw = _jpeg(tmp_path / "ok.jpg", img)
    (tmp_path / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
    sos = raw.index(b"\xff\xda")
    flipped = bytearray(raw)
    flipped[sos + (len(raw) - sos) // 2] ^= 0x10  # one bit in the entropy-coded data
    (tmp_path / "flipped.jpg").write_bytes(bytes(flipped))
    _jpeg(tmp_path / "phone.jpg", img, orientation=6)  # stored landscape, shown rotated 90
    images, bad = read_folder(tmp_path, min_size=32)
    by_name = {im.name: im.rgb for im in images}
    assert sorted(by_name) == ["ok", "phone"]
    assert by_name["ok"].shape == (96, 128, 3)
    assert by_name["phone"].shape == (128, 96, 3)  # upright
    assert np.abs(by_name["phone"].astype(float) - np.rot90(by_name["ok"], -1)).mean() < 2
    reasons = {p.name: r for p, r in bad}
    assert set(reasons) == {"truncated.jpg", "flipped.jpg"}
    assert "truncated" in reasons["truncated.jpg"] and "corrupt" in reasons["flipped.jpg"]
    assert "EXIF orientation 6" in caplog.text
    # nothing usable left: a DataError naming the folder
    for name in ("ok.jpg", "phone.jpg"):
        (tmp_path / name).unlink()
    with pytest.raises(DataError, match="none of its 2 image files is usable"):
        read_folder(tmp_path)


def test_read_folder_streams_resized_8bit_copies(tmp_path, monkeypatch):
    # Each image is resized before the next is decoded: at most one full-resolution array
    # is alive at a time, and what is kept is the resized uint8 copy.
    for i in range(4):
        _write(tmp_path / f"{i}.png", _photo(300, 400, seed=i))
    import datamodules.lowlight_gp.folder as folder

    alive, peak = [0], [0]
    real = folder.load_rgb

    def counting(path, min_size=32):
        rgb, notes = real(path, min_size)
        alive[0] += 1
        peak[0] = max(peak[0], alive[0])
        return rgb, notes

    real_resize = folder.cv2.resize

    def resize(img, size, interpolation):
        alive[0] -= 1
        return real_resize(img, size, interpolation=interpolation)

    monkeypatch.setattr(folder, "load_rgb", counting)
    monkeypatch.setattr(folder.cv2, "resize", resize)
    images, _ = read_folder(tmp_path, size=64)
    assert peak[0] == 1 and len(images) == 4
    assert all(im.rgb.shape == (64, 64, 3) and im.rgb.dtype == np.uint8 for im in images)


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
    _write(tmp_path / "coco" / "grey.png", _photo()[..., 0])  # converted to RGB
    (tmp_path / "coco" / "broken.jpg").write_bytes(b"not an image")  # skipped
    dm = LowLightDataModule(
        data_dir=str(tmp_path / "coco"), n_test=2, n_val=1, eval_size=64, crop_size=32,
        train_samples=8, val_samples=4, batch_size=4,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.test_images) == 2 and len(dm.train_images) == 3 and len(dm.skipped) == 1
    assert all(im.dtype == np.uint8 and im.shape == (64, 64, 3) for im in dm.train_images)
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


def test_gpe_cnn_download_keeps_only_a_file_with_the_published_hash(tmp_path, monkeypatch):
    import hashlib

    from datamodules.lowlight_gp import download

    src = tmp_path / "src.mat"
    src.write_bytes(b"MATLAB 5.0 MAT-file stand-in")
    url = src.as_uri()
    with pytest.raises(DataError, match="SHA-256"):
        download.download_gpe_cnn(tmp_path / "out", url=url)
    assert not (tmp_path / "out" / "cnnmodel.mat").exists()
    monkeypatch.setattr(download, "GPE_CNN_SHA256", hashlib.sha256(src.read_bytes()).hexdigest())
    path = download.download_gpe_cnn(tmp_path / "out", url=url)
    assert path.read_bytes() == src.read_bytes()
    assert download.download_gpe_cnn(tmp_path / "out", url="file:///nonexistent") == path  # cached
