"""Read a GSTRIDE-like cohort (participants table + one IMU CSV each) into clean segments.

Every recording is brought to one sampling rate, labelled from its participant's Fried
score and cut into NaN-free segments. Bad input is either dropped and counted (reported in
the log and in the cache metadata) or raised as a :class:`CohortError` naming the file and
the schema key to fix - never silently mislabelled.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from core.errors import DataError
from datamodules.frailty.labels import fried_to_label
from datamodules.frailty.schema import CohortSchema

log = logging.getLogger(__name__)

# A declared rate and the time column may disagree by this much before we refuse the file.
RATE_TOLERANCE = 0.02


class CohortError(DataError):
    """Cohort files that cannot be read as configured; the message names file and fix."""


@dataclass
class Recording:
    """One participant's IMU walk at the target rate, split where NaN stretches were cut."""

    participant: str
    score: int
    label: int
    source_rate_hz: float
    segments: list[np.ndarray]  # each (time, channels) float32, NaN-free


@dataclass
class CohortReport:
    """What was read and what was dropped, for the log and the cache metadata."""

    participants_in_table: int = 0
    recordings_used: int = 0
    dropped: Counter = field(default_factory=Counter)
    source_rates: Counter = field(default_factory=Counter)
    nan_stretches_cut: int = 0
    nan_samples_interpolated: int = 0

    def as_dict(self) -> dict:
        return {
            "participants_in_table": self.participants_in_table,
            "recordings_used": self.recordings_used,
            "dropped": dict(self.dropped),
            "source_rates_hz": {str(k): v for k, v in self.source_rates.items()},
            "nan_stretches_cut": self.nan_stretches_cut,
            "nan_samples_interpolated": self.nan_samples_interpolated,
        }

    def log_summary(self) -> None:
        log.info(
            "frailty cohort: %d/%d participants used, rates %s, %d NaN stretches cut, "
            "%d NaN samples interpolated",
            self.recordings_used,
            self.participants_in_table,
            dict(self.source_rates),
            self.nan_stretches_cut,
            self.nan_samples_interpolated,
        )
        for reason, count in sorted(self.dropped.items()):
            log.warning("frailty cohort: dropped %d participant(s): %s", count, reason)


def resample(signal: np.ndarray, source_hz: float, target_hz: float) -> np.ndarray:
    """Polyphase resampling (anti-aliased) of a (time, channels) array to ``target_hz``."""
    if abs(source_hz - target_hz) < 1e-9:
        return signal
    ratio = Fraction(target_hz / source_hz).limit_denominator(1000)
    out = resample_poly(signal, ratio.numerator, ratio.denominator, axis=0)
    return out.astype(np.float32, copy=False)


def split_nan_stretches(signal: np.ndarray, max_gap: int) -> tuple[list[np.ndarray], int, int]:
    """Interpolate NaN gaps of at most ``max_gap`` samples, cut the recording at longer ones.

    Returns the NaN-free segments, the number of stretches cut and of samples interpolated.
    A sample counts as missing when any channel is NaN (the IMU sample is incomplete).
    """
    bad = ~np.isfinite(signal).all(axis=1)
    if not bad.any():
        return [signal], 0, 0
    # Runs of missing samples: starts/ends from the edges of the boolean mask.
    edges = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    interior = (starts > 0) & (ends < len(signal))
    fill = interior & (lengths <= max_gap)
    signal = signal.copy()
    if fill.any():
        good = ~bad
        idx = np.arange(len(signal))
        fill_mask = np.zeros(len(signal), dtype=bool)
        for s, e in zip(starts[fill], ends[fill]):
            fill_mask[s:e] = True
        for c in range(signal.shape[1]):
            signal[fill_mask, c] = np.interp(idx[fill_mask], idx[good], signal[good, c])
    cut = ~fill
    segments, prev = [], 0
    for s, e in zip(starts[cut], ends[cut]):
        if s > prev:
            segments.append(signal[prev:s])
        prev = e
    if prev < len(signal):
        segments.append(signal[prev:])
    return segments, int(cut.sum()), int(lengths[fill].sum())


def _read_table(root: Path, schema: CohortSchema) -> pd.DataFrame:
    path = root / schema.participants_file
    if not path.is_file():
        raise CohortError(
            f"participants table {path} not found; set datamodule.schema.participants_file "
            "(relative to datamodule.data_dir)"
        )
    table = pd.read_csv(path, sep=schema.delimiter, dtype={schema.id_column: str})
    needed = [schema.id_column, *schema.criteria_columns]
    needed += [c for c in (schema.score_column, schema.rate_column) if c is not None]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise CohortError(
            f"{path}: column(s) {missing} not found (columns are {list(table.columns)}); "
            "fix datamodule.schema.id_column / score_column / criteria_columns / rate_column"
        )
    table[schema.id_column] = table[schema.id_column].astype(str).str.strip()
    dupes = table[schema.id_column][table[schema.id_column].duplicated()].unique().tolist()
    if dupes:
        raise CohortError(f"{path}: duplicate participant ids {dupes[:10]} in {schema.id_column}")
    return table


