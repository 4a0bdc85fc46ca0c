"""Where a GSTRIDE-like cohort keeps its data: a schema read from config, not hard-coded.

GSTRIDE (Garcia-de-Villa et al., 2023) ships a participants table (socio-demographic,
functional and frailty assessment) and one foot-IMU CSV per participant recorded with two
sensor models at different rates. The column and file names differ between releases and
similar cohorts, so every name the reader needs comes from this schema
(``datamodule.schema.<key>`` in Hydra).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

DEFAULT_CHANNELS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")


@dataclass(frozen=True)
class CohortSchema:
    """File layout and column names of a gait cohort.

    Attributes:
        participants_file: participants table, relative to the data directory (CSV).
        id_column: participant id column in the table; ``{id}`` in ``recording_pattern``.
        score_column: Fried frailty score (0-5) column. ``None`` sums ``criteria_columns``.
        criteria_columns: the five Fried criteria (0/1) columns; used when ``score_column``
            is ``None`` or, when both are given, checked against the score.
        recording_pattern: per-participant IMU file relative to the data directory, with
            ``{id}`` replaced by the participant id (e.g. ``imu/{id}.csv``).
        channel_columns: accelerometer + gyroscope columns read from each recording, in order.
        time_column: optional timestamp column in the recordings (seconds times
            ``time_scale``); infers the rate when no rate is given, else checks it.
        time_scale: multiply the time column by this to get seconds (1e-3 for milliseconds).
        rate_column: sampling-rate column (Hz) in the participants table (mixed-rate cohorts).
        rate_hz: one rate for every recording when the cohort has no rate column.
        delimiter: CSV field separator of the recordings and the table.
        decimal: decimal mark of the numbers in both (``","`` for European exports, usually
            with ``delimiter=";"``); a file whose numbers use the other mark is refused.
        score_map: text score -> Fried score (0-5) for tables that hold words instead of
            numbers, e.g. ``{robust: 0, pre-frail: 1, frail: 3}`` (matched ignoring case and
            surrounding spaces); any other text score is refused, never dropped.
    """

    participants_file: str = "participants.csv"
    id_column: str = "participant_id"
    score_column: str | None = "fried_score"
    criteria_columns: tuple[str, ...] = ()
    recording_pattern: str = "imu/{id}.csv"
    channel_columns: tuple[str, ...] = DEFAULT_CHANNELS
    time_column: str | None = "time_s"
    time_scale: float = 1.0
    rate_column: str | None = "sampling_rate_hz"
    rate_hz: float | None = None
    delimiter: str = ","
    decimal: str = "."
    score_map: dict[str, int] | None = None

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> CohortSchema:
        """Build from a (Hydra) mapping; unknown keys and impossible combinations raise."""
        cfg = dict(cfg or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ValueError(
                f"datamodule.schema: unknown key(s) {unknown}; allowed keys: {sorted(known)}"
            )
        for key in ("criteria_columns", "channel_columns"):
            if key in cfg and cfg[key] is not None:
                cfg[key] = tuple(str(c) for c in cfg[key])
        if cfg.get("score_map") is not None:
            cfg["score_map"] = {
                str(k).strip().lower(): v for k, v in dict(cfg["score_map"]).items()
            }
        schema = cls(**cfg)
        schema.validate()
        return schema

    def validate(self) -> None:
        if "{id}" not in self.recording_pattern:
            raise ValueError(
                f"datamodule.schema.recording_pattern={self.recording_pattern!r} must contain "
                "'{id}' (replaced by each participant id), e.g. 'imu/{id}.csv'"
            )
        if not self.channel_columns:
            raise ValueError("datamodule.schema.channel_columns must list at least one column")
        if len(set(self.channel_columns)) != len(self.channel_columns):
            raise ValueError(
                f"datamodule.schema.channel_columns has duplicates: {list(self.channel_columns)}"
            )
        if self.score_column is None and len(self.criteria_columns) != 5:
            raise ValueError(
                "datamodule.schema: set score_column, or criteria_columns to the 5 Fried "
                f"criteria columns (got score_column=None, criteria_columns={self.criteria_columns})"
            )
        if self.rate_column is None and self.rate_hz is None and self.time_column is None:
            raise ValueError(
                "datamodule.schema: no way to know the sampling rate; set rate_column "
                "(participants table), rate_hz (one rate for all) or time_column (recordings)"
            )
        if self.rate_hz is not None and self.rate_hz <= 0:
            raise ValueError(f"datamodule.schema.rate_hz must be > 0, got {self.rate_hz}")
        if self.time_scale <= 0:
            raise ValueError(f"datamodule.schema.time_scale must be > 0, got {self.time_scale}")
        if self.decimal not in (".", ","):
            raise ValueError(f"datamodule.schema.decimal must be '.' or ',', got {self.decimal!r}")
        if self.decimal == self.delimiter:
            raise ValueError(
                f"datamodule.schema.decimal and delimiter are both {self.decimal!r}; a "
                "decimal-comma CSV needs another separator, e.g. delimiter=';'"
            )
        for text, score in (self.score_map or {}).items():
            if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 5:
                raise ValueError(
                    f"datamodule.schema.score_map[{text!r}] must be a Fried score 0-5, got {score!r}"
                )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
