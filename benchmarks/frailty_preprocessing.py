"""Windowing + scaling + db1 wavelets at GSTRIDE scale: vectorised vs a per-window loop.

163 participants x 15 min at the target rate (100 Hz) -> 1797 windows of 200 samples
(stride 50) each, 6 channels; both paths produce the same (windows, 203, 6) features (checked
on every participant) and run pinned to one CPU core in the same process.

    python benchmarks/frailty_preprocessing.py            # full cohort, loop included
    python benchmarks/frailty_preprocessing.py --loop-participants 20   # loop on a subset
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pywt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    add_common_args,
    describe,
    machine,
    resolve_device,
    write_record,
)
from datamodules.frailty.preprocess import (  # noqa: E402
    OutlierScaler,
    signal_features,
)


def vectorised(signal: np.ndarray, scaler: OutlierScaler) -> np.ndarray:
    """The datamodule's path: clip/scale the recording once, strided windows, one pywt call."""
    return signal_features(signal, scaler, 200, 50, "db1")


def per_window_loop(signal: np.ndarray, scaler: OutlierScaler) -> np.ndarray:
    """The usual notebook code: slice, scale and transform one window and channel at a time."""
    n = 1 + (len(signal) - 200) // 50
    out = np.empty((n, 203, signal.shape[1]), dtype=np.float32)
    for i in range(n):
        w = signal[i * 50 : i * 50 + 200]
        w = (np.clip(w, scaler.low, scaler.high) - scaler.mean) / scaler.scale
        for c in range(signal.shape[1]):
            out[i, :, c] = np.concatenate(pywt.wavedec(w[:, c], "db1"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=163)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--rate-hz", type=float, default=100.0)
    parser.add_argument("--loop-participants", type=int, default=None, help="default: all")
    add_common_args(parser)
    a = parser.parse_args()
    resolve_device(
        parser, a
    )  # preprocessing runs in the data loader, on the CPU, whatever --device
    info = machine("cpu")
    print(describe(info) + " (a CPU stage: --device does not apply)")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    n_samples = int(a.minutes * 60 * a.rate_hz)
    rng = np.random.default_rng(0)
    # Gait-like content does not change the cost; random float32 recordings keep setup short.
    cohort = [rng.normal(size=(n_samples, 6)).astype(np.float32) for _ in range(a.participants)]
    scaler = OutlierScaler(k=5.0).fit(np.concatenate(cohort[:4]))
    n_loop = a.participants if a.loop_participants is None else a.loop_participants

    # Interleaved per participant, so both paths see the same load on a shared machine.
    t_vec = t_loop = 0.0
    n_windows = loop_windows = 0
    for i, sig in enumerate(cohort):
        t0 = time.perf_counter()
        feats = vectorised(sig, scaler)
        t_vec += time.perf_counter() - t0
        n_windows += len(feats)
        if i < n_loop:
            t0 = time.perf_counter()
            ref = per_window_loop(sig, scaler)
            t_loop += time.perf_counter() - t0
            loop_windows += len(ref)
            if i < 3:  # same numbers from both paths
                assert np.allclose(feats, ref, atol=1e-4)

    t_loop_full = t_loop * n_windows / loop_windows
    print(
        f"cohort: {a.participants} participants x {a.minutes:g} min at {a.rate_hz:g} Hz = "
        f"{n_windows} windows of 200 x 6 -> 203 db1 coefficients x 6, one CPU core"
    )
    print(f"vectorised : {t_vec:8.2f} s  ({n_windows / t_vec:,.0f} windows/s)")
    scaled = "" if n_loop == a.participants else f", measured on {n_loop} participants, scaled"
    print(f"per-window : {t_loop_full:8.2f} s  ({loop_windows / t_loop:,.0f} windows/s{scaled})")
    print(f"speed-up   : {t_loop_full / t_vec:8.1f} x   (target >= 20 x, vectorised < 60 s)")
    figures = {
        "participants": a.participants,
        "windows": n_windows,
        "vectorised_s": round(t_vec, 2),
        "loop_s": round(t_loop_full, 2),
        "speedup": round(t_loop_full / t_vec, 1),
    }
    write_record(a.json, "frailty_preprocessing", info, figures)


if __name__ == "__main__":
    main()
