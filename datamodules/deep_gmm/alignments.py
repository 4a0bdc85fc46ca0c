"""Reader for frame-level alignment text files: ``utt_id label label ...``, one label per 10 ms.

This is the format of the public LibriSpeech-100h forced-aligned phone labels
(``converted_aligned_phones.txt``, 41 classes) and of Kaldi ``ali-to-pdf``/``ali-to-phones
--per-frame`` text output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.errors import DataError

__all__ = ["read_alignments", "write_alignments"]


def read_alignments(path: str | Path) -> dict[str, np.ndarray]:
    """utt_id -> int64 label per frame. Blank lines and ``#`` comments are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"alignment file {path} not found: it must hold lines `utt_id label label ...`"
        )
    out: dict[str, np.ndarray] = {}
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            utt, labels = parts[0], parts[1:]
            if not labels:
                raise DataError(f"{path}:{lineno}: utterance {utt!r} has no labels")
            if utt in out:
                raise DataError(f"{path}:{lineno}: utterance {utt!r} appears twice")
            try:
                out[utt] = np.asarray([int(v) for v in labels], dtype=np.int64)
            except ValueError as err:
                raise DataError(
                    f"{path}:{lineno}: utterance {utt!r} has a non-integer label ({err}); "
                    "labels must be integer state ids"
                ) from None
    if not out:
        raise DataError(f"alignment file {path} holds no utterances")
    return out


def write_alignments(path: str | Path, alignments: dict[str, np.ndarray]) -> None:
    """Write ``utt_id l1 l2 ...`` lines (atomically: a partial file is never left behind)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as fh:
        for utt, labels in alignments.items():
            fh.write(utt + " " + " ".join(str(int(v)) for v in labels) + "\n")
    tmp.replace(path)
