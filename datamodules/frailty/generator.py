"""Synthetic GSTRIDE-like cohort: foot-IMU gait whose shape depends on a latent frailty level.

The embedded default dataset (no download, runs offline). It writes the same layout the real
cohort is read from - a participants table with the five Fried criteria and their sum, plus
one CSV per participant with time, 3-axis accelerometer (m/s^2) and gyroscope (rad/s) - so the
real reader, resampler and preprocessing are exercised end to end.

Per participant a latent frailty level ``f`` in [0, 1] follows the Fried score and sets:
cadence (slower), stride length and gait speed (shorter), stride-time variability (larger),
left/right step asymmetry, stance fraction (longer stance / double support), swing pitch rate
and foot-clearance impact (smaller), medio-lateral sway (larger). Two sensor models record at
different rates with different noise, and each participant has its own sensor mounting tilt,
so the classifier cannot key on a single channel offset.

Each participant also walks with a personal *gait signature* unrelated to frailty (real
gait is individual enough to identify people from a foot IMU): random harmonics of the
stride phase added to every channel, a wider individual spread of the gait parameters and a
larger mounting tilt, all scaled by ``CohortSpec.signature`` (0 = none). It is what makes a
window-shuffled split (the paper's) score higher than a participant-disjoint one: windows of
a test participant's walk in training teach the model *who* walks, which on unseen people
is noise rather than a frailty cue.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.atomic import atomic_folder
from datamodules.frailty.schema import DEFAULT_CHANNELS

CRITERIA = ("weight_loss", "exhaustion", "low_activity", "slowness", "weakness")
# Fried criteria prevalence rises with frailty; slowness and weakness are the most common.
CRITERION_WEIGHTS = np.array([0.6, 0.8, 1.0, 1.6, 1.4])
GRAVITY = 9.81


@dataclass(frozen=True)
class SensorModel:
    name: str
    rate_hz: float
    acc_noise: float  # m/s^2
    gyr_noise: float  # rad/s


SENSORS = (SensorModel("csic", 100.0, 0.15, 0.03), SensorModel("gaitup", 128.0, 0.08, 0.015))


@dataclass(frozen=True)
class CohortSpec:
    """Generator settings; the output folder name is a hash of these.

    ``class_fractions`` are robust / pre-frail / frail participant shares (GSTRIDE's test
    windows are 47 / 46 / 8 %; the embedded default gives frail participants a larger share so a
    participant-disjoint split of a small cohort still has frail people in val and test).
    """

    n_participants: int = 48
    duration_s: float = 60.0
    class_fractions: tuple[float, float, float] = (0.4, 0.4, 0.2)
    seed: int = 0
    signature: float = 3.0  # strength of the personal gait signature (0 = off)

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _scores(spec: CohortSpec, rng: np.random.Generator) -> np.ndarray:
    counts = np.floor(np.asarray(spec.class_fractions) * spec.n_participants).astype(int)
    counts[1] += spec.n_participants - counts.sum()
    scores = np.concatenate(
        [
            np.zeros(counts[0], dtype=int),
            rng.integers(1, 3, size=counts[1]),
            rng.integers(3, 6, size=counts[2]),
        ]
    )
    return rng.permutation(scores)


def _criteria(score: int, rng: np.random.Generator) -> np.ndarray:
    """Which of the five criteria are met, given how many are (weighted by prevalence)."""
    met = np.zeros(5, dtype=int)
    if score:
        p = CRITERION_WEIGHTS / CRITERION_WEIGHTS.sum()
        met[rng.choice(5, size=score, replace=False, p=p)] = 1
    return met


# Personal signature: this many stride-phase harmonics per channel.
SIGNATURE_HARMONICS = 4


def _gait_params(f: float, rng: np.random.Generator, signature: float = 0.0) -> dict:
    """Participant gait parameters from the latent frailty level plus individual spread
    (widened by ``signature``), and the personal harmonic signature (6 channels x H)."""
    spread = 1.0 + 0.5 * signature
    return {
        "cadence": 112.0 - 32.0 * f + rng.normal(0, 5.0 * spread),  # steps / min
        "stride_length": max(0.45, 1.35 - 0.65 * f + rng.normal(0, 0.08 * spread)),  # m
        "stride_cv": 0.02 + 0.07 * f + abs(rng.normal(0, 0.008 * spread)),
        "asymmetry": 0.01 + 0.08 * f * rng.uniform(0.5, 1.5),
        "stance": 0.60 + 0.09 * f + rng.normal(0, 0.015 * spread),
        "sway": 0.15 + 0.45 * f + abs(rng.normal(0, 0.05 * spread)),  # rad/s medio-lateral
        "clearance": 1.0 - 0.5 * f + rng.normal(0, 0.06 * spread),
        "signature": signature,
        "sig_amp": rng.normal(0, 1.0, (6, SIGNATURE_HARMONICS)),
        "sig_phase": rng.uniform(0, 2 * np.pi, (6, SIGNATURE_HARMONICS)),
        "tilt_deg": 8.0 * (1.0 + signature),
    }


def _rotation(rng: np.random.Generator, max_deg: float = 8.0) -> np.ndarray:
    """Small random sensor-mounting rotation (same for accelerometer and gyroscope)."""
    ax, ay, az = np.deg2rad(rng.uniform(-max_deg, max_deg, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _signature(params: dict, phase: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(time, 6) personal waveform: random harmonics of the stride phase per channel, each
    channel's at ``0.4 * signature`` of that channel's own standard deviation."""
    h = np.arange(1, SIGNATURE_HARMONICS + 1)
    waves = np.cos(2 * np.pi * phase[:, None, None] * h + params["sig_phase"][None])
    wave = (waves * params["sig_amp"][None]).sum(axis=2) / np.sqrt(SIGNATURE_HARMONICS)
    return 0.4 * params["signature"] * scale * wave


