"""Sleep-EDF reading on EDF files the tests write in the published format, bad inputs included."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import warnings
from pathlib import Path

import mne
import numpy as np
import pytest

from core.checks import ConfigError
from core.errors import DataError
from datamodules.sleep_tsr import SleepEDFDataModule
from datamodules.sleep_tsr.cache import FeatureCache, Preprocessing
from datamodules.sleep_tsr.dataset import SequenceDataset
from datamodules.sleep_tsr.download import download, parse_subjects
from datamodules.sleep_tsr.features import epoch_spectrogram
from datamodules.sleep_tsr.folds import loso_split
from datamodules.sleep_tsr.reader import (
    ChannelRateError,
    SleepEDFError,
    TruncatedPSGError,
    load_recording,
    read_edf_header,
)
from datamodules.sleep_tsr.records import find_recordings, hypnogram_name, psg_name
from datamodules.sleep_tsr.synthetic import (
    SyntheticSettings,
    generate_dataset,
    write_hypnogram,
    write_night,
    write_psg,
)

TINY = SyntheticSettings(
    n_subjects=6, nights=2, missing_nights=[2], sleep_hours=0.4, wake_minutes=(4.0, 8.0)
)
START = dt.datetime(1989, 4, 24, 16, 0, 0)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("sleep_edf"), TINY)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _dm(data_dir: Path, tmp_path: Path, **kw) -> SleepEDFDataModule:
    args = dict(
        data_dir=str(data_dir),
        cache_dir=str(tmp_path / "cache"),
        num_val_subjects=2,
        seq_len=5,
        batch_size=4,
        eval_batch_size=8,
    )
    return SleepEDFDataModule(**(args | kw))


# ---------------------------------------------------------------------------- generator + format
def test_generator_writes_sleep_edf_files(tiny_dir):
    names = sorted(p.name for p in tiny_dir.glob("*.edf"))
    assert psg_name(0, 1) == "SC4001E0-PSG.edf" and psg_name(0, 1) in names
    assert hypnogram_name(0, 1) == "SC4001EC-Hypnogram.edf" and hypnogram_name(0, 1) in names
    assert psg_name(2, 2) not in names  # the subject with one night (like subject 13)
    assert len(names) == 2 * 11
    raw = mne.io.read_raw_edf(tiny_dir / psg_name(0, 1), verbose="error")
    assert "EEG Fpz-Cz" in raw.ch_names and raw.info["sfreq"] == 100
    ann = mne.read_annotations(tiny_dir / hypnogram_name(0, 1))
    assert {"Sleep stage W", "Sleep stage 2"} <= set(ann.description)
    assert set(ann.description) <= {f"Sleep stage {s}" for s in "W1234R?"} | {"Movement time"}
    recs, problems = find_recordings(tiny_dir)
    assert len(recs) == 11 and not problems
    assert {(r.subject, r.night) for r in recs} >= {(0, 1), (0, 2), (2, 1)}


def test_generated_spectra_depend_on_stage(tiny_dir):
    recs, _ = find_recordings(tiny_dir)
    rec = load_recording(recs[0], crop="none")
    feats = epoch_spectrogram(rec.epochs)
    alpha = feats[..., 24:28].mean((1, 2))  # ~9.4-10.9 Hz
    delta = feats[..., 1:4].mean((1, 2))  # ~0.4-1.2 Hz
    assert alpha[rec.labels == 0].mean() > alpha[rec.labels == 3].mean()
    assert delta[rec.labels == 3].mean() > delta[rec.labels == 0].mean() + 5


# ---------------------------------------------------------------------------- reader
def _write_known_night(
    folder: Path, stages: list[str], sfreq: float = 100.0, label: str = "EEG Fpz-Cz"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    n = len(stages) * 30
    t = np.arange(int(n * sfreq)) / sfreq
    epoch_index = (t // 30).astype(float)
    eeg = 10 * np.sin(2 * np.pi * 10 * t) + epoch_index  # epoch k has a DC offset of k uV
    write_psg(
        folder / psg_name(0, 1), {label: (eeg, sfreq), "EMG submental": (np.zeros(n), 1.0)}, START
    )
    write_hypnogram(folder / hypnogram_name(0, 1), stages, START)
    return folder


def test_reader_maps_rk_to_aasm_and_crops(tmp_path):
    stages = ["W"] * 70 + ["1", "2", "3", "4", "R", "?", "M", "2"] + ["W"] * 70 + ["?"] * 3
    folder = _write_known_night(tmp_path / "known", stages)
    rec_files = find_recordings(folder)[0][0]
    full = load_recording(rec_files, crop="none")
    assert len(full.labels) == 70 + 6 + 70  # '?' and movement dropped
    assert list(full.labels[70:76]) == [1, 2, 3, 3, 4, 2]  # stages 3 and 4 merged into N3
    # epoch k keeps its own samples: DC offset k survives (dropped epochs 75, 76 are skipped)
    means = full.epochs.mean(1)
    assert np.allclose(means[70:76], [70, 71, 72, 73, 74, 77], atol=0.5)
    cropped = load_recording(rec_files, crop="sleep_30min")
    assert len(cropped.labels) == 60 + 6 + 60  # 30 min = 60 epochs of wake each side
    assert np.allclose(cropped.epochs.mean(1)[0], 10, atol=0.5)  # starts at epoch 70 - 60


def test_stft_shape_and_peak():
    t = np.arange(3000) / 100
    feats = epoch_spectrogram(np.sin(2 * np.pi * 10 * t)[None])
    assert feats.shape == (1, 29, 129) and feats.dtype == np.float32
    assert int(feats[0].mean(0).argmax()) == round(10 * 256 / 100)


def test_resamples_other_rates_with_a_warning(tmp_path):
    folder = _write_known_night(tmp_path / "r200", ["W"] * 3 + ["2"] * 4, sfreq=200.0)
    rec_files = find_recordings(folder)[0][0]
    with pytest.warns(UserWarning, match=r"200 Hz; resampling to 100 Hz"):
        rec = load_recording(rec_files, crop="none")
    assert rec.epochs.shape == (7, 3000)
    assert np.allclose(rec.epochs.mean(1), np.arange(7), atol=0.6)


def test_missing_channel_names_file_and_channels(tmp_path):
    folder = _write_known_night(tmp_path / "nochan", ["W", "2", "2"], label="EEG C3-A2")
    with pytest.raises(
        SleepEDFError, match=r"SC4001E0-PSG\.edf: no channel 'EEG Fpz-Cz'.*EEG C3-A2"
    ):
        load_recording(find_recordings(folder)[0][0])


def test_hypnogram_not_matching_psg(tmp_path):
    folder = _write_known_night(tmp_path / "mismatch", ["W"] * 4)
    write_hypnogram(folder / hypnogram_name(0, 1), ["2"] * 40, START)  # 20 min scored, 2 min signal
    with pytest.raises(
        SleepEDFError, match=r"SC4001EC-Hypnogram\.edf: does not match SC4001E0-PSG\.edf"
    ):
        load_recording(find_recordings(folder)[0][0])


def test_corrupt_and_missing_files(tmp_path):
    folder = _write_known_night(tmp_path / "bad", ["W", "2"])
    rec = find_recordings(folder)[0][0]
    rec.psg.write_bytes(b"not an edf file at all" * 10)
    with pytest.raises(SleepEDFError, match=r"SC4001E0-PSG\.edf: not a readable EDF"):
        load_recording(rec)
    (folder / hypnogram_name(0, 1)).unlink()
    rec = find_recordings(folder)[0][0]
    assert rec.hypnogram is None
    with pytest.raises(SleepEDFError, match=r"no matching \*-Hypnogram\.edf"):
        load_recording(rec)


# ---------------------------------------------------------------------------- folds, sequences
def test_loso_split():
    subjects = list(range(20))
    seen_test = set()
    for fold in range(20):
        train, val, test = loso_split(subjects, fold, 4, seed=3)
        assert len(val) == 4 and len(test) == 1 and len(train) == 15
        assert set(train) | set(val) | set(test) == set(subjects)
        assert not (set(train) & set(val)) and test[0] not in train + val
        seen_test.add(test[0])
    assert seen_test == set(subjects)
    assert loso_split(subjects, 5, 4, 3) == loso_split(subjects, 5, 4, 3)
    assert loso_split(subjects, 5, 4, 3)[1] != loso_split(subjects, 5, 4, 4)[1]


def test_sequences_never_cross_recordings_and_cover_tail():
    feats = [
        np.zeros((7, 2, 3), np.float32),
        np.ones((3, 2, 3), np.float32),
        np.ones((5, 2, 3), np.float32),
    ]
    labels = [np.arange(7), np.arange(3), np.arange(5)]
    ds = SequenceDataset(feats, labels, seq_len=4, stride=3)
    assert [tuple(v) for v in ds.index] == [(0, 0), (0, 3), (2, 0), (2, 1)]  # tail of rec 2 covered
    x, y, r, s = ds[1]
    assert x.shape == (4, 2, 3) and y.tolist() == [3, 4, 5, 6] and (r, s) == (0, 3)


# ---------------------------------------------------------------------------- cache
def test_cache_hit_and_invalidation(tiny_dir, tmp_path, monkeypatch):
    data = _copy(tiny_dir, tmp_path / "data")
    dm = _dm(data, tmp_path)
    dm.prepare_data()
    assert not dm.skipped
    cached = sorted((tmp_path / "cache").glob("*/*.npz"))
    assert len(cached) == 11
    import datamodules.sleep_tsr.datamodule as dmod

    def boom(*a, **k):
        raise AssertionError("EDF re-read although cached")

    monkeypatch.setattr(dmod, "load_recording", boom)
    again = _dm(data, tmp_path)
    assert len(again._load_nights()) == 11  # every night from the cache
    assert Preprocessing(crop="none").key() != Preprocessing().key()
    # touching a hypnogram invalidates that night only
    rec = find_recordings(data)[0][0]
    stale = FeatureCache(tmp_path / "cache", Preprocessing())
    os.utime(rec.hypnogram, ns=(1, 1))
    assert stale.load(rec) is None
    assert stale.load(find_recordings(data)[0][1]) is not None


# ---------------------------------------------------------------------------- datamodule
def test_datamodule_fold_normalisation_and_batches(tiny_dir, tmp_path):
    dm = _dm(tiny_dir, tmp_path, fold=1, seed=7)
    dm.prepare_data()
    dm.setup("fit")
    split = dm.subject_split
    assert split["test"] == [1] and len(split["val"]) == 2 and len(split["train"]) == 3
    train = np.concatenate([n.features for n in dm.splits["train"]])
    assert np.allclose(train.mean((0, 1)), 0, atol=1e-3)
    assert np.allclose(train.std((0, 1)), 1, atol=1e-2)
    x, y, r, s = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 5, 29, 129) and y.shape == (4, 5)
    val_loaders = dm.val_dataloader()
    assert len(val_loaders) == 2  # validation + test subject (test-loss curve)
    n_test_epochs = sum(len(n.labels) for n in dm.eval_nights("test"))
    covered = set()
    for _, _, rr, ss in dm.test_dataloader():
        for a, b in zip(rr.tolist(), ss.tolist()):
            covered |= {(a, b + k) for k in range(5)}
    assert len(covered) == n_test_epochs


def test_bad_recordings_are_skipped_others_unaffected(tiny_dir, tmp_path):
    data = _copy(tiny_dir, tmp_path / "data")
    next(data.glob("SC4002E?-Hypnogram.edf")).unlink()  # missing hypnogram
    (data / psg_name(1, 1)).write_bytes(b"\x00" * 512)  # unreadable PSG
    rng = np.random.default_rng(0)
    write_night(data, 3, 2, rng, TINY, eeg_label="EEG C4-A1")  # no Fpz-Cz
    write_night(data, 4, 2, rng, TINY, sfreq=200.0)  # resampled, kept
    dm = _dm(data, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nights = dm._load_nights()
    text = "\n".join(str(w.message) for w in caught)
    assert "SC4002E0-PSG.edf: no matching" in text
    assert "SC4011E0-PSG.edf: not a readable EDF" in text
    assert "SC4032E0-PSG.edf: no channel 'EEG Fpz-Cz'" in text
    assert "SC4042E0-PSG.edf" in text and "resampling to 100 Hz" in text
    assert sorted(dm.skipped) == ["SC4002E0", "SC4011E0", "SC4032E0"]
    assert len(nights) == 11 - 3
    good = _dm(tiny_dir, tmp_path / "ref")._load_nights()
    ref = {n.name: n for n in good}
    for n in nights:
        if n.name != "SC4042E0":
            assert np.array_equal(n.features, ref[n.name].features)
    with pytest.raises(SleepEDFError, match="SC4002E0-PSG.edf"):
        _dm(data, tmp_path / "strict", on_bad_recording="raise")._load_nights()


def test_too_few_subjects_and_config_errors(tiny_dir, tmp_path):
    dm = _dm(tiny_dir, tmp_path, fold=1, num_val_subjects=5)
    with pytest.raises(ConfigError, match=r"datamodule.data_dir.*6 usable subjects.*needs 7"):
        dm.setup("fit")
    with pytest.raises(ConfigError, match="datamodule.scope"):
        _dm(tiny_dir, tmp_path, scope="all")
    with pytest.raises(ConfigError, match="datamodule.data_dir.*does not exist.*download"):
        _dm(tmp_path / "nowhere", tmp_path)
    with pytest.raises(ConfigError, match="datamodule.crop"):
        _dm(tiny_dir, tmp_path, crop="lights")
    with pytest.raises(ConfigError, match="datamodule.fold"):
        _dm(tiny_dir, tmp_path, fold=20)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no Sleep-EDF"):
        _dm(empty, tmp_path).prepare_data()


def test_embedded_default_goes_through_the_reader(tmp_path):
    dm = SleepEDFDataModule(
        embedded_dir=str(tmp_path / "embedded"),
        embedded={"n_subjects": 4, "nights": 1, "sleep_hours": 0.3, "wake_minutes": (3.0, 5.0)},
        cache_dir=str(tmp_path / "cache"),
        num_subjects=4,
        num_val_subjects=1,
        seq_len=4,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert len(list(dm.root.glob("SC4*-PSG.edf"))) == 4
    assert {len(v) for v in dm.subject_split.values()} == {1, 2}


def test_download_helper(tmp_path):
    assert parse_subjects("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="outside"):
        parse_subjects("90")
    calls = {}

    def fake_fetch(subjects, recording, path, on_missing):
        calls.update(subjects=subjects, recording=recording, path=path)
        return [[f"{path}/a-PSG.edf", f"{path}/a-Hypnogram.edf"]]

    files = download(tmp_path, [0, 1], fetch=fake_fetch)
    assert calls["subjects"] == [0, 1] and calls["recording"] == [1, 2]
    assert [f.name for f in files] == ["a-PSG.edf", "a-Hypnogram.edf"]


# ---------------------------------------------------------------------------- a real-layout folder
@pytest.fixture(scope="module")
def mixed_dir(tiny_dir, tmp_path_factory) -> Path:
    """SC subjects 0-5 (tiny set) + SC subjects 20, 21 (outside SC-20) + one Sleep Telemetry
    night of ST subject 1 (ST7011J0, a different person from SC subject 1)."""
    data = _copy(tiny_dir, tmp_path_factory.mktemp("mixed") / "physionet-sleep-data")
    rng = np.random.default_rng(5)
    for subject in (20, 21):
        write_night(data, subject, 1, rng, TINY)
    psg, hyp = write_night(data, 1, 1, rng, TINY, eeg_label="EEG Fpz-Cz")
    st = data / "sleep-telemetry"
    st.mkdir()
    (data / psg.name).rename(st / "ST7011J0-PSG.edf")
    (data / hyp.name).rename(st / "ST7011JV-Hypnogram.edf")
    # the SC night written over by the ST one above is restored from the tiny set
    shutil.copy(tiny_dir / psg.name, data / psg.name)
    shutil.copy(tiny_dir / hyp.name, data / hyp.name)
    return data


def test_scope_default_is_sc20_and_st_is_never_mixed_in(mixed_dir, tmp_path, caplog):
    caplog.set_level("INFO", logger="datamodules.sleep_tsr.datamodule")
    dm = _dm(mixed_dir, tmp_path, fold=1)
    dm.setup("fit")
    assert {r.study for r in dm.files} == {"SC"} and max(r.subject for r in dm.files) == 5
    assert [n.name for n in dm.splits["test"]] == ["SC4011E0", "SC4012E0"]  # no ST7011J0
    text = caplog.text
    assert "SC 13 nights of 8 subjects 0-21; ST 1 nights of 1 subjects 1-1" in text
    assert "scope=sc20 uses 11 nights of 6 subjects 0-5" in text
    assert "3 nights outside scope=sc20 are not used" in text
    every_sc = _dm(mixed_dir, tmp_path, scope="sc", fold=21)
    every_sc.setup("fit")
    assert every_sc.subject_split["test"] == [21] and len(every_sc.subjects()) == 8
    st = _dm(mixed_dir, tmp_path, scope="st", fold=1, num_val_subjects=1)
    st._load_nights()
    assert [r.name for r in st.files] == ["ST7011J0"]


def test_fold_is_the_subject_id_and_bad_test_subjects_are_named(mixed_dir, tmp_path):
    data = _copy(mixed_dir, tmp_path / "data")
    (data / psg_name(1, 1)).write_bytes(b"\x00" * 512)  # subject 1: both nights unreadable
    (data / psg_name(1, 2)).write_bytes(b"\x00" * 512)
    dm = _dm(data, tmp_path, fold=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.setup("fit")
    assert dm.subject_split["test"] == [2]  # not moved by subject 1's skipped nights
    assert 1 not in dm.subject_split["train"] + dm.subject_split["val"]
    with pytest.raises(SleepEDFError, match=r"test subject 1 .*SC4011E0-PSG\.edf.*SC4012E0-PSG"):
        _dm(data, tmp_path, fold=1).setup("fit")
    with pytest.raises(ConfigError, match=r"datamodule.fold: test subject 9 has no recordings"):
        _dm(data, tmp_path, fold=9).setup("fit")
    with pytest.raises(ConfigError, match=r"not among the first num_subjects=4"):
        _dm(data, tmp_path, fold=4, num_subjects=4).setup("fit")


def test_truncated_psg_is_a_data_error_naming_it_even_when_skipping(mixed_dir, tmp_path):
    data = _copy(mixed_dir, tmp_path / "data")
    psg = data / psg_name(3, 1)
    header = read_edf_header(psg)
    assert header.expected_bytes() == psg.stat().st_size
    blob = psg.read_bytes()
    psg.write_bytes(blob[: int(0.75 * len(blob))])
    with pytest.raises(TruncatedPSGError, match=r"SC4031E0-PSG\.edf: truncated.*\(75 %\)") as err:
        _dm(data, tmp_path, on_bad_recording="skip").prepare_data()
    assert isinstance(err.value, DataError)


def test_slow_channel_is_refused_not_read_as_100_hz(mixed_dir, tmp_path):
    raw = mne.io.read_raw_edf(mixed_dir / psg_name(0, 1), verbose="error")
    assert len(raw.ch_names) == 7  # the real SC layout
    assert read_edf_header(mixed_dir / psg_name(0, 1)).rate("EMG submental") == 1.0
    with pytest.raises(ChannelRateError, match=r"'EMG submental' is sampled at 1 Hz.*EEG Pz-Oz"):
        _dm(mixed_dir, tmp_path, channel="EMG submental").prepare_data()
