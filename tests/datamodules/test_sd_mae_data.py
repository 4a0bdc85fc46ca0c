"""Readers on tiny files written in the published formats, and the bad-input messages."""

import logging

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from core.checks import ConfigError
from datamodules.sd_mae.datamodule import SDMAEDataModule
from datamodules.sd_mae.folder import DataFormatError, scan_class_folders
from datamodules.sd_mae.pcam import PCamDataset, inspect_pcam
from datamodules.sd_mae.tile_layout import ARRANGED, LAYOUTS, shared_params
from datamodules.sd_mae.tiles import CLASSES, draw_tile, write_tiles


def write_pcam(root, split, n=6, shape=(96, 96, 3), keys=("x", "y")):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with h5py.File(root / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
        f.create_dataset(keys[0], data=rng.integers(0, 255, (n, *shape), dtype=np.uint8))
    with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
        f.create_dataset(keys[1], data=(np.arange(n) % 2).astype(np.uint8).reshape(n, 1, 1, 1))


def write_folder(root, classes, n=3, size=32, mode="RGB"):
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new(mode, (size, size)).save(root / c / f"{c}_{i}.png")


def test_pcam_reader_official_layout(tmp_path):
    for s in ("train", "valid", "test"):
        write_pcam(tmp_path, s)
    ds = PCamDataset(tmp_path, "train")
    img, y = ds[3]
    assert img.size == (96, 96) and img.mode == "RGB" and y == 1
    assert ds.targets().tolist() == [0, 1, 0, 1, 0, 1]
    dm = SDMAEDataModule("pcam", str(tmp_path), img_size=32, batch_size=2)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 32, 32) and dm.num_classes == 2


def test_pcam_bad_files(tmp_path, caplog):
    with pytest.raises(DataFormatError, match="camelyonpatch_level_2_split_train_x.h5"):
        PCamDataset(tmp_path, "train")
    (tmp_path / "camelyonpatch_level_2_split_train_x.h5.gz").write_bytes(b"")
    with pytest.raises(DataFormatError, match="gunzip"):
        PCamDataset(tmp_path, "train")
    write_pcam(tmp_path / "k", "train", keys=("images", "y"))
    with pytest.raises(DataFormatError, match="no dataset 'x'"):
        PCamDataset(tmp_path / "k", "train")
    write_pcam(tmp_path / "g", "train", shape=(64, 64))  # grayscale and too small
    with caplog.at_level(logging.WARNING):
        inspect_pcam(tmp_path / "g", "train")
    assert "not 96x96" in caplog.text and "mode L" in caplog.text
    img, _ = PCamDataset(tmp_path / "g", "train")[0]
    assert img.size == (96, 96) and img.mode == "RGB"


def test_class_folders_exclude_background_and_fail_on_empty(tmp_path):
    write_folder(tmp_path / "a", ["BACK", "TUM", "ADI"])
    classes, samples = scan_class_folders(tmp_path / "a", exclude=["BACK"])
    assert classes == ["ADI", "TUM"] and len(samples) == 6
    (tmp_path / "a" / "LYM").mkdir()
    with pytest.raises(DataFormatError, match="LYM.*is empty"):
        scan_class_folders(tmp_path / "a", exclude=["BACK"])
    write_folder(tmp_path / "b", ["TUM"])
    with pytest.raises(DataFormatError, match="missing"):
        scan_class_folders(tmp_path / "b", classes=["ADI", "TUM"])


def test_nct_layout_wrong_size_and_modes(tmp_path, caplog):
    write_folder(tmp_path / "NCT-CRC-HE-100K", ["ADI", "BACK", "TUM"], n=10, size=224)
    write_folder(tmp_path / "CRC-VAL-HE-7K", ["ADI", "BACK", "TUM"], n=2, size=224)
    Image.new("L", (200, 180)).save(tmp_path / "NCT-CRC-HE-100K" / "ADI" / "grey.png")
    Image.new("RGBA", (224, 224)).save(tmp_path / "NCT-CRC-HE-100K" / "TUM" / "alpha.png")
    dm = SDMAEDataModule("nct_crc", str(tmp_path), img_size=32, batch_size=4, val_fraction=0.2)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert "not 224x224" in caplog.text and "grey.png" in caplog.text
    assert "mode RGBA (alpha dropped)" in caplog.text
    assert dm.classes == ["ADI", "TUM"]
    idx = [i for i, (p, _) in enumerate(dm._train_base.samples) if p.name == "grey.png"][0]
    img, _ = dm._train_base[idx]
    assert img.size == (224, 224) and img.mode == "RGB"
    assert len(dm._test) == 4
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape[1:] == (3, 32, 32)