def synth_gait(
    params: dict,
    sensor: SensorModel,
    duration_s: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(time, 6) foot-IMU walk: acc x (forward), y (lateral), z (up) and gyro x, y, z."""
    n = int(round(duration_s * sensor.rate_hz))
    t = np.arange(n) / sensor.rate_hz
    stride_t = 120.0 / params["cadence"]
    n_strides = int(duration_s / stride_t * 1.5) + 4
    # Alternating long/short strides: the other foot's step asymmetry shifts this foot's cycle.
    alternate = np.where(np.arange(n_strides) % 2 == 0, 1.0, -1.0) * params["asymmetry"]
    durations = stride_t * (1 + alternate + rng.normal(0, params["stride_cv"], n_strides))
    durations = np.clip(durations, 0.5 * stride_t, 2.0 * stride_t)
    bounds = np.concatenate([[0.0], np.cumsum(durations)]) - rng.uniform(0, stride_t)
    k = np.clip(np.searchsorted(bounds, t, side="right") - 1, 0, n_strides - 1)
    phase = (t - bounds[k]) / durations[k]
    dur = durations[k]
    stance = np.clip(params["stance"] + rng.normal(0, 0.01, n_strides)[k], 0.5, 0.8)
    in_swing = phase >= stance
    s = np.where(in_swing, (phase - stance) / (1 - stance), 0.0)  # 0..1 through swing
    swing_t = (1 - stance) * dur
    speed = params["stride_length"] / dur

    # Sagittal pitch rate: toe-off push (negative), swing lobe, heel-strike rebound.
    pitch = np.where(in_swing, 2.8 * speed * params["clearance"] * np.sin(np.pi * s), 0.0)
    pitch += -1.2 * speed * np.exp(-(((phase - stance + 0.04) / 0.03) ** 2))
    pitch += -0.9 * speed * params["clearance"] * np.exp(-((phase / 0.025) ** 2))
    # Forward acceleration over swing: accelerate then brake (integrates to the stride length).
    acc_fwd = np.where(
        in_swing,
        2 * np.pi * params["stride_length"] / swing_t**2 * np.sin(2 * np.pi * s),
        0.0,
    )
    # Vertical: lift-off / clearance bump and a heel-strike impact, on top of gravity.
    impact = 14.0 * params["clearance"] * speed * np.exp(-((phase / 0.015) ** 2))
    acc_up = GRAVITY + np.where(in_swing, 4.0 * params["clearance"] * np.sin(2 * np.pi * s), 0.0)
    acc_up += impact
    # Medio-lateral sway, slowly drifting, larger with frailty.
    sway_freq = 1.0 / stride_t
    drift = np.cumsum(rng.normal(0, 0.02, n)) / np.sqrt(sensor.rate_hz)
    roll = params["sway"] * np.sin(2 * np.pi * sway_freq * t + drift) * (0.4 + in_swing)
    yaw = 0.35 * params["sway"] * np.sin(4 * np.pi * sway_freq * t + 2 * drift)
    acc_lat = 0.8 * params["sway"] * np.sin(2 * np.pi * sway_freq * t + drift + 0.5)

    acc = np.stack([acc_fwd, acc_lat, acc_up], axis=1)
    gyr = np.stack([roll, pitch, yaw], axis=1)
    if params.get("signature", 0.0) > 0:
        clean = np.concatenate([acc, gyr], axis=1)
        personal = _signature(params, phase, clean.std(axis=0) + 1e-3)
        acc, gyr = acc + personal[:, :3], gyr + personal[:, 3:]
    rot = _rotation(rng, params.get("tilt_deg", 8.0))
    acc = acc @ rot.T + rng.normal(0, sensor.acc_noise, acc.shape)
    gyr = gyr @ rot.T + rng.normal(0, sensor.gyr_noise, gyr.shape)
    return np.concatenate([acc, gyr], axis=1).astype(np.float32)


def generate_cohort(out_dir: str | Path, spec: CohortSpec | None = None) -> Path:
    """Write ``participants.csv`` and ``imu/<id>.csv`` under ``out_dir``; return ``out_dir``.

    Skipped when ``out_dir/.complete`` holds the same settings (files written once).
    """
    spec = spec or CohortSpec()
    final = Path(out_dir)

    def complete(folder: Path) -> bool:
        marker = folder / ".complete"
        return marker.is_file() and marker.read_text() == spec.key()

    if complete(final):
        return final
    with atomic_folder(final, complete) as out:  # parallel jobs never see a half-written cohort
        _write_cohort(out, spec)
    return final


def _write_cohort(out: Path, spec: CohortSpec) -> None:
    rng = np.random.default_rng(spec.seed)
    (out / "imu").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, score in enumerate(_scores(spec, rng)):
        pid = f"GS{i + 1:03d}"
        crit = _criteria(int(score), rng)
        f = float(np.clip((score + rng.uniform(-0.5, 0.5)) / 5.0, 0.0, 1.0))
        sensor = SENSORS[int(rng.integers(len(SENSORS)))]
        params = _gait_params(f, rng, spec.signature)
        signal = synth_gait(params, sensor, spec.duration_s, rng)
        frame = pd.DataFrame(signal, columns=list(DEFAULT_CHANNELS))
        frame.insert(0, "time_s", np.arange(len(signal)) / sensor.rate_hz)
        frame.to_csv(out / "imu" / f"{pid}.csv", index=False, float_format="%.5f")
        rows.append(
            {
                "participant_id": pid,
                "age": int(rng.integers(70, 99)),
                "sex": rng.choice(["F", "M"], p=[0.72, 0.28]),
                "sensor": sensor.name,
                "sampling_rate_hz": sensor.rate_hz,
                **dict(zip(CRITERIA, crit.tolist())),
                "fried_score": int(score),
                "latent_frailty": round(f, 4),
            }
        )
    pd.DataFrame(rows).to_csv(out / "participants.csv", index=False)
    (out / ".complete").write_text(spec.key())


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--participants", type=int, default=48)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    print(generate_cohort(a.out, CohortSpec(a.participants, a.duration_s, seed=a.seed)))
