"""Seconds to preprocess one full-length Sleep Cassette night on one CPU core.

Writes a ~22 h synthetic PSG with the real SC channel layout (3 x 100 Hz + 4 x 1 Hz signals,
30-s data records) and its EDF+ hypnogram, then times the datamodule's path for one night:
MNE read of Fpz-Cz + hypnogram parsing + epoching/cropping, and the 29x129 STFT. Target: < 5 s.

    python benchmarks/sleep_tsr_preprocessing.py [--hours 22] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout's code

from benchmarks.common import (  # noqa: E402
    add_common_args,
    describe,
    machine,
    resolve_device,
    write_record,
)
from datamodules.sleep_tsr.features import epoch_spectrogram
from datamodules.sleep_tsr.reader import load_recording
from datamodules.sleep_tsr.records import find_recordings, hypnogram_name, psg_name
from datamodules.sleep_tsr.synthetic import (
    SFREQ,
    synth_eeg,
    synth_eog,
    synth_hypnogram,
    write_hypnogram,
    write_psg,
)


def write_full_night(folder: Path, hours: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sleep_h = min(8.0, hours / 2)
    wake_min = (hours - sleep_h) * 60 / 2
    stages = synth_hypnogram(rng, sleep_h, (wake_min, wake_min))
    n_sec = len(stages) * 30
    start = dt.datetime(1989, 4, 24, 16, 13)
    signals = {
        "EEG Fpz-Cz": (synth_eeg(rng, stages, 10.0, 1.0), SFREQ),
        "EEG Pz-Oz": (synth_eeg(rng, stages, 10.0, 0.7), SFREQ),
        "EOG horizontal": (synth_eog(rng, stages), SFREQ),
        "Resp oro-nasal": (rng.standard_normal(n_sec), 1.0),
        "EMG submental": (np.abs(rng.standard_normal(n_sec)), 1.0),
        "Temp rectal": (37 + 0.1 * rng.standard_normal(n_sec), 1.0),
        "Event marker": (np.zeros(n_sec), 1.0),
    }
    write_psg(folder / psg_name(0, 1), signals, start)
    write_hypnogram(folder / hypnogram_name(0, 1), stages, start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=22.0)
    parser.add_argument("--repeats", type=int, default=3)
    add_common_args(parser)
    args = parser.parse_args()
    resolve_device(parser, args)  # reading and the STFT run in the data loader, on the CPU
    info = machine("cpu")
    print(describe(info) + " (a CPU stage: --device does not apply)")
    figures: dict = {"hours": args.hours}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        write_full_night(folder, args.hours)
        print(f"wrote a {args.hours:g} h night in {time.perf_counter() - t0:.1f} s")
        files = find_recordings(folder)[0][0]
        size_mb = files.psg.stat().st_size / 2**20
        load_recording(files)  # warm-up: imports, page cache
        for crop in ("sleep_30min", "none"):
            read_t, stft_t, totals = [], [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                rec = load_recording(files, crop=crop)
                t1 = time.perf_counter()
                feats = epoch_spectrogram(rec.epochs)
                t2 = time.perf_counter()
                read_t.append(t1 - t0)
                stft_t.append(t2 - t1)
                totals.append(t2 - t0)
            print(
                f"crop={crop:12s} {len(rec.labels):5d} epochs -> {feats.shape}: "
                f"read+epoch {statistics.median(read_t):.2f} s, STFT {statistics.median(stft_t):.2f} s, "
                f"total {statistics.median(totals):.2f} s/night (PSG {size_mb:.0f} MB, 1 thread)"
            )
            figures[f"crop={crop}"] = {"s_per_night": round(statistics.median(totals), 3)}
    figures["psg_mb"] = round(size_mb, 1)
    write_record(args.json, "sleep_tsr_preprocessing", info, figures)


if __name__ == "__main__":
    main()
