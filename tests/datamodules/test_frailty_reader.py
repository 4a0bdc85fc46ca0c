"""The cohort reader on small CSV cohorts written here, including every kind of bad input."""

import logging

import numpy as np
import pandas as pd
import pytest

from datamodules.frailty import CohortError, CohortSchema, CohortSpec, generate_cohort, read_cohort
from datamodules.frailty.labels import fried_to_label
from datamodules.frailty.reader import resample, split_nan_stretches

CRITERIA = ["weight_loss", "exhaustion", "low_activity", "slowness", "weakness"]


@pytest.fixture(scope="module")
def cohort_template(tmp_path_factory):
    """9 participants x 12 s, both sensor rates; copied per test so tests can damage it."""
    return generate_cohort(tmp_path_factory.mktemp("cohort"), CohortSpec(9, 12.0, seed=1))


@pytest.fixture
def cohort(cohort_template, tmp_path):
    import shutil

    dst = tmp_path / "cohort"
    shutil.copytree(cohort_template, dst)
    return dst


def _schema(**kw):
    return CohortSchema.from_config({"criteria_columns": CRITERIA, **kw})


def _table(root):
    return pd.read_csv(root / "participants.csv", dtype={"participant_id": str})


def test_fried_score_to_label():
    assert fried_to_label(np.array([0, 1, 2, 3, 4, 5])).tolist() == [0, 1, 1, 2, 2, 2]
    for bad in (2.5, 6, -1, np.nan):
        with pytest.raises(ValueError, match="integers 0-5"):
            fried_to_label(bad)


def test_reads_every_participant_resampled_and_labelled(cohort):
    table = _table(cohort)
    assert set(table["sampling_rate_hz"]) == {100.0, 128.0}  # mixed sensor rates on disk
    recs, report = read_cohort(cohort, _schema(), target_rate_hz=100.0, min_samples=200)
    assert len(recs) == 9 and report.recordings_used == 9 and not report.dropped
    assert report.source_rates == {
        100.0: (table.sampling_rate_hz == 100).sum(),
        128.0: (table.sampling_rate_hz == 128).sum(),
    }
    for rec in recs:
        row = table.set_index("participant_id").loc[rec.participant]
        assert rec.score == row.fried_score
        assert rec.label == fried_to_label(row.fried_score)
        (seg,) = rec.segments
        assert seg.shape[1] == 6 and seg.dtype == np.float32
        assert abs(len(seg) - 1200) <= 1  # 12 s at 100 Hz whatever the source rate
        assert np.isfinite(seg).all()


def test_resampling_keeps_the_gait_frequency():
    t = np.arange(0, 10, 1 / 128)
    x = np.sin(2 * np.pi * 1.7 * t)[:, None].astype(np.float32)
    y = resample(x, 128.0, 100.0)
    assert len(y) == 1000
    spectrum = np.abs(np.fft.rfft(y[:, 0]))
    assert np.fft.rfftfreq(1000, 1 / 100)[spectrum.argmax()] == pytest.approx(1.7, abs=0.1)


def test_missing_channel_column_is_an_error_naming_the_file(cohort):
    path = cohort / "imu" / "GS004.csv"
    pd.read_csv(path).drop(columns=["gyr_z"]).to_csv(path, index=False)
    with pytest.raises(CohortError, match=r"GS004\.csv.*gyr_z.*channel_columns"):
        read_cohort(cohort, _schema(), 100.0, 200)


