"""Write a generated folder so that no reader ever sees it half-written.

Parallel sweep jobs (joblib launcher, two runs started at once, the tour beside the report) all
find the embedded dataset missing and start writing it. Written in place, one job reads files
another is still writing or deleting. ``atomic_folder`` lets each writer build a private
sibling folder and publish it with one ``rename``: the first complete folder wins, later ones
are discarded, and a stale incomplete folder (a writer killed before this existed) is moved
aside first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_folder(target: Path, is_complete: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield a private folder to fill; on normal exit it becomes ``target`` in one rename.

    ``is_complete(folder)`` tells a finished folder (its marker file) from a partial one. If
    another process published a complete ``target`` meanwhile, ours is dropped.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        if target.exists() and not is_complete(target):
            stale = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
            with contextlib.suppress(FileNotFoundError):  # a peer may have moved it already
                os.replace(target, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:  # a peer published first (target exists and is not empty)
            if not is_complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
