"""Synthetic polysomnography written as real Sleep-EDF files (EDF PSG + EDF+ hypnogram).

Why: the embedded default must run offline and go through the very same MNE reader as the
published data. Hypnograms follow ~90-min NREM/REM cycles (N3 early, REM late, brief
arousals, R&K stages 3/4, "Movement time" and a trailing "Sleep stage ?"); the EEG spectrum
depends on the stage: alpha in W, theta in N1, spindles and K-complexes in N2, high-amplitude
delta in N3 (more in stage 4), sawtooth waves and theta in REM, over a 1/f background, with
subject-specific alpha frequency and gain. Files are written with ``edfio``.

What the real SC files have, so the embedded default exercises the paths real data takes:
the 7 signals of a Sleep Cassette PSG (EEG Fpz-Cz, EEG Pz-Oz, EOG horizontal at 100 Hz; Resp
oro-nasal, EMG submental, Temp rectal, Event marker at 1 Hz) in 30-s data records; hours of
wake before and after the sleep period (real nights run ~20 h from the afternoon); scorer
letters other than C in the hypnogram names (SC4011EH, SC4022EJ, ...); and a last annotation
("Sleep stage ?") that runs past the end of the signal.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.atomic import atomic_folder
from datamodules.sleep_tsr.records import hypnogram_name, psg_name

SFREQ = 100
EPOCH = 30 * SFREQ
RK = ("W", "1", "2", "3", "4", "R")  # R&K stages written to the hypnogram
SETTINGS_FILE = "synthetic_settings.json"
SCORERS = "CHJMOPRUVW"  # hypnogram letters seen in the Sleep Cassette file names
SLOW_SIGNALS = ("Resp oro-nasal", "EMG submental", "Temp rectal", "Event marker")  # 1 Hz


@dataclass
class SyntheticSettings:
    """What the generated set looks like; a change regenerates it."""

    n_subjects: int = 20
    nights: int = 2
    missing_nights: list[int] = field(default_factory=lambda: [13])  # subject 13: one night
    sleep_hours: float = 2.0
    wake_minutes: tuple[float, float] = (90.0, 180.0)  # range of wake before and after sleep
    seed: int = 0
    version: int = 2

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, default=list)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def synth_hypnogram(
    rng: np.random.Generator, sleep_hours: float, wake_minutes: tuple[float, float]
) -> list[str]:
    """One R&K stage per 30-s epoch: wake, ~90-min cycles, wake, then a few unscored epochs."""
    per_min = 2
    stages: list[str] = ["W"] * int(rng.uniform(*wake_minutes) * per_min)
    target = int(sleep_hours * 60 * per_min)
    sleep: list[str] = []
    cycle = 0
    while len(sleep) < target:
        late = cycle / max(1.0, sleep_hours * 60 / 90 - 1)  # 0 early .. 1 late in the night
        n3 = max(0.0, rng.normal(30 * (1 - late), 5))
        rem = max(2.0, rng.normal(8 + 20 * late, 4))
        parts = [
            ("1", rng.uniform(1, 6)),
            ("2", rng.uniform(10, 25)),
            ("3", n3 * 0.4),
            ("4", n3 * 0.6),
            ("2", rng.uniform(5, 15)),
            ("R", rem),
        ]
        for stage, minutes in parts:
            sleep.extend([stage] * int(minutes * per_min))
        cycle += 1
    sleep = sleep[:target]
    for i in range(len(sleep)):  # brief arousals / transitions
        u = rng.random()
        if u < 0.02:
            sleep[i] = "W"
        elif u < 0.04 and sleep[i] in ("2", "R"):
            sleep[i] = "1"
    stages += sleep + ["W"] * int(rng.uniform(*wake_minutes) * per_min)
    for i in rng.choice(len(stages), size=max(1, len(stages) // 300), replace=False):
        stages[i] = "M"  # Movement time
    return stages + ["?"] * int(rng.integers(20, 60))


def _bump(freqs: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((freqs - centre) / width) ** 2)


def synth_eeg(
    rng: np.random.Generator, stages: list[str], alpha_hz: float, gain: float
) -> np.ndarray:
    """Fpz-Cz-like EEG (uV) for the stage sequence, 100 Hz, shaped per 30-s epoch."""
    n = len(stages)
    freqs = np.fft.rfftfreq(EPOCH, 1 / SFREQ)
    background = 1.0 / (freqs + 1.0)
    shapes = {
        "W": background + 1.6 * _bump(freqs, alpha_hz, 1.0) + 0.25 * _bump(freqs, 20, 5) + 0.02,
        "1": background + 0.8 * _bump(freqs, 5.5, 1.2) + 0.3 * _bump(freqs, alpha_hz, 1.0),
        "2": 1.3 * background + 0.6 * _bump(freqs, 5.0, 1.5) + 0.3 * _bump(freqs, 1.5, 0.7),
        "3": 1.5 * background + 3.0 * _bump(freqs, 1.2, 0.6),
        "4": 1.5 * background + 4.5 * _bump(freqs, 1.0, 0.5),
        "R": 0.8 * background
        + 0.7 * _bump(freqs, 5.5, 1.5)
        + 0.25 * _bump(freqs, alpha_hz - 1.5, 1.0),
        "M": background * 3 + 0.5,
        "?": background,
    }
    spec = np.fft.rfft(rng.standard_normal((n, EPOCH)), axis=1)
    shape = np.stack([shapes[s] for s in stages])
    per_epoch_gain = gain * rng.lognormal(0.0, 0.15, size=(n, 1))
    eeg = np.fft.irfft(spec * shape * per_epoch_gain * 40.0, n=EPOCH, axis=1)
    t = np.arange(EPOCH) / SFREQ
    for i, s in enumerate(stages):
        if s == "2":  # spindles 11-15 Hz and K-complexes
            for _ in range(rng.integers(1, 4)):
                c, d = rng.uniform(1, 29), rng.uniform(0.5, 1.5)
                env = np.exp(-0.5 * ((t - c) / (d / 4)) ** 2)
                eeg[i] += gain * 25 * env * np.sin(2 * np.pi * rng.uniform(11.5, 14.5) * t)
            for _ in range(rng.integers(0, 3)):
                c = rng.uniform(1, 29)
                eeg[i] += (
                    gain
                    * 80
                    * (
                        -np.exp(-0.5 * ((t - c) / 0.12) ** 2)
                        + 0.6 * np.exp(-0.5 * ((t - c - 0.45) / 0.25) ** 2)
                    )
                )
        elif s == "R" and rng.random() < 0.6:  # sawtooth-wave burst 2-6 Hz
            c, d, f = rng.uniform(2, 26), rng.uniform(1, 4), rng.uniform(2, 5)
            burst = (t > c) & (t < c + d)
            eeg[i, burst] += gain * 20 * (2 * ((t[burst] * f) % 1) - 1)
    return eeg.reshape(-1)


def synth_eog(rng: np.random.Generator, stages: list[str]) -> np.ndarray:
    """Horizontal EOG: rapid eye movements in REM and wake, slow rolling in N1."""
    n = len(stages)
    eog = rng.standard_normal((n, EPOCH)) * 5
    t = np.arange(EPOCH) / SFREQ
    for i, s in enumerate(stages):
        if s in ("R", "W"):
            for c in rng.uniform(0, 30, size=rng.integers(2, 10)):
                eog[i] += (
                    60
                    * np.sign(rng.standard_normal())
                    * np.tanh((t - c) * 20)
                    * (np.abs(t - c) < 0.4)
                )
        elif s == "1":
            eog[i] += 40 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3))
    return eog.reshape(-1)


def write_psg(
    path: Path,
    signals: dict[str, tuple[np.ndarray, float]],
    start: dt.datetime,
    record_s: float = 30.0,
) -> None:
    """EDF file with the given ``label -> (data in uV, sampling rate)`` signals."""
    import edfio

    edf_signals = []
    for label, (data, fs) in signals.items():
        lim = float(max(np.abs(data).max(), 1.0)) * 1.01
        edf_signals.append(
            edfio.EdfSignal(
                np.asarray(data, dtype=np.float64),
                sampling_frequency=fs,
                label=label,
                physical_dimension="uV",
                physical_range=(-lim, lim),
                transducer_type="Ag-AgCl electrodes" if label.startswith("EEG") else "",
            )
        )
    edf = edfio.Edf(
        edf_signals,
        patient=edfio.Patient(code="X", sex="F", name="X"),
        recording=edfio.Recording(startdate=start.date()),
        starttime=start.time(),
        data_record_duration=record_s,
    )
    edf.write(path)


def write_hypnogram(path: Path, stages: list[str], start: dt.datetime) -> None:
    """EDF+ annotations file: one annotation per run of equal stages, Sleep-EDF wording."""
    import edfio

    text = {s: f"Sleep stage {s}" for s in RK} | {"M": "Movement time", "?": "Sleep stage ?"}
    annotations = []
    i = 0
    while i < len(stages):
        j = i
        while j < len(stages) and stages[j] == stages[i]:
            j += 1
        annotations.append(edfio.EdfAnnotation(30.0 * i, 30.0 * (j - i), text[stages[i]]))
        i = j
    edf = edfio.Edf(
        [],
        recording=edfio.Recording(startdate=start.date()),
        starttime=start.time(),
        annotations=annotations,
    )
    edf.write(path)


def write_night(
    out_dir: Path,
    subject: int,
    night: int,
    rng: np.random.Generator,
    settings: SyntheticSettings,
    sfreq: float = SFREQ,
    eeg_label: str = "EEG Fpz-Cz",
) -> tuple[Path, Path]:
    """Write one PSG/hypnogram pair; ``sfreq``/``eeg_label`` let tests write unusual files.

    The hypnogram's trailing "Sleep stage ?" annotation runs 10-20 epochs past the end of the
    PSG, as in the real files.
    """
    stages = synth_hypnogram(rng, settings.sleep_hours, settings.wake_minutes)
    recorded = stages[: len(stages) - int(rng.integers(10, 20))]
    alpha = 9.0 + (subject % 5) * 0.5
    gain = 0.8 + 0.4 * ((subject * 7) % 10) / 10
    eeg = synth_eeg(rng, recorded, alpha, gain)
    if sfreq != SFREQ:
        from scipy.signal import resample_poly

        eeg = resample_poly(eeg, int(sfreq), SFREQ)
    start = dt.datetime(1989, 4, 24 + night, 16, 13, 0) + dt.timedelta(days=subject)
    signals = {
        eeg_label: (eeg, sfreq),
        "EEG Pz-Oz": (synth_eeg(rng, recorded, alpha, gain * 0.7), SFREQ),
        "EOG horizontal": (synth_eog(rng, recorded), SFREQ),
    } | slow_signals(rng, len(recorded) * 30)
    scorer = SCORERS[(subject * 3 + night - 1) % len(SCORERS)]  # SC4001EC, SC4002EH, ...
    psg = out_dir / psg_name(subject, night)
    hyp = out_dir / hypnogram_name(subject, night, scorer=scorer)
    write_psg(psg, signals, start)
    write_hypnogram(hyp, stages, start)
    return psg, hyp


def slow_signals(rng: np.random.Generator, n_sec: int) -> dict[str, tuple[np.ndarray, float]]:
    """The four 1 Hz signals of a Sleep Cassette PSG (breathing, EMG envelope, temperature,
    event marker), so a reader that picks one of them meets a 1 Hz channel."""
    t = np.arange(n_sec)
    return {
        "Resp oro-nasal": (200 * np.sin(2 * np.pi * t / 4.0) + rng.standard_normal(n_sec), 1.0),
        "EMG submental": (np.abs(rng.standard_normal(n_sec)) * 2, 1.0),
        "Temp rectal": (37.0 - 0.5 * np.sin(2 * np.pi * t / 86400) + 0.01 * t / n_sec, 1.0),
        "Event marker": (np.where(rng.random(n_sec) < 0.001, 1000.0, 0.0), 1.0),
    }


def generate_dataset(out_dir: str | Path, settings: SyntheticSettings | None = None) -> Path:
    """Write the whole synthetic Sleep Cassette set into ``out_dir`` (skipped if up to date).

    Written into a private folder and published in one rename (``core.atomic``), so parallel
    jobs never read a half-written set."""
    settings = settings or SyntheticSettings()
    out = Path(out_dir)

    def complete(folder: Path) -> bool:
        marker = folder / SETTINGS_FILE
        return marker.is_file() and json.loads(marker.read_text()).get("key") == settings.key()

    if complete(out):
        return out
    from tqdm import tqdm

    jobs = [
        (s, n)
        for s in range(settings.n_subjects)
        for n in range(1, settings.nights + 1)
        if not (n > 1 and s in settings.missing_nights)
    ]
    with atomic_folder(out, complete) as tmp:
        for subject, night in tqdm(jobs, desc="writing synthetic Sleep-EDF", leave=False):
            rng = np.random.default_rng([settings.seed, subject, night])
            write_night(tmp, subject, night, rng, settings)
        marker = {"key": settings.key(), "settings": asdict(settings)}
        (tmp / SETTINGS_FILE).write_text(json.dumps(marker, indent=1))
    return out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("SC4*.edf"):
        old.unlink()
    from tqdm import tqdm

    jobs = [
        (s, n)
        for s in range(settings.n_subjects)
        for n in range(1, settings.nights + 1)
        if not (n > 1 and s in settings.missing_nights)
    ]
    for subject, night in tqdm(jobs, desc="writing synthetic Sleep-EDF", leave=False):
        rng = np.random.default_rng([settings.seed, subject, night])
        write_night(out, subject, night, rng, settings)
    marker.write_text(json.dumps({"key": settings.key(), "settings": asdict(settings)}, indent=1))
    return out
