"""Strict parsing: every damaged or surprising cohort is either read as the user meant (and
counted in the log) or refused with a DataError naming the file and the fix - never dropped
or converted silently. One small fixture cohort per case, each a damaged copy of one
generated 9-participant x 12 s cohort."""

import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from core.checks import ConfigError
from core.errors import DataError
from datamodules.frailty import CohortSchema, CohortSpec, FrailtyDataModule, generate_cohort
from datamodules.frailty.reader import fill_time_gaps, read_cohort, resample

CRITERIA = ["weight_loss", "exhaustion", "low_activity", "slowness", "weakness"]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return generate_cohort(tmp_path_factory.mktemp("strict"), CohortSpec(9, 12.0, seed=2))


@pytest.fixture
def cohort(template, tmp_path):
    dst = tmp_path / "cohort"
    shutil.copytree(template, dst)
    return dst


def _schema(**kw):
    return CohortSchema.from_config({"criteria_columns": CRITERIA, **kw})


def _table(root):
    return pd.read_csv(root / "participants.csv", dtype={"participant_id": str})


def _imu(root, pid):
    return pd.read_csv(root / "imu" / f"{pid}.csv")


def test_decimal_comma_recording_is_refused_naming_the_key_or_parsed(cohort, template):
    table = _table(cohort)
    for pid in table.participant_id:
        frame = _imu(cohort, pid)
        frame.to_csv(cohort / "imu" / f"{pid}.csv", sep=";", decimal=",", index=False)
    table.to_csv(cohort / "participants.csv", sep=";", index=False)
    pid = table.participant_id[0]
    with pytest.raises(DataError, match=rf"{pid}\.csv.*decimal-comma.*schema\.decimal=','"):
        read_cohort(cohort, _schema(delimiter=";"), 100.0, 200)
    table.to_csv(cohort / "participants.csv", sep=";", decimal=",", index=False)
    with pytest.raises(DataError, match=r"participants\.csv.*'sampling_rate_hz'.*decimal=','"):
        read_cohort(cohort, _schema(delimiter=";"), 100.0, 200)
    recs, report = read_cohort(cohort, _schema(delimiter=";", decimal=","), 100.0, 200)
    ref, _ = read_cohort(template, _schema(), 100.0, 200)
    assert report.non_numeric_cells == 0 and len(recs) == len(ref) == 9
    assert all(np.array_equal(a.segments[0], b.segments[0]) for a, b in zip(recs, ref))


def test_decimal_comma_with_comma_delimiter_names_delimiter_and_decimal(cohort):
    pid = _table(cohort).participant_id[0]
    text = (cohort / "imu" / f"{pid}.csv").read_text().splitlines()
    body = [line.replace(".", ",") for line in text[1:]]  # 9,81 split into two fields
    (cohort / "imu" / f"{pid}.csv").write_text("\n".join([text[0], *body]) + "\n")
    with pytest.raises(DataError, match=rf"{pid}\.csv.*delimiter.*decimal"):
        read_cohort(cohort, _schema(), 100.0, 200)


def test_text_scores_are_mapped_or_refused_never_dropped(cohort, template):
    table = _table(cohort)
    words = {0: "Robust", 1: "pre-frail", 2: "pre-frail", 3: "FRAIL", 4: "frail", 5: " frail"}
    table["fried_score"] = table.fried_score.map(words)
    table.to_csv(cohort / "participants.csv", index=False)
    with pytest.raises(DataError, match="text.*score_map"):
        read_cohort(cohort, CohortSchema.from_config({}), 100.0, 200)
    schema = CohortSchema.from_config({"score_map": {"robust": 0, "pre-frail": 1, "frail": 3}})
    recs, report = read_cohort(cohort, schema, 100.0, 200)
    ref, _ = read_cohort(template, CohortSchema.from_config({}), 100.0, 200)
    assert not report.dropped and [r.label for r in recs] == [r.label for r in ref]


def test_gap_in_time_column_splits_the_recording_and_is_counted(cohort, caplog):
    table = _table(cohort)
    pid = table.participant_id[table.sampling_rate_hz == 100.0].iloc[0]
    frame = _imu(cohort, pid)
    # a 3 s hole (cut) and a 0.05 s hole (5 samples, interpolated: max_nan_gap_s = 0.1)
    frame = frame.drop(index=range(400, 700)).drop(index=range(900, 905))
    frame.to_csv(cohort / "imu" / f"{pid}.csv", index=False)
    with caplog.at_level(logging.WARNING):
        recs, report = read_cohort(cohort, _schema(), 100.0, 200)
    rec = next(r for r in recs if r.participant == pid)
    assert report.time_gaps == 2 and report.time_gap_samples == 305
    assert [len(s) for s in rec.segments] == [400, 1200 - 700]  # no window crosses the hole
    assert report.nan_samples_interpolated == 5
    assert "gap(s) in the time column" in caplog.text


def test_fill_time_gaps_inserts_missing_samples():
    t = np.array([0.0, 0.01, 0.02, 0.05, 0.06])
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    out, gaps, missing = fill_time_gaps(x, t)
    assert (gaps, missing) == (1, 2) and out.shape == (7, 2)
    assert np.isnan(out[3:5]).all() and (out[5] == x[3]).all()


