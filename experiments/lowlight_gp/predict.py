"""``pipeline=predict`` for lowlight_gp: enhance a folder of photographs with a trained run.

Every image under ``predict.input`` (any depth) is read with EXIF orientation applied and
converted to RGB, enhanced with the run's method and settings (reference CNN from the
checkpoint, k-means GP fitted per image as the paper does), and written under the same relative
path and name: PNG, or the input's own format when that is lossless (PNG, TIFF, BMP). A damaged
file is skipped and named. ``timing.csv`` holds the seconds per stage of every image.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from core.errors import DataError
from datamodules.lowlight_gp.folder import SkipImage, image_files, load_rgb
from experiments.lowlight_gp.pipeline import GP_METHODS, _enhancer, enhance, resolve_settings
from experiments.runner.predict import TrainedModel, write_rows
from models.lowlight_gp.gpe_cnn import GPEReferenceCNN

MIN_SIZE = 8  # pixels on the shorter side: the GP's 3 x 3 neighbourhoods need a few rows
LOSSLESS = (".png", ".tif", ".tiff", ".bmp")
TIMING_FILE = "timing.csv"

log = logging.getLogger(__name__)


def read_photo(path: Path) -> np.ndarray:
    """The datamodule's strict reader (EXIF upright, conversions to RGB) as float64 in [0, 1]."""
    try:
        rgb, notes = load_rgb(path, min_size=MIN_SIZE)
    except SkipImage as err:
        raise DataError(f"{path}: {err}") from err
    if notes:
        log.info("%s: %s", path, "; ".join(notes))
    return rgb.astype(np.float64) / 255.0


def write_photo(path: Path, rgb: np.ndarray) -> Path:
    """8-bit RGB in the format of ``path``'s suffix."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)).save(path)
    return path


class LowLightPredictor:
    """Built by the runner as ``predictor(trained=..., options=cfg.predict)``."""

    def __init__(self, trained: TrainedModel, options: DictConfig, num_threads: int = 1) -> None:
        self.ll = resolve_settings(trained.config)
        self.method = self.ll.method
        self.net: torch.nn.Module | None = None
        self.enhancer = None
        if self.method in GP_METHODS:
            channels = 1 if self.ll.mode == "lm" else 3
            if self.ll.get("reference_cnn", "trained") == "gpe":
                net = GPEReferenceCNN(channels)  # GPE's published net; weights from the checkpoint
            else:
                net = instantiate(trained.config.model, in_channels=channels)
            state = trained.raw["state_dict"]
            weights = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
            try:
                net.load_state_dict(weights)
            except RuntimeError as err:
                raise DataError(f"{trained.checkpoint}: reference CNN does not fit: {err}") from err
            self.net = net.eval()
            self.enhancer = _enhancer(self.ll, self.method)
        torch.set_num_threads(int(num_threads))
        self.root: Path | None = None
        self.rows: list[dict[str, Any]] = []

    def inputs(self, root: Path) -> list[Path]:
        self.root = root if root.is_dir() else root.parent
        if root.is_file():
            return [root]
        return image_files(root)

    def predict(self, path: Path, out_dir: Path) -> list[Path]:
        t0 = time.perf_counter()
        rgb = read_photo(path)
        read_s = time.perf_counter() - t0
        out, times, _ = enhance(self.method, rgb, self.ll.mode, self.net, self.enhancer)
        rel = path.relative_to(self.root) if self.root else Path(path.name)
        suffix = path.suffix.lower() if path.suffix.lower() in LOSSLESS else ".png"
        target = write_photo((out_dir / rel).with_suffix(suffix), out)
        self.rows.append(
            {"image": str(rel), "height": rgb.shape[0], "width": rgb.shape[1], "read": read_s}
            | times
            | {"total": read_s + sum(times.values())}
        )
        return [target]

    def finish(self, out_dir: Path) -> list[Path]:
        return [write_rows(out_dir / TIMING_FILE, self.rows)]
