"""``pipeline=predict`` for sd_mae: classify a folder of image tiles with a probe or fine-tune.

An sd_mae run trains a chain: its pre-training checkpoint (``checkpoints/pretrain/``) has no
classifier; the classifiers are the linear probe (``checkpoints/probe/``), the random-init
probe (``probe_random/``, the floor) and the fine-tunes (``finetune<i>/``). With a run directory
as ``ckpt_path``, ``predict.predictor.classifier`` picks one:

* ``auto`` (default): the first fine-tune (``finetune0``) when the run has one, else the probe
  (the paper's headline numbers are the fine-tune's; a probe-only run still predicts);
* ``finetune`` / ``probe`` / ``probe_random`` / ``finetune<i>``: that stage; when it is
  missing the run stops with a config error listing the stages the run has.

A checkpoint file is used as it is, its kind read from its folder (or its weights). The tiles'
preprocessing (native tile size, network input size, centre-crop ratio, normalisation mean and
std) and the class names come from the checkpoint (``SDMAEDataModule.state_dict``): every image
under ``predict.input`` (any depth, the formats the datamodule reads) is decoded, made RGB,
resized to the native tile size and then transformed exactly as the test split is.

Outputs: ``predictions.csv`` (path relative to the input, predicted class, one probability
column per class) and, with ``predict.predictor.embeddings=true``, ``embeddings.npy``
(images x embed_dim float32: the encoder's tokens averaged, the probe's input features or the
fine-tune's pooled vector before ``fc_norm``) with ``embeddings_paths.txt`` listing the images
in the same order as its rows and as ``predictions.csv``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from core.checks import ConfigError
from datamodules.sd_mae.folder import IMG_EXTENSIONS, decode
from datamodules.sd_mae.transforms import eval_transform
from experiments.runner.evaluate import best_checkpoint_of
from experiments.runner.predict import TrainedModel, write_rows
from experiments.runner.task import instantiate_checked
from experiments.sd_mae.evaluate import STAGE

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"
EMBEDDINGS_FILE = "embeddings.npy"
EMBEDDING_PATHS_FILE = "embeddings_paths.txt"
KEY = "predict.predictor.classifier"
CHOICES = ("auto", "finetune", "probe", "probe_random", "finetune<i>")


def _check_classifier(classifier: str) -> str:
    classifier = str(classifier)
    if classifier not in ("auto", "finetune") and not STAGE.match(classifier):
        raise ConfigError(KEY, f"got {classifier!r}; allowed: {', '.join(CHOICES)}")
    return classifier


def _stage_dirs(ckpt_dir: Path) -> list[str]:
    """The classifier stages a run's ``checkpoints/`` holds, fine-tunes in numeric order."""
    names = [p.name for p in ckpt_dir.iterdir() if p.is_dir() and STAGE.match(p.name)]
    return sorted(names, key=lambda n: (n.startswith("finetune"), int(re.sub(r"\D", "", n) or 0)))


def stage_kind(path: Path, state_dict: dict[str, Any]) -> str:
    """``probe`` or ``finetune`` for a checkpoint: from its stage folder, else its weights."""
    if STAGE.match(path.parent.name):
        return "probe" if path.parent.name.startswith("probe") else "finetune"
    if "head.weight" in state_dict and "bn.running_mean" in state_dict:
        return "probe"
    if "net.head.weight" in state_dict:
        return "finetune"
    raise ConfigError(
        "ckpt_path",
        f"{path} holds no classifier (a pre-training checkpoint?); give the run directory or a "
        "checkpoint under checkpoints/probe/ or checkpoints/finetune<i>/",
    )


