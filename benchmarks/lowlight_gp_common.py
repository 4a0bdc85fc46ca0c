"""Shared helpers of the lowlight_gp benchmarks: embedded photographs, references, timing."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from datamodules.lowlight_gp.embedded import write_embedded
from datamodules.lowlight_gp.folder import read_folder, resize_rgb
from models.lowlight_gp.enhancer import to_planes
from models.lowlight_gp.reference_cnn import ReferenceCNN


def photos(
    size: int, names: list[str], root: str = "data/embedded/lowlight_gp"
) -> list[tuple[str, np.ndarray]]:
    """Embedded photographs (written once) resized to size x size, float RGB in [0, 1]."""
    images, _ = read_folder(Path(write_embedded(root)) / "bright")
    by_name = {im.name: im for im in images}
    return [(n, resize_rgb(by_name[n].rgb, size)) for n in names]


def crop_photos(size: int, names: list[str], eval_size: int = 256) -> list[tuple[str, np.ndarray]]:
    """Central size x size crops of the eval_size x eval_size photographs."""
    off = (eval_size - size) // 2
    return [(n, im[off : off + size, off : off + size]) for n, im in photos(eval_size, names)]


def load_cnn(path: str | None, channels: int) -> ReferenceCNN | None:
    if not path:
        return None
    net = ReferenceCNN(channels)
    net.load_state_dict(torch.load(path, weights_only=True))
    return net.eval()


@torch.no_grad()
def reference(
    net: ReferenceCNN | None, dark: np.ndarray, bright: np.ndarray, mode: str
) -> np.ndarray:
    """Reference planes: the trained CNN's output, or the bright original (an oracle CNN)."""
    if net is None:
        return to_planes(bright, mode)
    return net(torch.from_numpy(to_planes(dark, mode)).float()[None])[0].double().numpy()


class Clock:
    """Wall and CPU seconds of a block (CPU time is robust on a shared machine)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))