def test_config_errors_before_reading(tmp_path):
    with pytest.raises(ConfigError, match="datamodule.data_dir.*zenodo"):
        SDMAEDataModule("nct_crc", str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="datamodule.dataset"):
        SDMAEDataModule("camelyon")
    with pytest.raises(ConfigError, match="needs data_dir"):
        SDMAEDataModule("pcam")
    with pytest.raises(ConfigError, match="min_crop_scale.probe"):
        SDMAEDataModule(min_crop_scale={"probe": 0.0})
    with pytest.raises(ConfigError, match="min_crop_scale key"):
        SDMAEDataModule(min_crop_scale={"linprobe": 0.5})
    with pytest.raises(ConfigError, match="randaugment_magnitude"):
        SDMAEDataModule(randaugment_magnitude=31)


@pytest.mark.parametrize("magnitude, expected", [(9, True), (None, False)])
def test_finetune_randaugment_is_configurable(magnitude, expected):
    from torchvision import transforms as T

    from datamodules.sd_mae.transforms import train_transform

    tf = train_transform("finetune", 32, randaugment_magnitude=magnitude)
    found = [op for op in tf.transforms if isinstance(op, T.RandAugment)]
    assert bool(found) == expected
    if found:
        assert found[0].magnitude == magnitude and found[0].num_ops == 2
    probe = train_transform("probe", 32, randaugment_magnitude=magnitude)
    assert not any(isinstance(op, T.RandAugment) for op in probe.transforms)


def test_tile_generator_and_embedded_datamodule(tmp_path):
    rng = np.random.default_rng(0)
    tiles = {c: draw_tile(c, 48, rng) for c in CLASSES}
    assert all(t.shape == (48, 48, 3) and t.dtype == np.uint8 for t in tiles.values())
    dark = {c: (t.mean(-1) < 160).mean() for c, t in tiles.items()}  # nuclei stain
    assert dark["BACK"] < 0.005 < min(v for c, v in dark.items() if c != "BACK")  # empty glass
    root = write_tiles(tmp_path, size=32, n_train=5, n_test=2)
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(CLASSES)
    mtime = (root / "done.json").stat().st_mtime
    assert write_tiles(tmp_path, size=32, n_train=5, n_test=2) == root  # written once
    assert (root / "done.json").stat().st_mtime == mtime
    dm = SDMAEDataModule(
        embedded_dir=str(tmp_path),
        img_size=32,
        batch_size=4,
        embedded_tile_size=32,
        embedded_n_train=5,
        embedded_n_test=2,
        val_fraction=0.2,
    )
    dm.prepare_data()
    dm.setup()
    assert "BACK" not in dm.classes and dm.num_classes == 5
    assert len(dm._train_idx) == 20 and len(dm._val_idx) == 5 and len(dm._test) == 10
    for stage in ("pretrain", "probe", "finetune"):
        dm.set_stage(stage)
        x, y = next(iter(dm.train_dataloader()))
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32


def test_tiles_deterministic_given_seed():
    a = [draw_tile(c, 48, np.random.default_rng(7)) for c in CLASSES]
    b = [draw_tile(c, 48, np.random.default_rng(7)) for c in CLASSES]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], draw_tile(CLASSES[1], 48, np.random.default_rng(8)))


def test_tile_classes_share_colour_and_nuclei_statistics():
    """What makes the embedded task fair: every class draws its nuclei count, stain and colour
    from the same distribution, so only arrangement tells classes apart."""
    rng = np.random.default_rng(0)
    for cls in ARRANGED:  # exact nuclei count, whatever the arrangement
        for _ in range(5):
            p = shared_params(rng, 64)
            assert len(LAYOUTS[cls](rng, 64, p).centres) == p["n"]
    stats = {}
    for cls in ARRANGED:
        t = np.stack([draw_tile(cls, 64, rng) for _ in range(40)]).astype(np.float32) / 255
        grey = t.mean(-1)
        stats[cls] = np.c_[t.mean((1, 2)), (grey < 0.5).mean((1, 2))]  # RGB mean, nuclei area
    pooled = np.concatenate(list(stats.values()))
    spread = pooled.std(0)
    for cls, s in stats.items():
        # class means within 0.5 per-tile std of the pooled mean (2 std errors is ~0.3)
        dev = np.abs(s.mean(0) - pooled.mean(0)) / spread
        assert (dev < 0.5).all(), f"{cls}: colour / nuclei-area means off by {dev.round(2)} std"
    # ...while the arrangement differs: clumped tumour nuclei sit closer together than scattered
    p = shared_params(rng, 64)
    spread_of = {
        c: LAYOUTS[c](np.random.default_rng(3), 64, p).centres.std(0).mean() for c in ARRANGED
    }
    assert spread_of["TUM"] < spread_of["LYM"]
