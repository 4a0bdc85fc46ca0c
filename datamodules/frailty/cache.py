"""On-disk cache of preprocessed windows, keyed by every setting that changes them.

The key hashes the schema, the preprocessing and split settings and a fingerprint (path,
size, mtime) of every cohort file, so editing a CSV or a setting rebuilds, and nothing else
does. Arrays are ``.npy`` files opened memory-mapped, so a full cohort never has to fit in RAM
twice. A folder is complete only once ``meta.json`` exists (written last, then renamed in).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

META = "meta.json"


def fingerprint(paths: list[Path]) -> list[tuple[str, int, int]]:
    """(name, size, mtime_ns) per existing file, sorted: cheap change detection."""
    out = []
    for p in sorted(paths):
        if p.is_file():
            st = p.stat()
            out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def cache_key(settings: dict[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load(folder: Path) -> tuple[dict[str, np.ndarray], dict] | None:
    """Memory-mapped arrays + metadata, or ``None`` when the folder is absent or incomplete."""
    meta_path = folder / META
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]}
    return arrays, meta


def save(folder: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write into a temporary sibling, then rename: a crash never leaves a half cache."""
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, arr in arrays.items():
        np.save(tmp / f"{name}.npy", arr)
    meta = {**meta, "arrays": sorted(arrays)}
    (tmp / META).write_text(json.dumps(meta, indent=1, default=str))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
