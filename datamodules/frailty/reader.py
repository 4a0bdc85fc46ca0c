"""Read a GSTRIDE-like cohort (participants table + one IMU CSV each) into clean segments.

Every recording is brought to one sampling rate, labelled from its participant's Fried
score and cut into NaN-free segments. Bad input is either dropped and counted (reported in
the log and in the cache metadata) or raised as a :class:`CohortError` naming the file and
the schema key to fix - never silently mislabelled.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from core.errors import DataError
from datamodules.frailty.labels import CLASS_NAMES, fried_to_label
from datamodules.frailty.schema import CohortSchema

log = logging.getLogger(__name__)

# A declared rate and the time column may disagree by this much before we refuse the file.
RATE_TOLERANCE = 0.02
# A time step longer than this many sampling periods is a gap (samples missing).
GAP_FACTOR = 1.5
# Without a time column the declared rate is checked against the gait: the dominant frequency
# of a foot-IMU walk (stride rate 0.5-1.5 Hz and its first harmonics) must fall in this band.
GAIT_BAND_HZ = (0.3, 6.0)
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+([eE][-+]?\d+)?\s*$")


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
    non_numeric_cells: int = 0
    time_gaps: int = 0
    time_gap_samples: int = 0
    upsampled: Counter = field(default_factory=Counter)  # source rate -> recordings
    rate_suspect: list[str] = field(default_factory=list)
    orphan_recordings: list[str] = field(default_factory=list)
    dropped_ids: dict[str, list[str]] = field(default_factory=dict)
    class_participants: list[int] = field(default_factory=lambda: [0, 0, 0])
    longest_samples: int = 0

    def drop(self, reason: str, pid: str) -> None:
        self.dropped[reason] += 1
        self.dropped_ids.setdefault(reason, []).append(str(pid))

    def as_dict(self) -> dict:
        return {
            "participants_in_table": self.participants_in_table,
            "recordings_used": self.recordings_used,
            "dropped": dict(self.dropped),
            "dropped_ids": self.dropped_ids,
            "source_rates_hz": {str(k): v for k, v in self.source_rates.items()},
            "nan_stretches_cut": self.nan_stretches_cut,
            "nan_samples_interpolated": self.nan_samples_interpolated,
            "non_numeric_cells": self.non_numeric_cells,
            "time_gaps": self.time_gaps,
            "time_gap_samples": self.time_gap_samples,
            "upsampled_from_hz": {str(k): v for k, v in self.upsampled.items()},
            "rate_suspect": self.rate_suspect,
            "orphan_recordings": self.orphan_recordings,
            "class_participants": self.class_participants,
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
            ids = self.dropped_ids.get(reason, [])
            more = f" (+{len(ids) - 10} more)" if len(ids) > 10 else ""
            log.warning(
                "frailty cohort: dropped %d participant(s): %s: %s%s",
                count,
                reason,
                ", ".join(ids[:10]),
                more,
            )
        if self.non_numeric_cells:
            log.warning(
                "frailty cohort: %d non-numeric cell(s) in channel columns read as missing "
                "(interpolated or cut like NaN)",
                self.non_numeric_cells,
            )
        if self.time_gaps:
            log.warning(
                "frailty cohort: %d gap(s) in the time column (%d missing samples): "
                "recordings split there (gaps up to max_nan_gap_s interpolated), no window "
                "crosses a gap",
                self.time_gaps,
                self.time_gap_samples,
            )
        if self.orphan_recordings:
            log.warning(
                "frailty cohort: %d recording(s) have no row in the participants table and "
                "are not used: %s",
                len(self.orphan_recordings),
                ", ".join(self.orphan_recordings[:10]),
            )


def resample(signal: np.ndarray, source_hz: float, target_hz: float) -> np.ndarray:
    """Polyphase resampling (anti-aliased) of a (time, channels) array to ``target_hz``.

    The FIR filter reaches past both ends of the segment; scipy's default zero padding would
    pull the first and last ~7 samples towards 0 (9.81 m/s^2 of gravity came out as 8.74 at
    128 -> 100 Hz). ``padtype="line"`` extends each end along the line through the segment's
    first and last samples, so a constant or slowly varying channel keeps its value there.
    """
    if abs(source_hz - target_hz) < 1e-9:
        return signal
    ratio = Fraction(target_hz / source_hz).limit_denominator(1000)
    out = resample_poly(signal, ratio.numerator, ratio.denominator, axis=0, padtype="line")
    return out.astype(np.float32, copy=False)


def split_nan_stretches(signal: np.ndarray, max_gap: int) -> tuple[list[np.ndarray], int, int]:
    """Interpolate NaN gaps of at most ``max_gap`` samples, cut the recording at longer ones.

    Returns the NaN-free segments, the number of stretches cut and of samples interpolated.
    A sample counts as missing when any channel is NaN (the IMU sample is incomplete).
    """
    segments, _, cut, filled = split_nan_stretches_at(signal, max_gap)
    return segments, cut, filled


def split_nan_stretches_at(
    signal: np.ndarray, max_gap: int
) -> tuple[list[np.ndarray], list[int], int, int]:
    """:func:`split_nan_stretches` that also returns where each segment starts (sample index
    into ``signal``), so a window can be placed in time (predict's ``windows.csv``)."""
    bad = ~np.isfinite(signal).all(axis=1)
    if not bad.any():
        return [signal], [0], 0, 0
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
    segments, offsets, prev = [], [], 0
    for s, e in zip(starts[cut], ends[cut]):
        if s > prev:
            segments.append(signal[prev:s])
            offsets.append(int(prev))
        prev = e
    if prev < len(signal):
        segments.append(signal[prev:])
        offsets.append(int(prev))
    return segments, offsets, int(cut.sum()), int(lengths[fill].sum())


def _numeric(column: pd.Series, path: Path, schema: CohortSchema) -> tuple[pd.Series, int]:
    """Column -> floats. Text that is a decimal-comma number while ``decimal`` is ``"."``
    raises (naming the file and the key); other text becomes NaN and is counted."""
    values = pd.to_numeric(column, errors="coerce")
    text = column.notna() & values.isna()
    if text.any():
        bad = column[text].astype(str)
        if schema.decimal == "." and bad.str.match(_DECIMAL_COMMA).any():
            example = bad[bad.str.match(_DECIMAL_COMMA)].iloc[0]
            raise CohortError(
                f"{path}: column {column.name!r} holds decimal-comma numbers such as "
                f"{example!r}; set datamodule.schema.decimal=',' (and a delimiter other than "
                "',', e.g. datamodule.schema.delimiter=';')"
            )
    return values, int(text.sum())


def _read_csv(path: Path, schema: CohortSchema, **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` with the schema's separator and decimal mark; a malformed file (often a
    decimal comma read with delimiter ',') raises naming the file and both keys."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = [fh.readline() for _ in range(3)]
    counts = [line.count(schema.delimiter) for line in lines if line.strip()]
    if len(counts) > 1 and max(counts[1:]) > counts[0]:
        # pandas would silently turn the extra leading fields into an index
        raise CohortError(
            f"{path}: data rows have {max(counts[1:]) + 1} fields but the header has "
            f"{counts[0] + 1} with delimiter={schema.delimiter!r} (a decimal comma read with "
            "delimiter ','?); set datamodule.schema.delimiter / decimal to the file's "
            "separator and decimal mark"
        )
    try:
        return pd.read_csv(path, sep=schema.delimiter, decimal=schema.decimal, **kwargs)
    except (pd.errors.ParserError, ValueError) as err:
        raise CohortError(
            f"{path}: cannot be parsed with delimiter={schema.delimiter!r} "
            f"decimal={schema.decimal!r} ({err}); set datamodule.schema.delimiter / decimal "
            "to the file's separator and decimal mark"
        ) from err


def read_participants(root: str | Path, schema: CohortSchema) -> tuple[pd.DataFrame, pd.Series]:
    """The participants table and each participant's Fried score (NaN where unknown), fully
    checked: the datamodule calls this when the config is checked, before any recording is
    read. Raises ``SchemaMismatch`` for a missing file/column and ``CohortError`` for content."""
    root = Path(root)
    path = root / schema.participants_file
    if not path.is_file():
        raise SchemaMismatch(
            "datamodule.schema.participants_file",
            f"participants table {path} not found (relative to datamodule.data_dir)",
        )
    table = _read_csv(path, schema, dtype={schema.id_column: str})
    keys = {"id_column": [schema.id_column], "criteria_columns": list(schema.criteria_columns)}
    keys["score_column"] = [schema.score_column] if schema.score_column else []
    keys["rate_column"] = [schema.rate_column] if schema.rate_column else []
    for key, cols in keys.items():
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise SchemaMismatch(
                f"datamodule.schema.{key}",
                f"column(s) {missing} not in {path} (columns are {list(table.columns)})",
            )
    table[schema.id_column] = table[schema.id_column].astype(str).str.strip()
    dupes = table[schema.id_column][table[schema.id_column].duplicated()].unique().tolist()
    if dupes:
        raise CohortError(f"{path}: duplicate participant ids {dupes[:10]} in {schema.id_column}")
    if schema.rate_column is not None:
        table[schema.rate_column] = _numeric(table[schema.rate_column], path, schema)[0]
    return table, _scores(table, schema, path)


def read_unlabelled_participants(
    root: str | Path, schema: CohortSchema
) -> tuple[pd.DataFrame, pd.Series, CohortSchema]:
    """A participants table for prediction: only the id column is required.

    The Fried score (or the five criteria) and the rate column are used when the table has
    them and ignored when it has not. Returns the table, each participant's score (NaN where
    unknown, all NaN without score columns) and the schema as it applies to this table (score
    and rate keys dropped where their columns are absent). Bad content raises ``CohortError``.
    """
    path = Path(root) / schema.participants_file
    table = _read_csv(path, schema, dtype={schema.id_column: str})
    if schema.id_column not in table.columns:
        raise CohortError(
            f"{path}: no participant id column {schema.id_column!r} (columns are "
            f"{list(table.columns)}); set predict.predictor.schema.id_column"
        )
    table[schema.id_column] = table[schema.id_column].astype(str).str.strip()
    dupes = table[schema.id_column][table[schema.id_column].duplicated()].unique().tolist()
    if dupes:
        raise CohortError(f"{path}: duplicate participant ids {dupes[:10]} in {schema.id_column}")
    criteria = tuple(c for c in schema.criteria_columns if c in table.columns)
    has_score = schema.score_column is not None and schema.score_column in table.columns
    if has_score:
        schema = replace(schema, criteria_columns=criteria if len(criteria) == 5 else ())
    elif len(criteria) == 5:
        schema = replace(schema, score_column=None, criteria_columns=criteria)
    else:
        schema = replace(schema, score_column=None, criteria_columns=())
    if schema.rate_column is not None and schema.rate_column not in table.columns:
        schema = replace(schema, rate_column=None)
    if schema.rate_column is not None:
        table[schema.rate_column] = _numeric(table[schema.rate_column], path, schema)[0]
    if schema.score_column is None and not schema.criteria_columns:
        scores = pd.Series(np.nan, index=table.index)
    else:
        scores = _scores(table, schema, path)
    return table, scores, schema


def _text_scores(column: pd.Series, ids: pd.Series, schema: CohortSchema, path: Path) -> pd.Series:
    """Numbers stay; text goes through ``score_map`` or raises - never dropped as missing."""
    numbers, _ = _numeric(column, path, schema)
    text = column.notna() & numbers.isna()
    if not text.any():
        return numbers
    words = column[text].astype(str).str.strip().str.lower()
    mapping = schema.score_map or {}
    unknown = ~words.isin(list(mapping))
    if unknown.any():
        examples = sorted(set(column[text][unknown].astype(str)))[:5]
        who = ids[text][unknown].tolist()[:5]
        raise CohortError(
            f"{path}: {column.name!r} holds text {examples} (participants {who}), not Fried "
            "scores 0-5; map it with datamodule.schema.score_map, e.g. "
            "'{robust: 0, pre-frail: 1, frail: 3}', or point score_column at the numeric score"
        )
    numbers = numbers.copy()
    numbers[text] = words.map(mapping).astype(float)
    return numbers


def _scores(table: pd.DataFrame, schema: CohortSchema, path: Path) -> pd.Series:
    """Fried score per participant (NaN where unknown); criteria must agree with the score."""
    ids = table[schema.id_column]
    crit = None
    if schema.criteria_columns:
        crit = pd.DataFrame(
            {c: _numeric(table[c], path, schema)[0] for c in schema.criteria_columns}
        )
        text = table[list(schema.criteria_columns)].notna() & crit.isna()
        bad = (crit.notna() & ~crit.isin([0, 1])) | text
        if bad.any().any():
            row = bad.any(axis=1)
            raise CohortError(
                f"{path}: Fried criteria must be 0/1, participant {ids[row].iloc[0]} has "
                f"{table.loc[row, list(schema.criteria_columns)].iloc[0].to_dict()}"
            )
        crit = crit.sum(axis=1, min_count=len(schema.criteria_columns))
    if schema.score_column is None:
        return crit
    score = _text_scores(table[schema.score_column], ids, schema, path)
    if crit is not None:
        disagree = score.notna() & crit.notna() & (score != crit)
        if disagree.any():
            raise CohortError(
                f"{path}: {schema.score_column} disagrees with the sum of "
                f"{list(schema.criteria_columns)} for participants {ids[disagree].tolist()[:10]}"
            )
        score = score.fillna(crit)
    return score


class SchemaMismatch(CohortError):
    """The schema names a file or column the cohort does not have (a config mistake)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


def _time_seconds(frame: pd.DataFrame, schema: CohortSchema, path: Path) -> np.ndarray | None:
    """The time column in seconds; time that goes backwards or repeats raises."""
    if schema.time_column is None:
        return None
    if schema.time_column not in frame.columns:
        raise CohortError(
            f"{path}: time column {schema.time_column!r} not found (columns are "
            f"{list(frame.columns)}); fix datamodule.schema.time_column or set it to null"
        )
    t = _numeric(frame[schema.time_column], path, schema)[0].to_numpy(float) * schema.time_scale
    finite = np.flatnonzero(np.isfinite(t))
    steps = np.diff(t[finite])
    if (steps <= 0).any():
        row = int(finite[1:][steps <= 0][0])
        raise CohortError(
            f"{path}: time column {schema.time_column!r} does not increase at row {row} "
            f"({t[finite][np.flatnonzero(steps <= 0)[0]]:g} -> {t[row]:g} s): sort the file or "
            "remove repeated rows"
        )
    return t


def _source_rate(
    t: np.ndarray | None, declared: float | None, schema: CohortSchema, path: Path
) -> float:
    """The recording's rate: declared (table or schema), else from the time column; when both
    exist they must agree, so a wrong rate column cannot silently stretch the gait."""
    measured = None
    if t is not None:
        t = t[np.isfinite(t)]
        dt = np.diff(t)
        if len(dt):
            # The median step ignores gaps; span / count is immune to rounded timestamps.
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


def fill_time_gaps(signal: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Put the samples a gap in the time column left out back as NaN rows, so the NaN logic
    interpolates short gaps and cuts the recording at long ones (no window crosses a hole).

    A step longer than ``GAP_FACTOR`` median steps is a gap of ``round(step / median) - 1``
    samples. Returns the signal, the number of gaps and of missing samples inserted.
    """
    dt = np.diff(t)
    finite = np.isfinite(dt)
    if not finite.any():
        return signal, 0, 0
    step = float(np.median(dt[finite]))
    gap = finite & (dt > GAP_FACTOR * step)
    if not gap.any():
        return signal, 0, 0
    missing = np.zeros(len(dt), dtype=np.int64)
    missing[gap] = np.maximum(np.rint(dt[gap] / step).astype(np.int64) - 1, 1)
    positions = np.arange(len(signal)) + np.concatenate([[0], np.cumsum(missing)])
    out = np.full((int(positions[-1]) + 1, signal.shape[1]), np.nan, dtype=signal.dtype)
    out[positions] = signal
    return out, int(gap.sum()), int(missing.sum())


def gait_frequency(signal: np.ndarray, rate_hz: float) -> float | None:
    """Dominant frequency (Hz, at the declared rate) of the summed channel spectra of the
    longest NaN-free stretch, above 0.2 Hz; ``None`` when shorter than 512 samples."""
    good = np.isfinite(signal).all(axis=1)
    edges = np.diff(np.concatenate([[0], good.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not len(starts):
        return None
    k = int(np.argmax(ends - starts))
    x = signal[starts[k] : ends[k]].astype(np.float64)
    if len(x) < 512:
        return None
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-12)
    power = (np.abs(np.fft.rfft(x, axis=0)) ** 2).sum(axis=1)
    freqs = np.fft.rfftfreq(len(x), 1.0 / rate_hz)
    band = freqs > 0.2
    return float(freqs[band][np.argmax(power[band])])


def recordings_by_id(root: Path, schema: CohortSchema) -> dict[str, Path]:
    """Every file matching ``recording_pattern`` under ``root``, by the id it names."""
    pattern = schema.recording_pattern
    regex = re.escape(pattern).replace(re.escape("{id}"), "(?P<id>[^/]+)", 1)
    regex = re.compile("^" + regex.replace(re.escape("{id}"), "(?P=id)") + "$")
    found = {}
    for path in sorted(root.glob(pattern.replace("{id}", "*"))):
        match = regex.match(path.relative_to(root).as_posix())
        if match:
            found[match.group("id")] = path
    return found


def orphan_recordings(root: Path, schema: CohortSchema, ids: set[str]) -> list[str]:
    """Files matching ``recording_pattern`` whose id has no row in the participants table."""
    return [
        str(path.relative_to(root))
        for pid, path in recordings_by_id(root, schema).items()
        if pid not in ids
    ]


@dataclass
class RecordingSignal:
    """One recording at the target rate: its NaN-free segments of at least one window and
    where each starts (seconds from the file's first sample)."""

    source_rate_hz: float
    segments: list[np.ndarray]  # each (time, channels) float32
    onsets_s: list[float]


def read_recording(
    path: Path,
    schema: CohortSchema,
    declared_rate_hz: float | None,
    target_rate_hz: float,
    min_samples: int,
    max_nan_gap_s: float = 0.1,
    report: CohortReport | None = None,
) -> RecordingSignal:
    """One participant's IMU file -> its segments at ``target_rate_hz``, exactly as training
    reads it (``read_cohort`` and predict share this). Missing channel columns, an unreadable
    file or a rate that disagrees with the time column raise ``CohortError``; what was
    interpolated, cut or suspected is counted in ``report``. Segments shorter than
    ``min_samples`` are left out (the caller decides what none left means)."""
    report = report if report is not None else CohortReport()
    header = _read_csv(path, schema, nrows=0).columns
    missing = [c for c in schema.channel_columns if c not in header]
    if missing:
        raise CohortError(
            f"{path}: channel column(s) {missing} not found (columns are {list(header)}); "
            "fix datamodule.schema.channel_columns (or delimiter) or remove the participant"
        )
    cols = list(schema.channel_columns)
    if schema.time_column is not None and schema.time_column in header:
        cols.append(schema.time_column)
    frame = _read_csv(path, schema, usecols=cols)
    t = _time_seconds(frame, schema, path)
    rate = _source_rate(t, declared_rate_hz, schema, path)
    columns = [_numeric(frame[c], path, schema) for c in schema.channel_columns]
    report.non_numeric_cells += sum(n for _, n in columns)
    signal = np.stack([v.to_numpy(np.float32) for v, _ in columns], axis=1)
    if t is not None:
        signal, gaps, gap_samples = fill_time_gaps(signal, t)
        report.time_gaps += gaps
        report.time_gap_samples += gap_samples
    else:
        freq = gait_frequency(signal, rate)
        if freq is not None and not GAIT_BAND_HZ[0] <= freq <= GAIT_BAND_HZ[1]:
            report.rate_suspect.append(str(path))
            log.warning(
                "frailty cohort: %s: at the declared %g Hz its dominant frequency is %.2f Hz, "
                "outside a walk's %g-%g Hz: check datamodule.schema.rate_column / rate_hz",
                path,
                rate,
                freq,
                *GAIT_BAND_HZ,
            )
    if rate < target_rate_hz * (1 - 1e-6):
        report.upsampled[round(rate, 3)] += 1
    max_gap = int(round(max_nan_gap_s * rate))
    pieces, starts, cut, filled = split_nan_stretches_at(signal, max_gap)
    report.nan_stretches_cut += cut
    report.nan_samples_interpolated += filled
    pieces = [resample(p, rate, target_rate_hz) for p in pieces]
    report.longest_samples = max([report.longest_samples, *(len(p) for p in pieces)])
    keep = [k for k, p in enumerate(pieces) if len(p) >= min_samples]
    return RecordingSignal(
        rate,
        [np.ascontiguousarray(pieces[k], dtype=np.float32) for k in keep],
        [starts[k] / rate for k in keep],
    )


def read_cohort(
    root: str | Path,
    schema: CohortSchema,
    target_rate_hz: float,
    min_samples: int,
    max_nan_gap_s: float = 0.1,
) -> tuple[list[Recording], CohortReport]:
    """Read every participant of the table; return usable recordings and what was dropped.

    ``min_samples`` (one window) is the shortest segment kept: shorter segments can give no
    window. A participant with no score, no recording file or no segment that long is dropped,
    counted and named; missing channel columns, unreadable scores or rates raise
    ``CohortError``; so does a window longer than every recording (with the fix).
    """
    root = Path(root)
    table, scores = read_participants(root, schema)
    table_path = root / schema.participants_file
    report = CohortReport(participants_in_table=len(table))
    report.orphan_recordings = orphan_recordings(root, schema, set(table[schema.id_column]))
    recordings: list[Recording] = []

    for i, pid in enumerate(table[schema.id_column]):
        if pd.isna(scores.iloc[i]):
            report.drop("no Fried score", pid)
            continue
        try:
            label = int(fried_to_label(scores.iloc[i]))
        except ValueError as err:
            raise CohortError(f"{table_path}: participant {pid}: {err}") from err
        path = root / schema.recording_pattern.format(id=pid)
        if not path.is_file():
            report.drop("recording file missing", pid)
            log.warning("frailty cohort: no recording for participant %s at %s", pid, path)
            continue
        declared = schema.rate_hz
        if schema.rate_column is not None:
            declared = table[schema.rate_column].iloc[i]
        signal = read_recording(
            path, schema, declared, target_rate_hz, min_samples, max_nan_gap_s, report
        )
        rate, kept = signal.source_rate_hz, signal.segments
        if not kept:
            report.drop("shorter than one window (after cutting NaN stretches and gaps)", pid)
            log.warning("frailty cohort: %s has no stretch of %d samples", path, min_samples)
            continue
        report.recordings_used += 1
        report.source_rates[round(rate, 3)] += 1
        report.class_participants[label] += 1
        recordings.append(Recording(pid, int(scores.iloc[i]), label, rate, kept))
    if not recordings:
        short = report.dropped.get("shorter than one window (after cutting NaN stretches and gaps)")
        if short and short == sum(report.dropped.values()):
            raise CohortError(
                f"{root}: the longest recording has {report.longest_samples} samples at "
                f"{target_rate_hz:g} Hz, window is {min_samples}: set datamodule.window or "
                "datamodule.target_rate_hz"
            )
        raise CohortError(
            f"{root}: no usable participant (dropped: {dict(report.dropped)}); check "
            "datamodule.data_dir and datamodule.schema"
        )
    report.log_summary()
    _warn_rates_and_classes(report, target_rate_hz)
    return recordings, report


def _warn_rates_and_classes(report: CohortReport, target_rate_hz: float) -> None:
    for rate, n in sorted(report.upsampled.items()):
        log.warning(
            "frailty cohort: %d recording(s) at %g Hz UPSAMPLED %.1fx to target_rate_hz=%g: "
            "this adds no information above %g Hz and multiplies windows per second; set "
            "datamodule.target_rate_hz=%g to keep their rate",
            n,
            rate,
            target_rate_hz / rate,
            target_rate_hz,
            rate / 2,
            rate,
        )
    for label, n in enumerate(report.class_participants):
        if n == 0:
            log.warning(
                "frailty cohort: NO participant of class %s (label %d): it has support 0 in "
                "every split, the model never sees it and its precision / recall / F1 are 0",
                CLASS_NAMES[label],
                label,
            )
