"""``pipeline=predict`` for sleep_tsr: score every EDF of a folder, no hypnogram needed.

Per night ``<night>.csv`` (one row per 30-s epoch: onset, predicted stage and the five stage
probabilities, i.e. the hypnodensity), ``<night>-Hypnogram.edf`` (EDF+ annotations worded as
Sleep-EDF's, readable by MNE) and ``<night>.png`` (hypnogram over hypnodensity); for all nights
``sleep_statistics.csv``, with accuracy and Cohen's kappa where a hypnogram lies beside the EDF.

The night is cut into 30-s epochs from its first sample, every window of ``seq_len`` epochs
(stride 1) is scored, and the log-probabilities of the windows covering an epoch are summed, as
the test pipeline does (``SequenceAggregator``): the stage is their argmax, the hypnodensity
their softmax (the normalised geometric mean of the windows' probabilities).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from core.errors import DataError
from datamodules.sleep_tsr.dataset import SequenceDataset
from datamodules.sleep_tsr.features import epoch_spectrogram
from datamodules.sleep_tsr.reader import EPOCH_S, UNKNOWN, read_eeg, read_stages
from experiments.runner.predict import TrainedModel, write_rows
from experiments.sleep_tsr.metrics import SequenceAggregator, staging_metrics

log = logging.getLogger(__name__)

STAGE_TEXT = ("Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage R")
STATISTICS_FILE = "sleep_statistics.csv"


class SleepStagingPredictor:
    """Built by the runner as ``predictor(trained=..., options=cfg.predict)``."""

    def __init__(
        self,
        trained: TrainedModel,
        options: DictConfig,
        channel: str | None = None,
        batch_size: int = 64,
    ) -> None:
        state = trained.datamodule_state()
        self.prep: dict[str, Any] = dict(state["preprocessing"])
        self.channel = channel or self.prep["channel"]
        self.sfreq = float(self.prep["sfreq"])
        self.mean = np.asarray(state["norm_mean"], dtype=np.float32)
        self.std = np.asarray(state["norm_std"], dtype=np.float32)
        self.seq_len = int(state["seq_len"])
        self.classes: list[str] = list(state["class_names"])
        self.module = trained.module
        self.batch_size = batch_size
        self.rows: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ files
    def inputs(self, root: Path) -> list[Path]:
        """Every ``*.edf`` that is not a hypnogram (recursively for a folder)."""
        files = [root] if root.is_file() else sorted(root.rglob("*.edf"), key=str)
        return [p for p in files if "hypnogram" not in p.name.lower()]

    def predict(self, path: Path, out_dir: Path) -> list[Path]:
        signal, _, meas_date = read_eeg(path, self.channel, self.sfreq)
        if self.prep.get("bandpass"):
            import mne

            low, high = self.prep["bandpass"]
            signal = mne.filter.filter_data(
                signal, self.sfreq, low, high, phase="zero", verbose="error"
            )
        n_ep = int(round(EPOCH_S * self.sfreq))
        n = len(signal) // n_ep
        if n < self.seq_len:
            raise DataError(
                f"{path}: {n} whole 30-s epochs; the model scores sequences of {self.seq_len}"
            )
        if len(signal) % n_ep:
            log.info("%s: the last %.1f s (not a whole epoch) are not scored", path.name, (len(signal) % n_ep) / self.sfreq)  # fmt: skip
        epochs = signal[: n * n_ep].reshape(n, n_ep).astype(np.float32)
        feats = epoch_spectrogram(
            epochs, self.sfreq, self.prep["window_s"], self.prep["overlap"], self.prep["n_fft"]
        )
        log_probs = self.night_log_probs((feats - self.mean) / self.std)
        stages = log_probs.argmax(1)
        probs = np.exp(log_probs - log_probs.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        name = night_name(path)
        onsets = EPOCH_S * np.arange(n)
        written = [
            self._write_csv(out_dir / f"{name}.csv", onsets, stages, probs),
            write_hypnogram_edf(out_dir / f"{name}-Hypnogram.edf", stages, meas_date),
            plot_night(out_dir / f"{name}.png", stages, probs, self.classes, name),
        ]
        row = {"night": name, "file": str(path)} | sleep_statistics(stages)
        row |= self._agreement(path, meas_date, stages)
        self.rows.append(row)
        return written

    def finish(self, out_dir: Path) -> list[Path]:
        return [write_rows(out_dir / STATISTICS_FILE, self.rows)]

    # ------------------------------------------------------------------ model
    @torch.no_grad()
    def night_log_probs(self, feats: np.ndarray) -> np.ndarray:
        """``(N, T, F)`` normalised features -> ``(N, C)`` mean log-probability per epoch."""
        dataset = SequenceDataset([feats], [np.zeros(len(feats), np.int64)], self.seq_len, 1)
        agg = SequenceAggregator([len(feats)], len(self.classes))
        for x, _, rec, start in DataLoader(dataset, batch_size=self.batch_size):
            logits = self.module(x.to(self.module.device))
            agg.add(torch.log_softmax(logits.float(), -1), rec, start)
        return agg.sums[0] / np.maximum(agg.counts[0], 1)[:, None]

    # ------------------------------------------------------------------ outputs
    def _write_csv(self, path: Path, onsets: np.ndarray, stages: np.ndarray, probs: np.ndarray):
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["onset_s", "stage", *[f"p_{c}" for c in self.classes]])
            for onset, stage, p in zip(onsets, stages, probs):
                writer.writerow([f"{onset:.0f}", self.classes[stage], *[f"{v:.6f}" for v in p]])
        return path

    def _agreement(self, path: Path, meas_date: Any, stages: np.ndarray) -> dict[str, float]:
        """Accuracy and kappa against a hypnogram beside the EDF (Sleep-EDF naming), if any."""
        hyp = matching_hypnogram(path)
        if hyp is None:
            return {}
        onsets, labels = read_stages(hyp, meas_date)
        idx = np.round(onsets / EPOCH_S).astype(np.int64)
        keep = (labels != UNKNOWN) & (idx >= 0) & (idx < len(stages))
        if not keep.any():
            log.warning("%s: no scored epoch inside %s", hyp, path.name)
            return {}
        m = staging_metrics(labels[keep], stages[idx[keep]], len(self.classes))
        return {"hypnogram": str(hyp), "scored_epochs": int(keep.sum())} | {
            "accuracy": m["acc"],
            "kappa": m["kappa"],
        }


def night_name(path: Path) -> str:
    """``SC4001E0-PSG.edf`` -> ``SC4001E0``; other files lose their ``.edf``."""
    stem = path.name[: -len(".edf")] if path.name.lower().endswith(".edf") else path.stem
    return stem[: -len("-PSG")] if stem.upper().endswith("-PSG") else stem


def matching_hypnogram(psg: Path) -> Path | None:
    """Sleep-EDF pairs ``SC4001E0-PSG.edf`` with ``SC4001E?-Hypnogram.edf`` (scorer letter)."""
    name = night_name(psg)
    found = sorted(psg.parent.glob(f"{name[:7]}?-Hypnogram.edf")) if len(name) >= 7 else []
    found += sorted(psg.parent.glob(f"{name}-Hypnogram.edf"))
    return found[0] if found else None


def sleep_statistics(stages: np.ndarray, epoch_min: float = EPOCH_S / 60) -> dict[str, float]:
    """Standard night statistics from a W/N1/N2/N3/REM hypnogram (class indices 0-4).

    Time in bed is the whole recording (no lights-off marker is read); sleep onset is the first
    non-W epoch; WASO is the wake between sleep onset and the last sleep epoch; stage
    percentages are of total sleep time.
    """
    stages = np.asarray(stages)
    asleep = np.flatnonzero(stages != 0)
    tib = len(stages) * epoch_min
    out: dict[str, float] = {"time_in_bed_min": tib}
    tst = len(asleep) * epoch_min
    out["total_sleep_time_min"] = tst
    out["sleep_efficiency_pct"] = 100.0 * tst / tib if tib else float("nan")
    if len(asleep):
        onset, last = asleep[0], asleep[-1]
        out["sleep_onset_latency_min"] = float(onset) * epoch_min
        out["waso_min"] = float((stages[onset : last + 1] == 0).sum()) * epoch_min
    else:
        out["sleep_onset_latency_min"] = float("nan")
        out["waso_min"] = float("nan")
    for k, name in enumerate(("W", "N1", "N2", "N3", "REM")):
        minutes = float((stages == k).sum()) * epoch_min
        out[f"{name}_min"] = minutes
        if k:
            out[f"{name}_pct_tst"] = 100.0 * minutes / tst if tst else float("nan")
    return out


def write_hypnogram_edf(path: Path, stages: np.ndarray, meas_date: Any) -> Path:
    """EDF+ annotations, one per run of equal stages, worded as Sleep-EDF's hypnograms."""
    import edfio

    start = meas_date if isinstance(meas_date, dt.datetime) else dt.datetime(1985, 1, 1)
    annotations, i = [], 0
    while i < len(stages):
        j = i
        while j < len(stages) and stages[j] == stages[i]:
            j += 1
        text = STAGE_TEXT[int(stages[i])]
        annotations.append(edfio.EdfAnnotation(EPOCH_S * i, EPOCH_S * (j - i), text))
        i = j
    edfio.Edf(
        [],
        recording=edfio.Recording(startdate=start.date()),
        starttime=start.time().replace(tzinfo=None),
        annotations=annotations,
    ).write(path)
    return path


def plot_night(
    path: Path, stages: np.ndarray, probs: np.ndarray, classes: list[str], title: str
) -> Path:
    """Hypnogram (top) over the hypnodensity (bottom), hours on the x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.arange(len(stages) + 1) * EPOCH_S / 3600
    order = [0, 4, 1, 2, 3]  # W, REM, N1, N2, N3 from the top, as clinicians draw it
    level = np.array([order.index(s) for s in stages])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True)
    ax1.step(hours, np.r_[level, level[-1]], where="post", color="k", lw=0.8)
    ax1.set_yticks(range(5), [classes[k] for k in order])
    ax1.invert_yaxis()
    ax1.set_title(title)
    ax2.stackplot(hours[:-1], probs.T, labels=classes, step="post")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("probability")
    ax2.set_xlabel("hours from recording start")
    ax2.legend(loc="upper right", ncol=5, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
