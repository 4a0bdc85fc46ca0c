"""PatchCamelyon reader for the official HDF5 files (Veeling et al., zenodo 2546921).

Files: ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5``; dataset ``x`` is
(N, 96, 96, 3) uint8, dataset ``y`` is (N, 1, 1, 1) uint8 (1 = tumour in the centre 32x32).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from datamodules.sd_mae.folder import DataFormatError
from datamodules.sd_mae.image_checks import InputReport, to_rgb_array

PCAM_SPLITS = ("train", "valid", "test")
PCAM_SIZE = 96
PCAM_CLASSES = ("normal", "tumor")


def pcam_files(root: str | Path, split: str) -> tuple[Path, Path]:
    """Paths of the x/y files of ``split``; a missing file (or a still-gzipped one) is an error."""
    if split not in PCAM_SPLITS:
        raise ValueError(f"PCam split must be one of {PCAM_SPLITS}, got {split!r}")
    root = Path(root)
    out = []
    for kind in ("x", "y"):
        p = root / f"camelyonpatch_level_2_split_{split}_{kind}.h5"
        if not p.is_file():
            hint = (
                f" (found {p.name}.gz: run `gunzip {p}.gz`)"
                if p.with_name(p.name + ".gz").is_file()
                else " (download: python -m datamodules.sd_mae.download --dataset pcam --out DIR)"
            )
            raise DataFormatError(f"PCam file {str(p)!r} is missing{hint}")
        out.append(p)
    return out[0], out[1]


def open_h5(path: Path) -> h5py.File:
    """Open an HDF5 file; a truncated / garbage / still-compressed file names itself."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DataFormatError(
            f"PCam file {str(path)!r} is not a readable HDF5 file ({err}); it is damaged or "
            "incomplete: delete it and download again (python -m datamodules.sd_mae.download "
            "--dataset pcam --out DIR verifies the checksums)"
        ) from err


def read_item(h: h5py.File, key: str, idx: int | slice, path: Path) -> np.ndarray:
    """``h[key][idx]``; a read error (truncated data past an intact header) names the file."""
    try:
        return np.asarray(h[key][idx])
    except (OSError, ValueError, KeyError) as err:
        raise DataFormatError(
            f"PCam file {str(path)!r}: cannot read {key}[{idx}] ({err}); the file is damaged "
            "or truncated: delete it and download again"
        ) from err


def inspect_pcam(root: str | Path, split: str) -> tuple[int, InputReport]:
    """Check keys, lengths, dtype and shape before training, and read the first and last
    image and every label (a truncated file fails here, naming itself); returns (N, report)."""
    fx, fy = pcam_files(root, split)
    report = InputReport(f"PCam {split}", PCAM_SIZE)
    with open_h5(fx) as hx, open_h5(fy) as hy:
        for f, h, key in ((fx, hx, "x"), (fy, hy, "y")):
            if key not in h:
                raise DataFormatError(
                    f"{str(f)!r} has no dataset {key!r} (found {list(h.keys())}); "
                    "use the official PCam files"
                )
        x, y = hx["x"], hy["y"]
        if len(x) != len(y):
            raise DataFormatError(f"{fx.name} has {len(x)} images but {fy.name} {len(y)} labels")
        if x.ndim not in (3, 4) or x.dtype != np.uint8:
            raise DataFormatError(
                f"{str(fx)!r}: dataset 'x' must be (N, H, W[, C]) uint8, got {x.shape} {x.dtype}"
            )
        chans = 1 if x.ndim == 3 else x.shape[-1]
        if chans not in (1, 3, 4):
            raise DataFormatError(f"{str(fx)!r}: {chans} channels; expected 3 (RGB), 1 or 4")
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[chans]
        n = len(x)
        # the whole file shares one shape: count every image under it
        if x.shape[1:3] != (PCAM_SIZE, PCAM_SIZE):
            report.sizes[(x.shape[2], x.shape[1])] = n
            report.examples.setdefault(f"size {x.shape[2]}x{x.shape[1]}", str(fx))
        if mode != "RGB":
            report.modes[mode] = n
            report.examples.setdefault(f"mode {mode}", str(fx))
        if n:
            read_item(hx, "x", 0, fx)
            read_item(hx, "x", n - 1, fx)  # data past a truncation point is unreadable
        labels = read_item(hy, "y", slice(None), fy).reshape(-1)
        if not set(np.unique(labels).tolist()) <= {0, 1}:
            raise DataFormatError(
                f"{str(fy)!r}: labels must be 0/1, found {np.unique(labels)[:10]}"
            )
    report.log()
    return n, report


class PCamDataset(Dataset):
    """Lazy HDF5 access: each worker opens its own handle (h5py handles do not pickle)."""

    classes = list(PCAM_CLASSES)

    def __init__(
        self,
        root: str | Path,
        split: str,
        transform: Callable | None = None,
        limit: int | None = None,
    ) -> None:
        self.fx, self.fy = pcam_files(root, split)
        n, _ = inspect_pcam(root, split)
        self.n = min(n, limit) if limit else n
        self.transform = transform
        self._hx = self._hy = None

    def __len__(self) -> int:
        return self.n

    def targets(self) -> np.ndarray:
        with open_h5(self.fy) as h:
            return read_item(h, "y", slice(0, self.n), self.fy).reshape(-1).astype(int)

    def __getitem__(self, idx: int):
        if self._hx is None:
            self._hx = open_h5(self.fx)
            self._hy = open_h5(self.fy)
        arr = to_rgb_array(read_item(self._hx, "x", idx, self.fx))
        label = int(read_item(self._hy, "y", idx, self.fy).reshape(-1)[0])
        img = Image.fromarray(arr)
        if img.size != (PCAM_SIZE, PCAM_SIZE):
            img = img.resize((PCAM_SIZE, PCAM_SIZE), Image.BICUBIC)
        if self.transform is not None:
            img = self.transform(img)
        return img, label

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_hx"] = state["_hy"] = None
        return state
