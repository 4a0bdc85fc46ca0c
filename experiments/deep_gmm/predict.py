"""``pipeline=predict`` for deep_gmm: frame state posteriors for a folder of audio files.

Every audio file under ``predict.input`` (any depth; the utterance id is the file stem, as the
datamodule reads a corpus) gets the training run's features (filterbank, framing, utterance
normalisation and context splicing, all from the checkpoint's config) and the model's state
posteriors: ``posteriors/<utt_id>.npy`` (frames x states, float32) and, for all utterances,
``alignments.txt`` with the most probable state per frame in the alignment format
(``utt_id s1 s2 ...``) that the datamodule reads, so an output can be read back as an input.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from core.errors import DataError
from datamodules.deep_gmm.alignments import write_alignments
from datamodules.deep_gmm.corpus import AUDIO_EXTENSIONS, SILENT_PEAK, load_audio
from datamodules.deep_gmm.features import log_mel, normalise_utterance, splice_indices
from experiments.runner.predict import TrainedModel

log = logging.getLogger(__name__)

ALIGNMENT_FILE = "alignments.txt"


class FrameStatePredictor:
    """Built by the runner as ``predictor(trained=..., options=cfg.predict)``."""

    def __init__(self, trained: TrainedModel, options: DictConfig, batch_size: int = 1024) -> None:
        dm = trained.config.datamodule
        self.sample_rate = int(dm.sample_rate)
        self.feature_kwargs = {
            "n_mels": int(dm.n_mels),
            "win_ms": float(dm.win_ms),
            "hop_ms": float(dm.hop_ms),
            "snip_edges": bool(dm.get("snip_edges", True)),
            "filterbank": str(dm.get("filterbank", "kaldi")),
        }
        self.normalise = bool(dm.get("normalise", True))
        self.left, self.right = int(dm.left_context), int(dm.right_context)
        self.module = trained.module
        self.batch_size = batch_size
        self.alignments: dict[str, np.ndarray] = {}

    def inputs(self, root: Path) -> list[Path]:
        if root.is_file():
            return [root]
        files = [p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()]
        return sorted(files, key=str)

    def predict(self, path: Path, out_dir: Path) -> list[Path]:
        utt = path.stem
        if utt in self.alignments:
            raise DataError(f"{path}: a second file for utterance {utt!r} (ids are file stems)")
        wave, resampled, stereo = load_audio(path, self.sample_rate)
        if resampled or stereo:
            log.info("%s: %s", path.name, "resampled" if resampled else "stereo averaged")
        if wave.size == 0 or float(np.abs(wave).max()) <= SILENT_PEAK:
            raise DataError(f"{path}: digital silence (peak <= one 16-bit step)")
        try:
            feats = log_mel(wave, self.sample_rate, **self.feature_kwargs)
        except ValueError as err:
            raise DataError(f"{path}: {err}") from err
        if len(feats) == 0:
            raise DataError(f"{path}: shorter than one analysis window")
        if self.normalise:
            feats = normalise_utterance(feats)
        posteriors = self.posteriors(feats)
        target = out_dir / "posteriors" / f"{utt}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, posteriors)
        self.alignments[utt] = posteriors.argmax(1)
        return [target]

    def finish(self, out_dir: Path) -> list[Path]:
        path = out_dir / ALIGNMENT_FILE
        write_alignments(path, self.alignments)
        return [path]

    @torch.no_grad()
    def posteriors(self, feats: np.ndarray) -> np.ndarray:
        """(frames, n_mels) -> (frames, states) posteriors, contexts clamped to the utterance."""
        n = len(feats)
        rows = splice_indices(
            np.arange(n), np.zeros(n, np.int64), np.full(n, n), self.left, self.right
        )
        x = torch.from_numpy(feats)[torch.from_numpy(rows)].reshape(n, -1)
        out = [
            torch.softmax(self.module(x[i : i + self.batch_size]).float(), -1)
            for i in range(0, n, self.batch_size)
        ]
        return torch.cat(out).numpy().astype(np.float32)