def test_nan_stretch_cuts_the_recording_short_gap_is_interpolated(cohort, caplog):
    path = cohort / "imu" / "GS002.csv"
    frame = pd.read_csv(path)
    n = len(frame)
    frame.loc[n // 2 : n // 2 + 100, "acc_y"] = np.nan  # ~1 s stretch: cut
    frame.loc[100:103, "gyr_x"] = np.nan  # 4 samples: interpolated
    frame.to_csv(path, index=False)
    recs, report = read_cohort(cohort, _schema(), 100.0, 200, max_nan_gap_s=0.1)
    rec = next(r for r in recs if r.participant == "GS002")
    assert len(rec.segments) == 2 and report.nan_stretches_cut == 1
    assert report.nan_samples_interpolated == 4
    assert all(np.isfinite(s).all() for s in rec.segments)


def test_split_nan_stretches_edges():
    x = np.arange(20, dtype=np.float32)[:, None].repeat(2, axis=1)
    x[:3] = np.nan  # leading NaNs are never interpolated (nothing to the left): dropped
    x[8:10, 1] = np.nan  # short interior gap: linear fill
    segs, cut, filled = split_nan_stretches(x, max_gap=2)
    assert cut == 1 and filled == 2 and len(segs) == 1
    assert np.allclose(segs[0][:, 1], np.arange(3, 20))


def test_participant_without_frailty_score_is_dropped_and_counted(cohort, caplog):
    table = _table(cohort)
    table.loc[0, ["fried_score", *CRITERIA]] = np.nan
    table.to_csv(cohort / "participants.csv", index=False)
    with caplog.at_level(logging.WARNING):
        recs, report = read_cohort(cohort, _schema(), 100.0, 200)
    assert len(recs) == 8 and report.dropped == {"no Fried score": 1}
    assert table.participant_id[0] not in {r.participant for r in recs}
    assert "dropped 1 participant(s): no Fried score" in caplog.text


def test_score_from_criteria_when_score_column_is_empty(cohort):
    table = _table(cohort)
    table.loc[1, "fried_score"] = np.nan  # criteria still there: the sum is used
    table.to_csv(cohort / "participants.csv", index=False)
    recs, _ = read_cohort(cohort, _schema(), 100.0, 200)
    rec = next(r for r in recs if r.participant == table.participant_id[1])
    assert rec.score == table.loc[1, CRITERIA].sum()


def test_score_disagreeing_with_criteria_or_out_of_range_raises(cohort):
    table = _table(cohort)
    table.loc[2, "fried_score"] = (table.loc[2, "fried_score"] + 1) % 6
    table.to_csv(cohort / "participants.csv", index=False)
    with pytest.raises(CohortError, match="disagrees"):
        read_cohort(cohort, _schema(), 100.0, 200)
    table.loc[2, "fried_score"] = 7
    table.to_csv(cohort / "participants.csv", index=False)
    with pytest.raises(CohortError, match=r"participant GS003.*integers 0-5"):
        read_cohort(cohort, CohortSchema.from_config({}), 100.0, 200)


def test_recording_shorter_than_one_window_is_dropped(cohort):
    path = cohort / "imu" / "GS005.csv"
    pd.read_csv(path).head(150).to_csv(path, index=False)  # < 200 samples at 100 Hz
    recs, report = read_cohort(cohort, _schema(), 100.0, 200)
    assert "GS005" not in {r.participant for r in recs}
    assert sum(report.dropped.values()) == 1 and "shorter than one window" in next(
        iter(report.dropped)
    )


def test_missing_recording_file_is_dropped_and_counted(cohort):
    (cohort / "imu" / "GS006.csv").unlink()
    recs, report = read_cohort(cohort, _schema(), 100.0, 200)
    assert len(recs) == 8 and report.dropped == {"recording file missing": 1}


def test_declared_rate_contradicting_the_time_column_raises(cohort):
    table = _table(cohort)
    i = int(np.flatnonzero(table.sampling_rate_hz == 128.0)[0])
    table.loc[i, "sampling_rate_hz"] = 100.0  # wrong: the file is sampled at 128 Hz
    table.to_csv(cohort / "participants.csv", index=False)
    with pytest.raises(CohortError, match=rf"{table.participant_id[i]}\.csv.*128 Hz|says 128"):
        read_cohort(cohort, _schema(), 100.0, 200)


def test_rate_inferred_from_time_column_without_rate_column(cohort):
    recs, report = read_cohort(cohort, _schema(rate_column=None), 100.0, 200)
    assert set(report.source_rates) == {100.0, 128.0} and len(recs) == 9


def test_no_rate_anywhere_raises(cohort):
    path = cohort / "imu" / "GS003.csv"
    frame = pd.read_csv(path)
    frame["time_s"] = np.nan  # no usable timestamps and no rate column: cannot resample
    frame.to_csv(path, index=False)
    with pytest.raises(CohortError, match=r"GS003\.csv: no sampling rate.*rate_column"):
        read_cohort(cohort, _schema(rate_column=None), 100.0, 200)
    with pytest.raises(ValueError, match="sampling rate"):
        CohortSchema.from_config({"rate_column": None, "time_column": None})


def test_schema_errors_name_the_key(cohort):
    with pytest.raises(ValueError, match="unknown key.*channels"):
        CohortSchema.from_config({"channels": ["a"]})
    with pytest.raises(ValueError, match="recording_pattern"):
        CohortSchema.from_config({"recording_pattern": "imu/x.csv"})
    with pytest.raises(CohortError, match="score_column.*fried_total"):
        read_cohort(cohort, _schema(score_column="fried_total"), 100.0, 200)
    with pytest.raises(CohortError, match="participants table"):
        read_cohort(cohort, _schema(participants_file="nope.csv"), 100.0, 200)


def test_custom_layout_loads_without_code_changes(cohort, tmp_path):
    """Different file pattern, column names, delimiter and ms timestamps: config only."""
    table = _table(cohort).rename(columns={"participant_id": "ID", "fried_score": "Fried"})
    out = tmp_path / "other"
    (out / "raw").mkdir(parents=True)
    table.drop(columns=["sampling_rate_hz"]).to_csv(out / "meta.csv", sep=";", index=False)
    names = {"acc_x": "AccX", "acc_y": "AccY", "acc_z": "AccZ"}
    names |= {"gyr_x": "GyrX", "gyr_y": "GyrY", "gyr_z": "GyrZ"}
    for pid in table.ID:
        f = pd.read_csv(cohort / "imu" / f"{pid}.csv").rename(columns=names)
        f["t_ms"] = f.pop("time_s") * 1000
        f.to_csv(out / "raw" / f"{pid}_foot.csv", sep=";", index=False)
    schema = CohortSchema.from_config(
        {
            "participants_file": "meta.csv",
            "id_column": "ID",
            "score_column": "Fried",
            "recording_pattern": "raw/{id}_foot.csv",
            "channel_columns": list(names.values()),
            "time_column": "t_ms",
            "time_scale": 1e-3,
            "rate_column": None,
            "delimiter": ";",
        }
    )
    recs, _ = read_cohort(out, schema, 100.0, 200)
    ref, _ = read_cohort(cohort, _schema(), 100.0, 200)
    assert [r.label for r in recs] == [r.label for r in ref]
    assert np.allclose(recs[0].segments[0], ref[0].segments[0], atol=1e-4)