class TilePredictor:
    """Built by the runner as ``predictor(trained=..., options=cfg.predict)``.

    Args:
        classifier: which stage of a run directory predicts (see the module docstring).
        embeddings: also write the encoder's mean-pooled embeddings.
        batch_size: images per forward pass.
    """

    def __init__(
        self,
        trained: TrainedModel,
        options: DictConfig,
        classifier: str = "auto",
        embeddings: bool = False,
        batch_size: int = 64,
    ) -> None:
        _check_classifier(classifier)
        state = trained.datamodule_state()
        self.classes: list[str] = list(state["classes"])
        self.native = state.get("native_size")
        self.transform = eval_transform(
            int(state["img_size"]),
            float(state["crop_ratio"]),
            tuple(state["mean"]),
            tuple(state["std"]),
        )
        self.kind = stage_kind(trained.checkpoint, trained.raw["state_dict"])
        self.module = self._build(trained)
        log.info("sd_mae predict: %s classifier %s, classes %s", self.kind, trained.checkpoint, self.classes)  # fmt: skip
        self.embeddings = bool(embeddings)
        self.batch_size = int(batch_size)
        self.root: Path | None = None
        self.pending: list[tuple[str, torch.Tensor]] = []
        self.rows: list[dict[str, Any]] = []
        self.features: list[np.ndarray] = []

    @classmethod
    def choose_checkpoint(cls, run_dir: Path, classifier: str = "auto", **_: Any) -> Path:
        """The best checkpoint of the chosen classifier stage of an sd_mae run directory."""
        classifier = _check_classifier(classifier)
        ckpt_dir = run_dir / "checkpoints"
        if not ckpt_dir.is_dir():
            raise ConfigError(
                "ckpt_path", f"got {str(run_dir)!r}: no checkpoints/ folder; is it an sd_mae run?"
            )
        have = _stage_dirs(ckpt_dir)
        finetunes = [s for s in have if s.startswith("finetune")]
        if classifier == "auto":
            wanted = finetunes[:1] or (["probe"] if "probe" in have else [])
        elif classifier == "finetune":
            wanted = finetunes[:1]
        else:
            wanted = [classifier] if classifier in have else []
        if not wanted:
            listed = ", ".join(f"checkpoints/{s}/" for s in have) or "none"
            raise ConfigError(
                KEY,
                f"got {classifier!r}: {run_dir} has no such classifier checkpoint; its "
                f"classifier stages: {listed} (allowed: {', '.join(CHOICES)})",
            )
        chosen = best_checkpoint_of(run_dir, wanted[0])
        log.info("ckpt_path=%s, classifier=%s -> %s", run_dir, classifier, chosen)
        return chosen

    def _build(self, trained: TrainedModel) -> torch.nn.Module:
        """The stage's module from the run config, the class count from the checkpoint."""
        chain = trained.config.get("sd_mae") or {}
        if self.kind not in chain:
            raise ConfigError(
                "ckpt_path", f"{trained.checkpoint}: its run config has no sd_mae.{self.kind}"
            )
        node = OmegaConf.create(OmegaConf.to_container(chain[self.kind]))
        target = node if self.kind == "probe" else node.net
        target.num_classes = len(self.classes)
        module = instantiate_checked(node, encoder_ckpt=None, class_names=self.classes)
        try:
            module.load_state_dict(trained.raw["state_dict"])
        except RuntimeError as err:
            raise ConfigError(
                "ckpt_path", f"{trained.checkpoint} does not fit its {self.kind} config: {err}"
            ) from err
        return module.eval()

    # ------------------------------------------------------------------ files
    def inputs(self, root: Path) -> list[Path]:
        """Every image under ``root`` (any depth) in path order, or ``root`` itself."""
        self.root = root if root.is_dir() else root.parent
        if root.is_file():
            return [root]
        return sorted(
            (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS),
            key=lambda p: p.relative_to(root).as_posix(),
        )

    def predict(self, path: Path, out_dir: Path) -> list[Path]:
        """Decode now (a bad file is skipped here, named); the forward pass runs per batch."""
        img = decode(path)  # DataFormatError (a DataError) naming the file
        if self.native and img.size != (self.native, self.native):
            img = img.resize((self.native, self.native), Image.BICUBIC)
        rel = path.relative_to(self.root).as_posix() if self.root else path.name
        self.pending.append((rel, self.transform(img)))
        if len(self.pending) >= self.batch_size:
            self._flush()
        return []

    def finish(self, out_dir: Path) -> list[Path]:
        self._flush()
        written = [write_rows(out_dir / PREDICTIONS_FILE, self.rows)]
        if self.embeddings:
            np.save(out_dir / EMBEDDINGS_FILE, np.concatenate(self.features).astype(np.float32))
            paths = out_dir / EMBEDDING_PATHS_FILE
            paths.write_text("".join(f"{r['path']}\n" for r in self.rows))
            written += [out_dir / EMBEDDINGS_FILE, paths]
        return written

    # ------------------------------------------------------------------ model
    @torch.no_grad()
    def _flush(self) -> None:
        if not self.pending:
            return
        names = [n for n, _ in self.pending]
        x = torch.stack([t for _, t in self.pending]).to(self.module.device)
        self.pending = []
        pooled = self.pooled(x)
        if self.kind == "probe":
            logits = self.module.head(self.module.bn(pooled))
        else:
            logits = self.module.net.head(self.module.net.fc_norm(pooled))
        probs = torch.softmax(logits.float(), -1).cpu().numpy()
        for name, p in zip(names, probs):
            self.rows.append(
                {"path": name, "class": self.classes[int(p.argmax())]}
                | {f"p_{c}": f"{v:.6f}" for c, v in zip(self.classes, p)}
            )
        if self.embeddings:
            self.features.append(pooled.float().cpu().numpy())

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's tokens averaged: what the probe's and fine-tune's heads read."""
        encoder = self.module.encoder if self.kind == "probe" else self.module.net.encoder
        return encoder(x).mean(dim=1)
