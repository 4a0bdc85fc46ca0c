"""Seeded hold-out splits of a class-folder dataset, optionally grouped (e.g. by slide).

Tiles cut from one slide share stain, scanner and patient: if some land in training and some
in the test split, the test accuracy measures recognising the slide. ``group_regex`` pulls a
group id (the slide) out of each file name so a whole group goes to one side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from core.errors import DataError


def compile_group_regex(pattern: str) -> re.Pattern:
    """Compile ``pattern``; it needs one capture group (or a group named ``group``)."""
    rx = re.compile(pattern)
    if rx.groups < 1:
        raise ValueError(f"group_regex {pattern!r} has no capture group: put the id in (...)")
    return rx


def groups_from_names(paths: Sequence[Path], pattern: str) -> np.ndarray:
    """Group id of each file from its name; a name the regex does not match is an error."""
    rx = compile_group_regex(pattern)
    out = []
    for p in paths:
        m = rx.search(Path(p).name)
        if m is None:
            raise DataError(
                f"file name {str(p)!r} does not match datamodule.group_regex {pattern!r}: "
                "every file needs a group (slide) id; fix the regex or rename the file"
            )
        out.append(m.group("group") if "group" in rx.groupindex else m.group(1))
    return np.array(out)


def holdout(
    labels: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) sorted indices; stratified by label, or whole groups when given.

    With groups, ``fraction`` is the share of *groups* held out (sklearn's GroupShuffleSplit).
    """
    idx = np.arange(len(labels))
    if groups is None:
        keep, out = train_test_split(idx, test_size=fraction, stratify=labels, random_state=seed)
    else:
        if len(np.unique(groups)) < 2:
            raise DataError(
                f"only one group ({groups[0]!r}) found by group_regex: cannot hold out a "
                "fraction of groups"
            )
        gss = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        keep, out = next(gss.split(idx, labels, groups))
    return np.sort(keep), np.sort(out)
