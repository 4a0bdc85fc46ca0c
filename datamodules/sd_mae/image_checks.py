"""Bring any tile to RGB at the expected size, and summarise what had to be fixed."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


def to_rgb_array(img: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3): grey is replicated and
    the alpha channel of RGBA dropped (H&E tiles carry no transparency)."""
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W[, 1|3|4]) image, got shape {img.shape}")
    if img.shape[-1] == 1:
        return np.repeat(img, 3, axis=-1)
    return img[..., :3]


# single-channel modes with more than 8 bits per pixel: PIL's convert("RGB") clips them at 255,
# which turns a 16-bit tile into an all-white one; they are scaled by their full range instead
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """PIL image of any mode -> 8-bit RGB (RGBA/LA lose alpha, L/P are converted, 16-bit and
    32-bit single-channel images are scaled from 0..65535 to 0..255, not clipped)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA"):
        return img.convert(img.mode[:-1]).convert("RGB")
    if img.mode in WIDE_MODES:
        return Image.fromarray(to_rgb_array(wide_to_uint8(np.asarray(img))))
    return img.convert("RGB")


def wide_to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit (or 32-bit int/float holding 16-bit values) -> uint8 by the 16-bit range.

    Float images already in [0, 1] are scaled by 255. Values are never clipped silently: a
    32-bit image with values above 65535 is an error (its range is unknown).
    """
    a = arr.astype(np.float64)
    if arr.dtype.kind == "f" and a.size and a.max() <= 1.0:
        return np.round(a * 255).clip(0, 255).astype(np.uint8)
    if a.size and (a.max() > 65535 or a.min() < 0):
        raise ValueError(
            f"{arr.dtype} image with values in [{a.min():g}, {a.max():g}]: not a 16-bit range"
        )
    return np.round(a / 257.0).astype(np.uint8)


@dataclass
class InputReport:
    """Counts of tiles that differ from the expected format, with one example each."""

    source: str
    expected_size: int | None
    sizes: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, size: tuple[int, int], mode: str) -> None:
        if self.expected_size and size != (self.expected_size, self.expected_size):
            self.sizes[size] += 1
            self.examples.setdefault(f"size {size[0]}x{size[1]}", name)
        if mode != "RGB":
            self.modes[mode] += 1
            self.examples.setdefault(f"mode {mode}", name)

    def messages(self) -> list[str]:
        out = []
        n = sum(self.sizes.values())
        if n:
            e = self.expected_size
            shapes = ", ".join(f"{w}x{h}" for (w, h) in list(self.sizes)[:5])
            out.append(
                f"{self.source}: {n} image(s) are not {e}x{e} (found {shapes}); they are resized "
                f"to {e}x{e}. Example: {next(v for k, v in self.examples.items() if k.startswith('size'))}"
            )
        for mode, count in self.modes.items():
            what = (
                "alpha dropped"
                if mode in ("RGBA", "LA")
                else "scaled from 16 bits to 8 bits per channel"
                if mode in WIDE_MODES
                else "converted to RGB"
            )
            out.append(
                f"{self.source}: {count} image(s) have mode {mode} ({what}). "
                f"Example: {self.examples[f'mode {mode}']}"
            )
        return out

    def log(self) -> None:
        for msg in self.messages():
            log.warning(msg)
