"""FrailtyDataModule: embedded cohort end to end, both splits, cache, config errors."""

import numpy as np
import pytest
import torch

import datamodules.frailty.datamodule as dm_mod
from core.checks import ConfigError
from datamodules.frailty import FrailtyDataModule

SMALL = {"n_participants": 16, "duration_s": 8.0, "seed": 0}


def _dm(tmp_path, **kw):
    args = dict(
        embedded_dir=str(tmp_path / "emb"),
        embedded=SMALL,
        cache_dir=str(tmp_path / "cache"),
        batch_size=8,
    )
    return FrailtyDataModule(**{**args, **kw})


@pytest.fixture(scope="module")
def subject_dm(tmp_path_factory):
    dm = _dm(tmp_path_factory.mktemp("dm"))
    dm.prepare_data()
    dm.setup()
    return dm


def test_embedded_cohort_windows_and_batches(subject_dm):
    x, y, pid = next(iter(subject_dm.train_dataloader()))
    assert x.shape == (8, 203, 6) and x.dtype == torch.float32
    assert set(y.tolist()) <= {0, 1, 2} and not pid.dtype.is_floating_point
    meta = subject_dm.meta
    assert meta["cohort"]["recordings_used"] == 16
    assert set(meta["cohort"]["source_rates_hz"]) == {"100.0", "128.0"}
    # 8 s at 100 Hz: 1 + (800 - 200) // 50 = 13 windows per participant
    total = sum(sum(c) for c in meta["counts"].values())
    assert total == 16 * 13
    assert subject_dm.class_counts("train").sum() == len(subject_dm.arrays["y_train"])


def test_subject_split_keeps_participants_disjoint(subject_dm):
    a = subject_dm.arrays
    sets = [set(np.unique(a[f"pid_{s}"])) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    # every class reaches val and test
    for s in ("val", "test"):
        assert set(np.unique(a[f"y_{s}"])) == {0, 1, 2}


def test_scaler_is_fitted_on_training_windows(subject_dm):
    """Train coefficients of the approximation band average ~0 after standardisation; the
    scaler statistics in the metadata are those of the training participants only."""
    scaler = subject_dm.meta["scaler"]
    assert len(scaler["mean"]) == 6 and all(s > 0 for s in scaler["scale"])
    x = np.asarray(subject_dm.arrays["x_train"])
    # cA7 (first 2 coefficients) = window mean * sqrt(128): zero-mean across train windows
    assert np.abs(x[:, :2].mean(axis=(0, 1))).max() < 0.2 * np.sqrt(128)


def test_window_split_mixes_participants_and_uses_paper_fractions(tmp_path):
    dm = _dm(tmp_path, split="window")
    dm.setup()
    a = dm.arrays
    n = [len(a[f"y_{s}"]) for s in ("train", "val", "test")]
    assert n == [156, 26, 26]  # 208 windows -> 75 / 12.5 / 12.5 %
    assert set(np.unique(a["pid_train"])) & set(np.unique(a["pid_test"]))


def test_second_setup_comes_from_the_cache(tmp_path, monkeypatch):
    _dm(tmp_path).setup()

    def boom(*a, **k):
        raise AssertionError("read the cohort again instead of the cache")

    monkeypatch.setattr(dm_mod, "read_cohort", boom)
    again = _dm(tmp_path)
    again.setup()
    assert len(again.arrays["y_train"]) > 0
    with pytest.raises(AssertionError, match="cache"):
        _dm(tmp_path, stride=100).setup()  # a new setting is a new cache entry


@pytest.mark.parametrize(
    "kw, key",
    [
        ({"split": "random"}, "datamodule.split"),
        ({"wavelet_coeffs": "all"}, "datamodule.wavelet_coeffs"),
        ({"split_fractions": [0.8, 0.1]}, "datamodule.split_fractions"),
        ({"wavelet": "db99"}, "datamodule.wavelet"),
        ({"schema": {"channel_cols": ["a"]}}, "datamodule.schema"),
        ({"embedded": {"participants": 3}}, "datamodule.embedded"),
        ({"data_dir": "/no/such/gstride"}, "datamodule.data_dir"),
        ({"stride": 0}, "datamodule.stride"),
    ],
)
def test_config_errors_name_the_key_before_reading_data(tmp_path, kw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _dm(tmp_path, **kw)
    assert not (tmp_path / "emb").exists()  # nothing was generated or read
