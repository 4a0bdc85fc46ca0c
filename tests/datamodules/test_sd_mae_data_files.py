"""Damaged and unusual files, in their real formats: refused (naming the file) before training,
or read correctly; one-folder hold-out splits; the download helper's checksum and repair."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile

import h5py
import numpy as np
import pytest
from PIL import Image

from core.checks import ConfigError
from core.errors import DataError
from datamodules.sd_mae import download as dl
from datamodules.sd_mae.datamodule import SDMAEDataModule
from datamodules.sd_mae.folder import ClassFolderDataset, check_images, decode
from datamodules.sd_mae.pcam import PCamDataset


def noisy(size=32, seed=0) -> Image.Image:
    """Noise compresses badly, so a cut file loses pixel data, not just padding."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def truncated(path, fmt):
    buf = io.BytesIO()
    noisy().save(buf, fmt)
    data = buf.getvalue()
    path.write_bytes(data[: len(data) // 2])  # header intact, pixels cut


@pytest.mark.parametrize("fmt, ext", [("PNG", "png"), ("TIFF", "tif")])
def test_truncated_image_with_intact_header_is_refused_with_its_path(tmp_path, fmt, ext):
    bad = tmp_path / f"cut.{ext}"
    truncated(bad, fmt)
    with Image.open(bad) as im:  # what a header-only check saw: looks fine
        assert im.size == (32, 32)
    with pytest.raises(DataError, match=f"cut.{ext}"):
        check_images([(bad, 0)], "fixture", 32)
    with pytest.raises(DataError, match=f"cut.{ext}"):  # first touch, header-only check
        ClassFolderDataset([(bad, 0)], ["a"])[0]


def test_sixteen_bit_tiff_is_scaled_not_white(tmp_path):
    arr = np.full((16, 16), 32896, dtype=np.uint16)  # mid grey in 16 bits
    arr[:8] = 0
    p = tmp_path / "g16.tif"
    Image.fromarray(arr).save(p)
    with Image.open(p) as im:
        assert im.mode.startswith("I;16")
    rgb = np.asarray(decode(p))
    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    assert rgb[:8].max() == 0 and rgb[8:].min() == 128  # 32896 / 257


def write_pcam_split(root, split, n=6):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
        f.create_dataset("x", data=rng.integers(0, 255, (n, 96, 96, 3), dtype=np.uint8))
    with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
        f.create_dataset("y", data=(np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1))


def test_truncated_or_garbage_pcam_file_names_itself(tmp_path):
    write_pcam_split(tmp_path / "cut", "train")
    fx = tmp_path / "cut" / "camelyonpatch_level_2_split_train_x.h5"
    data = fx.read_bytes()
    fx.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="camelyonpatch_level_2_split_train_x.h5"):
        PCamDataset(tmp_path / "cut", "train")
    write_pcam_split(tmp_path / "junk", "train")
    fy = tmp_path / "junk" / "camelyonpatch_level_2_split_train_y.h5"
    fy.write_bytes(b"\x1f\x8b this is not HDF5" * 10)
    with pytest.raises(DataError, match="split_train_y.h5.*not a readable HDF5"):
        PCamDataset(tmp_path / "junk", "train")


def write_slides(root, classes=("a", "b"), slides=6, per_slide=3):
    for c in classes:
        (root / c).mkdir(parents=True)
        for s in range(slides):
            for t in range(per_slide):
                noisy(16, seed=s * 10 + t).save(root / c / f"{c}slide{s}_tile{t}.png")


def test_one_folder_seeded_grouped_holdout(tmp_path):
    write_slides(tmp_path)
    kw = dict(img_size=16, batch_size=4, num_classes=2, exclude_classes=[])
    dm = SDMAEDataModule("folder", str(tmp_path), test_fraction=0.34, group_regex=r"^(\w+?)_", **kw)
    dm.setup()
    slide = lambda p: p.name.split("_")[0]  # noqa: E731
    train = {slide(dm._train_base.samples[i][0]) for i in dm._train_idx}
    val = {slide(dm._train_base.samples[i][0]) for i in dm._val_idx}
    test = {slide(p) for p, _ in dm._test.samples}
    assert train and val and test
    assert not (train & test) and not (train & val) and not (val & test)
    again = SDMAEDataModule(
        "folder", str(tmp_path), test_fraction=0.34, group_regex=r"^(\w+?)_", **kw
    )
    again.setup()
    assert [p for p, _ in again._test.samples] == [p for p, _ in dm._test.samples]
    with pytest.raises(ConfigError, match="test_fraction"):  # no train/ test/, no fraction
        SDMAEDataModule("folder", str(tmp_path), **kw)
    with pytest.raises(ConfigError, match="group_regex"):
        SDMAEDataModule("folder", str(tmp_path), test_fraction=0.3, group_regex="no_group", **kw)
    noisy(16).save(tmp_path / "a" / "stray.png")
    bad = SDMAEDataModule(
        "folder", str(tmp_path), test_fraction=0.34, group_regex=r"^(\w+?)_", **kw
    )
    with pytest.raises(DataError, match="stray.png"):
        bad.setup()


def test_download_verifies_checksum_and_repairs_half_extraction(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    archive = src / "TILES.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(3):
            z.writestr(f"TILES/A/{i}.txt", f"tile {i}")
    good = hashlib.md5(archive.read_bytes()).hexdigest()
    gz = src / "x.h5.gz"
    gz.write_bytes(gzip.compress(b"hdf5 bytes"))
    gz_md5 = hashlib.md5(gz.read_bytes()).hexdigest()
    url = f"file://{src}/{{}}"
    out = tmp_path / "out"
    monkeypatch.setitem(dl.FILES, "t", [("TILES.zip", url, "0" * 32)])
    with pytest.raises(DataError, match="TILES.zip': MD5"):
        dl.download("t", out)
    assert not (out / "TILES.zip").exists()  # damaged download removed
    # an interrupted earlier run: a half-extracted folder, no completion marker
    (out / "TILES" / "A").mkdir(parents=True)
    (out / "TILES" / "A" / "0.txt").write_text("tile")
    (out / "x.h5").write_bytes(b"hdf5")  # half-written, no marker
    monkeypatch.setitem(dl.FILES, "t", [("TILES.zip", url, good), ("x.h5.gz", url, gz_md5)])
    dl.download("t", out)
    assert sorted(p.name for p in (out / "TILES" / "A").iterdir()) == ["0.txt", "1.txt", "2.txt"]
    assert (out / "TILES" / "A" / "0.txt").read_text() == "tile 0"
    assert (out / "x.h5").read_bytes() == b"hdf5 bytes"
    assert not list(out.glob(".*.tmp")) and not list(out.glob("*.tmp"))