def test_time_going_backwards_is_refused_naming_the_row(cohort):
    pid = _table(cohort).participant_id[0]
    frame = _imu(cohort, pid)
    frame.loc[50, "time_s"] = frame.loc[10, "time_s"]
    frame.to_csv(cohort / "imu" / f"{pid}.csv", index=False)
    with pytest.raises(DataError, match=rf"{pid}\.csv.*does not increase at row 50"):
        read_cohort(cohort, _schema(), 100.0, 200)


def test_wrong_declared_rate_without_time_column_is_flagged(cohort, caplog):
    table = _table(cohort)
    table = table[table.sampling_rate_hz == 100.0]
    table.to_csv(cohort / "participants.csv", index=False)
    ok = _schema(time_column=None)
    _, report = read_cohort(cohort, ok, 100.0, 200)
    assert report.rate_suspect == []
    wrong = _schema(time_column=None, rate_column=None, rate_hz=1000.0)  # 10x too high
    with caplog.at_level(logging.WARNING):
        _, report = read_cohort(cohort, wrong, 1000.0, 200)
    assert len(report.rate_suspect) == len(table)
    assert "outside a walk" in caplog.text and "rate_hz" in caplog.text


def test_recording_without_metadata_row_is_counted_and_named(cohort, caplog):
    pid = _table(cohort).participant_id[0]
    shutil.copy(cohort / "imu" / f"{pid}.csv", cohort / "imu" / "GS999.csv")
    with caplog.at_level(logging.WARNING):
        _, report = read_cohort(cohort, _schema(), 100.0, 200)
    assert report.orphan_recordings == ["imu/GS999.csv"]
    assert "no row in the participants table" in caplog.text and "GS999" in caplog.text


def test_missing_class_warns_loudly_and_too_few_for_a_subject_split_errors(cohort, caplog):
    table = _table(cohort)
    table[table.fried_score < 3].to_csv(cohort / "participants.csv", index=False)
    with caplog.at_level(logging.WARNING):
        _, report = read_cohort(cohort, _schema(), 100.0, 200)
    assert report.class_participants[2] == 0
    assert "NO participant of class frail" in caplog.text and "support 0" in caplog.text
    frail = table[table.fried_score >= 3]
    keep = pd.concat([table[table.fried_score < 3], frail.iloc[:1]])
    keep.to_csv(cohort / "participants.csv", index=False)
    dm = FrailtyDataModule(
        data_dir=str(cohort),
        schema={"criteria_columns": CRITERIA},
        cache_dir=None,
        embedded_dir=str(cohort),
    )
    with pytest.raises(DataError, match="needs >= 3 participants of class 2"):
        dm.setup()


def test_upsampling_a_10_hz_cohort_warns(cohort, caplog):
    table = _table(cohort)
    table = table[table.sampling_rate_hz == 100.0].assign(sampling_rate_hz=10.0)
    table.to_csv(cohort / "participants.csv", index=False)
    for pid in table.participant_id:
        _imu(cohort, pid).iloc[::10].to_csv(cohort / "imu" / f"{pid}.csv", index=False)
    with caplog.at_level(logging.WARNING):
        recs, report = read_cohort(cohort, _schema(), 100.0, 200)
    assert report.upsampled == {10.0: len(table)}
    assert "UPSAMPLED 10.0x" in caplog.text and "target_rate_hz=10" in caplog.text
    _, report = read_cohort(cohort, _schema(), 10.0, 50)
    assert not report.upsampled


def test_window_longer_than_every_recording_says_what_to_set(cohort):
    with pytest.raises(
        DataError,
        match="longest recording has 1200 samples at 100 Hz, window is 5000: set datamodule.window or datamodule.target_rate_hz",
    ):
        read_cohort(cohort, _schema(), 100.0, 5000)


def test_participants_table_is_checked_with_the_config_before_any_recording(cohort):
    shutil.rmtree(cohort / "imu")  # nothing but the table is read
    kw = {"data_dir": str(cohort), "cache_dir": None, "embedded_dir": str(cohort)}
    with pytest.raises(ConfigError, match="datamodule.schema.score_column.*fried_total"):
        FrailtyDataModule(schema={"score_column": "fried_total"}, **kw)
    table = _table(cohort)
    table["fried_score"] = table.fried_score.astype(object)
    table.loc[2, "fried_score"] = "three"
    table.to_csv(cohort / "participants.csv", index=False)
    with pytest.raises(DataError, match="participants.csv.*'three'.*score_map"):
        FrailtyDataModule(**kw)


def test_resampling_edges_follow_the_signal_not_zero():
    """128 -> 100 Hz of gravity + a 1 Hz sway: the first and last samples match the analytic
    signal (zero padding gave 8.74 instead of 9.81 at the first sample)."""
    t = np.arange(1280) / 128
    x = (9.81 + 0.5 * np.sin(2 * np.pi * t))[:, None].astype(np.float32)
    y = resample(x, 128.0, 100.0)[:, 0]
    ref = 9.81 + 0.5 * np.sin(2 * np.pi * np.arange(len(y)) / 100)
    assert abs(y[0] - 9.81) < 0.01
    assert np.abs(y[:10] - ref[:10]).max() < 0.01 and np.abs(y[-10:] - ref[-10:]).max() < 0.01