def _scores(table: pd.DataFrame, schema: CohortSchema, path: Path) -> pd.Series:
    """Fried score per participant (NaN where unknown); criteria must agree with the score."""
    crit = None
    if schema.criteria_columns:
        crit = table[list(schema.criteria_columns)].apply(pd.to_numeric, errors="coerce")
        bad = crit.notna() & ~crit.isin([0, 1])
        if bad.any().any():
            row = table[schema.id_column][bad.any(axis=1)].iloc[0]
            raise CohortError(
                f"{path}: Fried criteria must be 0/1, participant {row} has "
                f"{crit[bad.any(axis=1)].iloc[0].to_dict()}"
            )
        crit = crit.sum(axis=1, min_count=len(schema.criteria_columns))
    if schema.score_column is None:
        return crit
    score = pd.to_numeric(table[schema.score_column], errors="coerce")
    if crit is not None:
        disagree = score.notna() & crit.notna() & (score != crit)
        if disagree.any():
            ids = table[schema.id_column][disagree].tolist()[:10]
            raise CohortError(
                f"{path}: {schema.score_column} disagrees with the sum of "
                f"{list(schema.criteria_columns)} for participants {ids}"
            )
        score = score.fillna(crit)
    return score


def _source_rate(
    frame: pd.DataFrame, declared: float | None, schema: CohortSchema, path: Path
) -> float:
    """The recording's rate: declared (table or schema), else from the time column; when both
    exist they must agree, so a wrong rate column cannot silently stretch the gait."""
    measured = None
    if schema.time_column is not None:
        if schema.time_column not in frame.columns:
            raise CohortError(
                f"{path}: time column {schema.time_column!r} not found (columns are "
                f"{list(frame.columns)}); fix datamodule.schema.time_column or set it to null"
            )
        t = pd.to_numeric(frame[schema.time_column], errors="coerce").to_numpy() * schema.time_scale
        t = t[np.isfinite(t)]
        dt = np.diff(t)
        dt = dt[dt > 0]
        if len(dt):
            # Span / count is immune to rounded timestamps; the median step guards against gaps.
            measured = 1.0 / float(np.median(dt))
            span = (len(t) - 1) / (t[-1] - t[0])
            if abs(span - measured) < 0.01 * measured:
                measured = float(span)
    if declared is not None and np.isfinite(declared) and declared > 0:
        if measured is not None and abs(measured - declared) > RATE_TOLERANCE * declared:
            raise CohortError(
                f"{path}: declared rate {declared:g} Hz but the time column "
                f"{schema.time_column!r} says {measured:.3g} Hz; fix the rate in "
                "datamodule.schema.rate_column / rate_hz or time_scale"
            )
        return float(declared)
    if measured is None:
        raise CohortError(
            f"{path}: no sampling rate (no rate in the table / schema and no usable "
            f"{schema.time_column!r} column); set datamodule.schema.rate_column or rate_hz"
        )
    return measured


def read_cohort(
    root: str | Path,
    schema: CohortSchema,
    target_rate_hz: float,
    min_samples: int,
    max_nan_gap_s: float = 0.1,
) -> tuple[list[Recording], CohortReport]:
    """Read every participant of the table; return usable recordings and what was dropped.

    ``min_samples`` (one window) is the shortest segment kept: shorter segments can give no
    window. A participant with no score, no recording file or no segment that long is dropped
    and counted; missing channel columns, unreadable scores or rates raise ``CohortError``.
    """
    root = Path(root)
    table = _read_table(root, schema)
    table_path = root / schema.participants_file
    scores = _scores(table, schema, table_path)
    report = CohortReport(participants_in_table=len(table))
    recordings: list[Recording] = []

    for i, pid in enumerate(table[schema.id_column]):
        if pd.isna(scores.iloc[i]):
            report.dropped["no Fried score"] += 1
            continue
        try:
            label = int(fried_to_label(scores.iloc[i]))
        except ValueError as err:
            raise CohortError(f"{table_path}: participant {pid}: {err}") from err
        path = root / schema.recording_pattern.format(id=pid)
        if not path.is_file():
            report.dropped["recording file missing"] += 1
            log.warning("frailty cohort: no recording for participant %s at %s", pid, path)
            continue
        header = pd.read_csv(path, sep=schema.delimiter, nrows=0).columns
        missing = [c for c in schema.channel_columns if c not in header]
        if missing:
            raise CohortError(
                f"{path}: channel column(s) {missing} not found (columns are {list(header)}); "
                "fix datamodule.schema.channel_columns or remove the participant"
            )
        cols = list(schema.channel_columns)
        if schema.time_column is not None and schema.time_column in header:
            cols.append(schema.time_column)
        frame = pd.read_csv(path, sep=schema.delimiter, usecols=cols)
        declared = schema.rate_hz
        if schema.rate_column is not None:
            declared = pd.to_numeric(table[schema.rate_column].iloc[i], errors="coerce")
        rate = _source_rate(frame, declared, schema, path)
        signal = (
            frame[list(schema.channel_columns)]
            .apply(pd.to_numeric, errors="coerce")
            .to_numpy(np.float32)
        )
        max_gap = int(round(max_nan_gap_s * rate))
        pieces, cut, filled = split_nan_stretches(signal, max_gap)
        report.nan_stretches_cut += cut
        report.nan_samples_interpolated += filled
        pieces = [resample(p, rate, target_rate_hz) for p in pieces]
        kept = [np.ascontiguousarray(p, dtype=np.float32) for p in pieces if len(p) >= min_samples]
        if not kept:
            report.dropped["shorter than one window (after cutting NaN stretches)"] += 1
            log.warning("frailty cohort: %s has no stretch of %d samples", path, min_samples)
            continue
        report.recordings_used += 1
        report.source_rates[round(rate, 3)] += 1
        recordings.append(Recording(pid, int(scores.iloc[i]), label, rate, kept))
    if not recordings:
        raise CohortError(
            f"{root}: no usable participant (dropped: {dict(report.dropped)}); check "
            "datamodule.data_dir and datamodule.schema"
        )
    report.log_summary()
    return recordings, report
