"""Read one Sleep-EDF night with MNE: one EEG channel at 100 Hz, 30-s epochs, AASM labels.

R&K -> AASM: stages 3 and 4 merge into N3; "Sleep stage ?" and "Movement time" epochs are
dropped *after* the crop bounds are chosen (so they never move the bounds). Every problem
raises :class:`SleepEDFError` naming the file and what to do.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import DataError
from datamodules.sleep_tsr.records import RecordingFiles

log = logging.getLogger(__name__)

EPOCH_S = 30.0
CLASSES = ("W", "N1", "N2", "N3", "REM")
STAGE_TO_CLASS = {
    "Sleep stage W": 0,
    "Sleep stage 1": 1,
    "Sleep stage 2": 2,
    "Sleep stage 3": 3,
    "Sleep stage 4": 3,
    "Sleep stage R": 4,
}
UNSCORED = ("Sleep stage ?", "Movement time")
UNKNOWN = -1
CROPS = ("sleep_30min", "none")


class SleepEDFError(DataError):
    """A recording cannot be used; the message names the file."""


class TruncatedPSGError(SleepEDFError):
    """The PSG is shorter than its header says (an interrupted download): never skipped."""


class ChannelRateError(SleepEDFError):
    """The chosen channel is sampled below the model's rate (e.g. a 1 Hz channel): never skipped,
    because every night of the set has the same layout and the choice is wrong for all."""


@dataclass
class EDFHeader:
    """The fields of an EDF header the reader checks before trusting MNE."""

    header_bytes: int
    n_records: int
    record_s: float
    labels: list[str]
    samples_per_record: list[int]

    def rate(self, label: str) -> float:
        return self.samples_per_record[self.labels.index(label)] / self.record_s

    def expected_bytes(self) -> int:
        return self.header_bytes + self.n_records * 2 * sum(self.samples_per_record)


def read_edf_header(path: Path) -> EDFHeader:
    """Parse the fixed EDF header (256 bytes + 256 per signal) without reading any samples."""
    with open(path, "rb") as f:
        head = f.read(256)
        if len(head) < 256:
            raise SleepEDFError(f"{path}: not a readable EDF file ({len(head)}-byte header)")
        try:
            header_bytes = int(head[184:192].decode("ascii").strip())
            n_records = int(head[236:244].decode("ascii").strip())
            record_s = float(head[244:252].decode("ascii").strip())
            ns = int(head[252:256].decode("ascii").strip())
            sig = f.read(256 * ns)
            labels = [sig[16 * i : 16 * (i + 1)].decode("latin-1").strip() for i in range(ns)]
            off = 216 * ns
            samples = [int(sig[off + 8 * i : off + 8 * (i + 1)].decode("ascii")) for i in range(ns)]
        except (ValueError, UnicodeDecodeError) as err:
            raise SleepEDFError(f"{path}: not a readable EDF file (header: {err})") from err
    return EDFHeader(header_bytes, n_records, record_s, labels, samples)


def check_complete(psg: Path, header: EDFHeader) -> None:
    """Raise :class:`TruncatedPSGError` when the file holds fewer records than its header says.

    MNE only warns ("records do not match file size") and reads what is there, so a download
    cut at 75 % would silently train on three quarters of the night.
    """
    if header.n_records < 0:  # -1: "unknown" while recording; nothing to check against
        return
    size, expected = psg.stat().st_size, header.expected_bytes()
    if size < expected:
        hours = header.n_records * header.record_s / 3600
        raise TruncatedPSGError(
            f"{psg}: truncated: the header says {header.n_records} records x "
            f"{header.record_s:g} s ({hours:.2f} h, {expected} bytes) but the file has {size} "
            f"bytes ({100 * size / expected:.0f} %); re-download it"
        )


@dataclass
class Recording:
    """One night after epoching: ``epochs`` (N, 30 * sfreq) in microvolts, ``labels`` (N,)."""

    name: str
    subject: int
    night: int
    epochs: np.ndarray
    labels: np.ndarray
    sfreq: float


def read_eeg(psg: Path, channel: str, sfreq: float) -> tuple[np.ndarray, float, object]:
    """One channel of a PSG EDF in microvolts, resampled to ``sfreq`` (with a warning)."""
    import mne

    if not psg.is_file():
        raise SleepEDFError(f"{psg}: PSG file not found")
    header = read_edf_header(psg)
    check_complete(psg, header)
    if channel not in header.labels:
        raise SleepEDFError(
            f"{psg}: no channel {channel!r} (channels: {', '.join(header.labels)}); "
            "set datamodule.channel to one of them"
        )
    native = header.rate(channel)
    if native < sfreq:
        fast = [lab for lab in header.labels if header.rate(lab) >= sfreq]
        raise ChannelRateError(
            f"{psg}: channel {channel!r} is sampled at {native:g} Hz "
            f"({header.samples_per_record[header.labels.index(channel)]} samples per "
            f"{header.record_s:g} s record); the 0-{sfreq / 2:g} Hz spectrogram needs "
            f"{sfreq:g} Hz. Set datamodule.channel to one of: {', '.join(fast)}"
        )
    try:  # only this channel: MNE would otherwise upsample it to the fastest signal's rate
        raw = mne.io.read_raw_edf(psg, include=[channel], preload=False, verbose="error")
    except Exception as err:
        raise SleepEDFError(
            f"{psg}: not a readable EDF file ({type(err).__name__}: {err}); re-download it"
        ) from err
    try:
        raw.load_data(verbose="error")
    except Exception as err:
        raise SleepEDFError(f"{psg}: data unreadable ({type(err).__name__}: {err})") from err
    file_sfreq = float(raw.info["sfreq"])
    if abs(file_sfreq - native) > 1e-6:
        raise SleepEDFError(
            f"{psg}: MNE reads {channel!r} at {file_sfreq:g} Hz but the header says {native:g} Hz"
        )
    if abs(file_sfreq - sfreq) > 1e-6:
        msg = f"{psg}: channel {channel!r} is sampled at {file_sfreq:g} Hz; resampling to {sfreq:g} Hz"
        log.warning(msg)
        warnings.warn(msg, stacklevel=2)
        raw.resample(sfreq, verbose="error")
    signal = raw.get_data()[0] * 1e6  # V -> uV
    return signal, file_sfreq, raw.info["meas_date"]


def read_stages(hypnogram: Path, meas_date: object) -> tuple[np.ndarray, np.ndarray]:
    """Epoch onsets (s from the PSG start) and labels (class index or ``UNKNOWN``)."""
    import mne

    if not hypnogram.is_file():
        raise SleepEDFError(f"{hypnogram}: hypnogram file not found")
    try:
        ann = mne.read_annotations(hypnogram)
    except Exception as err:
        raise SleepEDFError(
            f"{hypnogram}: not a readable EDF+ hypnogram ({type(err).__name__}: {err})"
        ) from err
    shift = 0.0
    if ann.orig_time is not None and meas_date is not None:
        shift = (ann.orig_time - meas_date).total_seconds()
    onsets, labels = [], []
    for onset, duration, text in zip(ann.onset, ann.duration, ann.description):
        if text in STAGE_TO_CLASS:
            label = STAGE_TO_CLASS[text]
        elif text in UNSCORED:
            label = UNKNOWN
        else:
            continue  # lights off, arousal markers, ... carry no stage
        n = int(round(duration / EPOCH_S))
        onsets.extend(onset + shift + EPOCH_S * np.arange(n))
        labels.extend([label] * n)
    if not any(lab != UNKNOWN for lab in labels):
        raise SleepEDFError(
            f"{hypnogram}: no 'Sleep stage W/1/2/3/4/R' annotations; is this a Sleep-EDF hypnogram?"
        )
    order = np.argsort(onsets, kind="stable")
    return np.asarray(onsets, dtype=np.float64)[order], np.asarray(labels, dtype=np.int64)[order]


def crop_mask(onsets: np.ndarray, labels: np.ndarray, crop: str, minutes: float) -> np.ndarray:
    """Epochs kept by the crop rule (before unscored epochs are dropped)."""
    if crop == "none":
        return np.ones(len(labels), dtype=bool)
    if crop != "sleep_30min":
        raise ValueError(f"crop={crop!r}: choose one of {CROPS}")
    sleep = np.flatnonzero((labels != UNKNOWN) & (labels != 0))
    if len(sleep) == 0:
        return np.zeros(len(labels), dtype=bool)
    lo = onsets[sleep[0]] - 60.0 * minutes
    hi = onsets[sleep[-1]] + 60.0 * minutes
    return (onsets >= lo) & (onsets <= hi)


def load_recording(
    files: RecordingFiles,
    channel: str = "EEG Fpz-Cz",
    sfreq: float = 100.0,
    crop: str = "sleep_30min",
    crop_minutes: float = 30.0,
    bandpass: tuple[float, float] | None = None,
) -> Recording:
    """Read, label, crop and epoch one night."""
    if files.hypnogram is None:
        raise SleepEDFError(
            f"{files.psg}: no matching *-Hypnogram.edf (expected {files.name[:7]}?-Hypnogram.edf "
            "next to it)"
        )
    signal, _, meas_date = read_eeg(files.psg, channel, sfreq)
    if bandpass is not None:
        import mne

        signal = mne.filter.filter_data(
            signal, sfreq, bandpass[0], bandpass[1], phase="zero", verbose="error"
        )
    onsets, labels = read_stages(files.hypnogram, meas_date)
    n_ep = int(round(EPOCH_S * sfreq))
    starts = np.round(onsets * sfreq).astype(np.int64)
    inside = (starts >= 0) & (starts + n_ep <= len(signal))
    scored = labels != UNKNOWN
    outside = int((scored & ~inside).sum())
    if outside > 0.5 * scored.sum():
        raise SleepEDFError(
            f"{files.hypnogram}: does not match {files.psg.name}: {outside} of {int(scored.sum())} "
            f"scored epochs lie outside the {len(signal) / sfreq / 3600:.2f} h signal "
            f"(scored from {onsets[0]:.0f} s to {onsets[-1] + EPOCH_S:.0f} s)"
        )
    if outside:
        log.warning(
            "%s: %d scored epochs beyond the end of the signal were dropped",
            files.hypnogram,
            outside,
        )
    onsets, labels, starts = onsets[inside], labels[inside], starts[inside]
    keep = crop_mask(onsets, labels, crop, crop_minutes) & (labels != UNKNOWN)
    starts, labels = starts[keep], labels[keep]
    epochs = signal[starts[:, None] + np.arange(n_ep)].astype(np.float32)
    return Recording(files.name, files.subject, files.night, epochs, labels, sfreq)
