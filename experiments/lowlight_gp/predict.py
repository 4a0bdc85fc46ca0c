"""``pipeline=predict`` for lowlight_gp: enhance a folder of photographs with a trained run.

Every image under ``predict.input`` (any depth) is read with EXIF orientation applied and
converted to RGB, enhanced with the run's method and settings (reference CNN from the
checkpoint, k-means GP fitted per image as the paper does), and written under the same relative
path and name: PNG, or the input's own format when that is lossless (PNG, TIFF, BMP). A damaged
file is skipped and named. ``timing.csv`` holds the seconds per stage of every image.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from core.errors import DataError
from experiments.lowlight_gp.pipeline import GP_METHODS, _enhancer, enhance, resolve_settings
from experiments.runner.predict import TrainedModel

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
LOSSLESS = (".png", ".tif", ".tiff", ".bmp")
TIMING_FILE = "timing.csv"


def read_photo(path: Path) -> np.ndarray:
    """RGB float64 in [0, 1], upright (EXIF orientation applied); DataError on a damaged file."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.load()  # decodes every byte: a truncated file raises here, not later
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                scale = 65535.0 if arr.max() > 255 else 255.0
                return np.repeat((arr / scale)[..., None], 3, axis=2).clip(0, 1)
            rgb = im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err
    return np.asarray(rgb, dtype=np.float64) / 255.0


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
        return sorted(
            (p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=str,
        )

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
        path = out_dir / TIMING_FILE
        keys = list(dict.fromkeys(k for row in self.rows for k in row))
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        return [path]
