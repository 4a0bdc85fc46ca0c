"""``pipeline=predict`` for frailty: classify the participants of a cohort, no Fried score needed.

The input is a cohort in the training schema's layout (``participants.csv`` + one IMU file per
participant, names from the checkpoint's ``datamodule.schema``; ``predict.predictor.schema``
overrides keys for a cohort exported under other names). Without a participants table every
file matching ``recording_pattern`` is a participant, its id taken from the file name.

Each recording is read exactly as training read it (``read_recording``: rate from the table,
the schema or the time column, NaN stretches interpolated or cut, resampled to the model's
rate), scaled with the training scaler, windowed and db1-transformed with the checkpoint's
settings (``FrailtyDataModule.state_dict``), so predict needs neither the training data nor
its config. Outputs:

* ``windows.csv``: participant, segment, window index, onset (s from the file's first sample),
  predicted class and the class probabilities of every window;
* ``participants.csv``: participant, class by majority vote of its windows (ties go to the
  first class in ``class_names``, as the test pipeline's ``argmax``), the mean probabilities and
  the number of windows; with ``fried_score`` and ``true_class`` where the table has scores;
* where scores are present, ``confusion_participants.csv`` / ``.png``: participants by true
  class (rows) and voted class (columns).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from core.checks import ConfigError
from core.errors import DataError
from datamodules.frailty.labels import fried_to_label
from datamodules.frailty.pipeline import WindowSettings
from datamodules.frailty.preprocess import OutlierScaler, signal_features
from datamodules.frailty.reader import (
    CohortReport,
    read_recording,
    read_unlabelled_participants,
    recordings_by_id,
)
from datamodules.frailty.schema import CohortSchema
from experiments.frailty.metrics import plot_confusion
from experiments.runner.predict import TrainedModel, write_rows

log = logging.getLogger(__name__)

WINDOWS_FILE = "windows.csv"
PARTICIPANTS_FILE = "participants.csv"
CONFUSION_FILE = "confusion_participants"


class FrailtyPredictor:
    """Built by the runner as ``predictor(trained=..., options=cfg.predict)``.

    Args:
        schema: keys of ``CohortSchema`` that differ in the new cohort (file and column names,
            delimiter, rates); the channels must be the model's, in its order.
        batch_size: windows per forward pass.
    """

    def __init__(
        self,
        trained: TrainedModel,
        options: DictConfig,
        schema: dict[str, Any] | None = None,
        batch_size: int = 64,
    ) -> None:
        state = trained.datamodule_state()
        self.classes: list[str] = list(state["class_names"])
        trained_schema = dict(state["schema"])
        overrides = OmegaConf.to_container(schema) if isinstance(schema, DictConfig) else schema
        try:
            self.schema = CohortSchema.from_config({**trained_schema, **(overrides or {})})
        except (TypeError, ValueError) as err:
            raise ConfigError("predict.predictor.schema", str(err)) from err
        n_model = len(trained_schema["channel_columns"])
        if len(self.schema.channel_columns) != n_model:
            raise ConfigError(
                "predict.predictor.schema.channel_columns",
                f"got {list(self.schema.channel_columns)}; the model reads {n_model} channels "
                f"{list(trained_schema['channel_columns'])} (same order)",
            )
        self.settings = WindowSettings(**state["settings"])
        self.scaler = OutlierScaler.from_state(state["scaler"])
        self.rate_hz = float(state["target_rate_hz"])
        self.max_nan_gap_s = float(state["max_nan_gap_s"])
        self.batch_size = int(batch_size)
        self.module = trained.module
        self.participants: dict[Path, tuple[str, float | None, float]] = {}
        self.window_rows: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ files
    def inputs(self, root: Path) -> list[Path]:
        """One recording path per participant (a missing file is skipped later, named)."""
        if root.is_file() and root.name == Path(self.schema.participants_file).name:
            root = root.parents[len(Path(self.schema.participants_file).parts) - 1]
        if root.is_file():
            self.participants = {root: (root.stem, self.schema.rate_hz, np.nan)}
            return [root]
        table_path = root / self.schema.participants_file
        if not table_path.is_file():
            found = recordings_by_id(root, self.schema)
            log.info(
                "%s: no participants table; %d recordings match %r (ids from the file names, "
                "rate from schema.rate_hz or the time column)",
                root, len(found), self.schema.recording_pattern,
            )  # fmt: skip
            self.participants = {p: (pid, self.schema.rate_hz, np.nan) for pid, p in found.items()}
            return list(self.participants)
        table, scores, schema = read_unlabelled_participants(root, self.schema)
        ids = table[schema.id_column].tolist()
        rates = table[schema.rate_column] if schema.rate_column else [schema.rate_hz] * len(ids)
        self.participants = {
            root / schema.recording_pattern.format(id=pid): (pid, rate, float(score))
            for pid, rate, score in zip(ids, rates, scores)
        }
        if scores.notna().any():
            log.info("%s: %d of %d participants have a Fried score", table_path, scores.notna().sum(), len(ids))  # fmt: skip
        return list(self.participants)

    def predict(self, path: Path, out_dir: Path) -> list[Path]:
        pid, declared, score = self.participants[path]
        if not path.is_file():
            raise DataError(f"{path}: no recording for participant {pid}")
        report = CohortReport()
        rec = read_recording(
            path,
            self.schema,
            declared if declared is not None and np.isfinite(declared) else None,
            self.rate_hz,
            self.settings.window,
            self.max_nan_gap_s,
            report,
        )
        if not rec.segments:
            raise DataError(
                f"{path}: no stretch of {self.settings.window} samples "
                f"({self.settings.window / self.rate_hz:g} s) after cutting NaN stretches and gaps"
            )
        for what, n in (("non-numeric cells", report.non_numeric_cells), ("time gaps", report.time_gaps), ("NaN stretches cut", report.nan_stretches_cut)):  # fmt: skip
            if n:
                log.warning("%s: %d %s (handled as in training)", path, n, what)
        probs, segment, window, onset = [], [], [], []
        step_s = self.settings.stride / self.rate_hz
        for k, (seg, start_s) in enumerate(zip(rec.segments, rec.onsets_s)):
            feats = signal_features(
                seg,
                self.scaler,
                self.settings.window,
                self.settings.stride,
                self.settings.wavelet,
                self.settings.wavelet_level,
                self.settings.wavelet_coeffs,
            )
            probs.append(self.window_probs(feats))
            segment += [k] * len(feats)
            window += list(range(len(feats)))
            onset += list(start_s + step_s * np.arange(len(feats)))
        p = np.concatenate(probs)
        pred = p.argmax(1)
        truth = self._true_class(pid, score)
        for i in range(len(p)):
            self.window_rows.append(
                {"participant": pid, "segment": segment[i], "window": window[i]}
                | {"onset_s": f"{onset[i]:.3f}", "class": self.classes[pred[i]]}
                | self._prob_columns(p[i])
                | ({"true_class": truth} if truth is not None else {})
            )
        votes = np.bincount(pred, minlength=len(self.classes))
        row = {"participant": pid, "class": self.classes[int(votes.argmax())]}
        row |= self._prob_columns(p.mean(0)) | {"windows": len(p)}
        row |= {f"votes_{c}": int(v) for c, v in zip(self.classes, votes)}
        if truth is not None:
            row |= {"fried_score": int(score), "true_class": truth}
        self.rows.append(row)
        return []

    def finish(self, out_dir: Path) -> list[Path]:
        written = [
            write_rows(out_dir / WINDOWS_FILE, self.window_rows),
            write_rows(out_dir / PARTICIPANTS_FILE, self.rows),
        ]
        scored = [r for r in self.rows if "true_class" in r]
        if scored:
            written += self._confusion(scored, out_dir)
        return written

    # ------------------------------------------------------------------ model
    @torch.no_grad()
    def window_probs(self, feats: np.ndarray) -> np.ndarray:
        """(windows, coefficients, channels) -> (windows, classes) softmax probabilities."""
        out = []
        for start in range(0, len(feats), self.batch_size):
            x = torch.from_numpy(feats[start : start + self.batch_size]).to(self.module.device)
            out.append(torch.softmax(self.module(x).float(), -1).cpu().numpy())
        return np.concatenate(out)

    # ------------------------------------------------------------------ outputs
    def _prob_columns(self, p: np.ndarray) -> dict[str, str]:
        return {f"p_{c}": f"{v:.6f}" for c, v in zip(self.classes, p)}

    def _true_class(self, pid: str, score: float) -> str | None:
        if not np.isfinite(score):
            return None
        try:
            return self.classes[int(fried_to_label(score))]
        except ValueError as err:
            log.warning("participant %s: Fried score %s not used: %s", pid, score, err)
            return None

    def _confusion(self, scored: list[dict[str, Any]], out_dir: Path) -> list[Path]:
        """Participants by true class (rows) and voted class (columns), CSV and PNG."""
        k = len(self.classes)
        cm = np.zeros((k, k), dtype=np.int64)
        for r in scored:
            cm[self.classes.index(r["true_class"]), self.classes.index(r["class"])] += 1
        table = pd.DataFrame(cm, index=pd.Index(self.classes, name="true"), columns=self.classes)
        csv_path = out_dir / f"{CONFUSION_FILE}.csv"
        table.to_csv(csv_path)
        acc = float(np.trace(cm) / cm.sum())
        title = f"participants by majority vote (n={cm.sum()}, acc {acc:.2f})"
        png = plot_confusion(cm, tuple(self.classes), out_dir / f"{CONFUSION_FILE}.png", title)
        log.info("frailty predict: %d participants with a Fried score, vote accuracy %.3f", cm.sum(), acc)  # fmt: skip
        return [csv_path, png]
