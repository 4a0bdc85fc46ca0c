"""Reading a folder of photographs (COCO / ExDark layout: JPEG or PNG files, any nesting).

Decoding is strict: PIL's ``load()`` raises on a truncated file (OpenCV decodes the missing part
as grey and says nothing), and a JPEG is also decoded by libjpeg-turbo in strict mode
(simplejpeg), so its "Corrupt JPEG data" warnings (a flipped bit that breaks the Huffman
stream, garbage in the stream) make the file a skip. A flip that leaves the stream decodable
changes one block's coefficients and cannot be told apart from a real photo by any decoder. EXIF orientation is applied (phone photos load upright).
Grey, palette, RGBA/LA (alpha dropped), CMYK and 16-bit images are converted to 8-bit RGB and
the conversions are counted and named in one log warning. Unusable files (unreadable,
truncated, corrupt, float pixels, smaller than ``min_size``, constant) are skipped, counted and
named; a folder whose image files are all unusable is a :class:`DataError`.

:func:`read_folder` streams: each image is decoded, checked and resized to ``size`` before the
next is read, so only the resized 8-bit copies are held (a 5 000-image folder at 256 x 256 is
~1 GB, not the ~8 GB of full-resolution + float64 copies).
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_EXIF_ORIENTATION = 0x0112


@dataclass
class FolderImage:
    """One usable photograph: its path and RGB pixels (uint8, H x W x 3)."""

    path: Path
    rgb: np.ndarray

    @property
    def name(self) -> str:
        return self.path.stem


class SkipImage(Exception):
    """Why a file cannot be used (the message is the reason that is logged)."""


def _check_jpeg_stream(raw: bytes, pil_mode: str) -> None:
    """Decode the JPEG again with libjpeg-turbo in strict mode (simplejpeg), which raises on
    the "Corrupt JPEG data" warnings that PIL and OpenCV only print or ignore."""
    colorspace = {"L": "gray", "CMYK": "cmyk"}.get(pil_mode, "rgb")
    try:
        simplejpeg.decode_jpeg(raw, colorspace=colorspace, strict=True)
    except ValueError as err:
        raise SkipImage(f"corrupt JPEG data (libjpeg: {err})") from err


def _to_rgb8(im: Image.Image) -> tuple[np.ndarray, str | None]:
    """8-bit RGB pixels of a decoded image and the conversion made (None when already RGB)."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im), None
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im)
        if arr.dtype.kind == "i" and (arr.min() < 0 or arr.max() > 65535):
            raise SkipImage(f"32-bit integer pixels ({mode}); convert it to 8-bit RGB")
        arr8 = np.round(arr.astype(np.float64) / 257.0).astype(np.uint8)
        return np.repeat(arr8[..., None], 3, 2), f"16-bit grey ({mode}) -> 8-bit RGB"
    if mode == "F":
        raise SkipImage("float pixels (mode F); convert it to 8-bit RGB")
    note = {
        "L": "grey -> RGB",
        "1": "1-bit -> RGB",
        "P": "palette -> RGB",
        "RGBA": "RGBA -> RGB (alpha dropped)",
        "LA": "grey+alpha -> RGB (alpha dropped)",
        "PA": "palette+alpha -> RGB (alpha dropped)",
        "CMYK": "CMYK -> RGB",
        "YCbCr": "YCbCr -> RGB",
    }.get(mode, f"{mode} -> RGB")
    if mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA").convert("RGB")
    else:
        im = im.convert("RGB")
    return np.asarray(im), note


def load_rgb(path: Path, min_size: int = 32) -> tuple[np.ndarray, list[str]]:
    """Decode ``path`` strictly into (uint8 RGB (H, W, 3), conversions made); raises
    :class:`SkipImage` with the reason when the file cannot be used."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SkipImage(f"unreadable ({err.strerror})") from err
    try:
        with Image.open(io.BytesIO(raw)) as im:
            rawmode = str(im.tile[0][3]) if im.tile else ""
            im.load()  # raises on truncation (LOAD_TRUNCATED_IMAGES is off)
            fmt, mode = im.format, im.mode
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
            upright = ImageOps.exif_transpose(im)
            rgb, note = _to_rgb8(upright)
    except SkipImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise SkipImage(f"not an image or unsupported ({type(err).__name__})") from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise SkipImage(f"truncated or corrupt ({err})") from err
    if fmt in ("JPEG", "MPO"):
        _check_jpeg_stream(raw, mode)
    notes = [note] if note else []
    if ";16" in rawmode and not note:  # PIL keeps the high byte of a 48-bit RGB PNG
        notes.append("16-bit RGB -> 8-bit RGB")
    if orientation not in (1, None):
        notes.append(f"EXIF orientation {orientation} applied")
    if min(rgb.shape[:2]) < min_size:
        raise SkipImage(f"{rgb.shape[1]}x{rgb.shape[0]} pixels, smaller than {min_size} on a side")
    if int(rgb.max()) == int(rgb.min()):
        raise SkipImage("constant image (every pixel equal)")
    return np.ascontiguousarray(rgb), notes


def image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (any nesting), sorted by path."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def iter_folder(
    folder: str | Path,
    min_size: int = 32,
    size: int | None = None,
    skipped: list[tuple[Path, str]] | None = None,
    converted: list[tuple[Path, str]] | None = None,
) -> Iterator[FolderImage]:
    """Usable images one at a time (resized to size x size when given, uint8); skipped files
    and conversions are appended to the given lists."""
    for path in image_files(folder):
        try:
            rgb, notes = load_rgb(path, min_size)
        except SkipImage as why:
            log.warning("skipping %s: %s", path, why)
            if skipped is not None:
                skipped.append((path, str(why)))
            continue
        if converted is not None:
            converted += [(path, n) for n in notes]
        if size:
            rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        yield FolderImage(path, rgb)


def read_folder(
    folder: str | Path, min_size: int = 32, size: int | None = None
) -> tuple[list[FolderImage], list[tuple[Path, str]]]:
    """All usable images under ``folder`` (sorted by path; resized to ``size`` while streaming
    when given) and the (path, reason) of the skipped files."""
    bad: list[tuple[Path, str]] = []
    converted: list[tuple[Path, str]] = []
    good = list(iter_folder(folder, min_size, size, bad, converted))
    if converted:
        kinds = Counter(note for _, note in converted)
        names = ", ".join(f"{p.name} ({n})" for p, n in converted[:10])
        more = f" and {len(converted) - 10} more" if len(converted) > 10 else ""
        log.warning(
            "%s: %d conversions (%s): %s%s",
            folder,
            len(converted),
            ", ".join(f"{k}: {v}" for k, v in kinds.items()),
            names,
            more,
        )
    if bad and not good:
        reasons = Counter(r.split(" (")[0] for _, r in bad)
        raise DataError(
            f"{folder}: none of its {len(bad)} image files is usable "
            f"({', '.join(f'{k}: {v}' for k, v in reasons.items())}; first: {bad[0][0].name})"
        )
    return good, bad


def resize_rgb(rgb: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 RGB -> float [0, 1], resized to size x size (area interpolation) unless None."""
    if size and rgb.shape[:2] != (size, size):
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    return rgb.astype(np.float64) / 255.0
