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


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """PIL image of any mode -> RGB (RGBA/LA lose alpha, L/I/P are converted)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA"):
        return img.convert(img.mode[:-1]).convert("RGB")
    return img.convert("RGB")


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
            what = "alpha dropped" if mode in ("RGBA", "LA") else "converted to RGB"
            out.append(
                f"{self.source}: {count} image(s) have mode {mode} ({what}). "
                f"Example: {self.examples[f'mode {mode}']}"
            )
        return out

    def log(self) -> None:
        for msg in self.messages():
            log.warning(msg)
