"""On-disk cache of preprocessed nights, keyed by the preprocessing settings and the source files.

A 20-fold x 5-repeat sweep would otherwise re-read and re-transform every EDF 100 times; with
the cache each night is preprocessed once per setting. An entry is invalidated when the PSG or
hypnogram changes (size / mtime), and written atomically so a killed job never leaves a
half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from datamodules.sleep_tsr.records import RecordingFiles

CACHE_VERSION = 1


@dataclass(frozen=True)
class Preprocessing:
    """Every setting that changes the cached features."""

    channel: str = "EEG Fpz-Cz"
    sfreq: float = 100.0
    crop: str = "sleep_30min"
    crop_minutes: float = 30.0
    bandpass: tuple[float, float] | None = None
    window_s: float = 2.0
    overlap: float = 0.5
    n_fft: int = 256

    def key(self) -> str:
        blob = json.dumps(asdict(self) | {"version": CACHE_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _fingerprint(files: RecordingFiles) -> dict[str, int]:
    out = {}
    for tag, path in (("psg", files.psg), ("hyp", files.hypnogram)):
        st = path.stat()
        out[f"{tag}_size"], out[f"{tag}_mtime"] = st.st_size, st.st_mtime_ns
    return out


class FeatureCache:
    """``<root>/<settings key>/<recording>.npz`` holding features, labels, subject, night."""

    def __init__(self, root: str | Path, prep: Preprocessing) -> None:
        self.prep = prep
        self.dir = Path(root) / prep.key()

    def path(self, files: RecordingFiles) -> Path:
        return self.dir / f"{files.name}.npz"

    def load(self, files: RecordingFiles) -> dict[str, np.ndarray] | None:
        """The cached entry, or None when absent or stale."""
        path = self.path(files)
        if not path.is_file():
            return None
        try:
            with np.load(path) as z:
                entry = {k: z[k] for k in z.files}
        except Exception:
            return None
        stamp = json.loads(str(entry.get("fingerprint", "{}")))
        return entry if stamp == _fingerprint(files) else None

    def save(self, files: RecordingFiles, features: np.ndarray, labels: np.ndarray) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "settings.json").write_text(json.dumps(asdict(self.prep), indent=1))
        path = self.path(files)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(
            tmp,
            features=features,
            labels=labels,
            subject=np.int64(files.subject),
            night=np.int64(files.night),
            fingerprint=np.array(json.dumps(_fingerprint(files))),
        )
        tmp.replace(path)
        return path
