"""Reading a folder of photographs (COCO / ExDark layout: JPEG or PNG files, any nesting).

A file that cannot be used is reported (logged with its reason) and skipped, the rest load:
unreadable, grayscale, RGBA / other channel counts, 16-bit, smaller than ``min_size`` on a
side, or constant (a flat image gives the GP a singular covariance).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


@dataclass
class FolderImage:
    """One usable photograph: its path and RGB pixels (uint8, H x W x 3)."""

    path: Path
    rgb: np.ndarray

    @property
    def name(self) -> str:
        return self.path.stem


def check_image(img: np.ndarray | None, min_size: int) -> str | None:
    """Why ``img`` (as cv2.IMREAD_UNCHANGED returns it) is unusable, or None when it is fine."""
    if img is None:
        return "unreadable (not an image or corrupt)"
    if img.dtype != np.uint8:
        return f"{img.dtype} pixels (16-bit or float); convert it to 8-bit RGB"
    if img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        return "grayscale; the pipeline needs 3-channel RGB"
    if img.ndim != 3 or img.shape[2] != 3:
        channels = img.shape[2] if img.ndim == 3 else img.ndim
        return f"{channels} channels (RGBA?); save it as 3-channel RGB"
    if min(img.shape[:2]) < min_size:
        return f"{img.shape[1]}x{img.shape[0]} pixels, smaller than {min_size} on a side"
    if int(img.max()) == int(img.min()):
        return "constant image (every pixel equal)"
    return None


def read_folder(
    folder: str | Path, min_size: int = 32
) -> tuple[list[FolderImage], list[tuple[Path, str]]]:
    """All usable images under ``folder`` (sorted by path) and the (path, reason) of skipped ones."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    good: list[FolderImage] = []
    bad: list[tuple[Path, str]] = []
    for path in files:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        reason = check_image(img, min_size)
        if reason is not None:
            log.warning("skipping %s: %s", path, reason)
            bad.append((path, reason))
            continue
        good.append(FolderImage(path, cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
    return good, bad


def resize_rgb(rgb: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 RGB -> float [0, 1], resized to size x size (area interpolation) unless None."""
    if size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb.astype(np.float64) / 255.0
