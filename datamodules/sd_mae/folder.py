"""Class-folder reader (NCT-CRC-HE-100K, CRC-VAL-HE-7K, ImageNet-100, the embedded tiles)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from core.errors import DataError
from datamodules.sd_mae.image_checks import InputReport, pil_to_rgb

IMG_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".webp")


class DataFormatError(DataError):
    """The files on disk do not have the published layout; the message says how to fix it."""


def scan_class_folders(
    root: str | Path, exclude: Sequence[str] = (), classes: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[Path, int]]]:
    """``root/<class>/<image>`` -> (sorted class names, [(path, label)]).

    ``exclude`` drops classes (NCT's ``BACK``); ``classes`` fixes the label order (test split
    must use the train split's classes). An empty class folder is an error, not a silent gap.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"class-folder root {str(root)!r} does not exist")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in exclude)
    if not found:
        raise DataFormatError(
            f"{str(root)!r} holds no class sub-folders; expected {root}/<class_name>/<image files>"
        )
    if classes is None:
        classes = found
    else:
        missing = sorted(set(classes) - set(found))
        extra = sorted(set(found) - set(classes))
        if missing or extra:
            raise DataFormatError(
                f"{str(root)!r} has classes {found}, expected {list(classes)} "
                f"(missing {missing}, unexpected {extra}); train and test splits must share classes"
            )
    samples: list[tuple[Path, int]] = []
    for label, name in enumerate(classes):
        files = sorted(
            p for p in (root / name).iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
        )
        if not files:
            raise DataFormatError(
                f"class folder {str(root / name)!r} is empty (no {'/'.join(IMG_EXTENSIONS)} files); "
                f"add its images or remove the folder"
            )
        samples += [(f, label) for f in files]
    return list(classes), samples


def decode(path: Path) -> Image.Image:
    """Open and fully decode one image as 8-bit RGB; any failure names the file.

    Decoding (not just the header) is what catches a truncated PNG/TIFF whose header is
    intact: PIL reads such a header happily and fails only when the pixels are needed.
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            img = pil_to_rgb(im)
            img.load()
    except Exception as err:
        raise DataFormatError(
            f"cannot decode image {str(path)!r}: {err}; delete or replace it"
        ) from err
    img.info["source_mode"] = mode
    return img


def check_images(
    samples: Sequence[tuple[Path, int]],
    source: str,
    expected_size: int | None,
    decode_pixels: bool = True,
) -> InputReport:
    """Decode every image before training (``decode_pixels=False``: headers only, and a bad
    file is then reported with its path when first read). Size/mode issues are counted and
    reported once instead of surfacing mid-epoch."""
    report = InputReport(source, expected_size)
    for path, _ in tqdm(
        samples, desc=f"checking {source}", mininterval=5, disable=len(samples) < 5000
    ):
        if decode_pixels:
            img = decode(path)
            report.add(str(path), img.size, img.info["source_mode"])
            continue
        try:
            with Image.open(path) as im:
                report.add(str(path), im.size, im.mode)
        except Exception as err:
            raise DataFormatError(
                f"cannot read image {str(path)!r}: {err}; delete or replace it"
            ) from err
    report.log()
    return report


class ClassFolderDataset(Dataset):
    """Images + integer labels; tiles are made RGB and resized to ``native_size`` when set."""

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        classes: Sequence[str],
        native_size: int | None = None,
        transform: Callable | None = None,
    ) -> None:
        self.samples = list(samples)
        self.classes = list(classes)
        self.native_size = native_size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def targets(self) -> np.ndarray:
        return np.array([y for _, y in self.samples])

    def __getitem__(self, idx: int):
        path, label = self.samples[idx]
        img = decode(path)  # a damaged file raises DataFormatError naming it
        if self.native_size and img.size != (self.native_size, self.native_size):
            img = img.resize((self.native_size, self.native_size), Image.BICUBIC)
        if self.transform is not None:
            img = self.transform(img)
        return img, label
