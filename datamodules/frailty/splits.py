"""Train / validation / test assignment: by window (the paper) or by participant (default).

``split="window"`` shuffles all windows and cuts 75 / 12.5 / 12.5 % as the paper did. With
75 % overlap and one label per participant, near-copies of every test window sit in training,
so the score mostly measures recognising the participant. ``split="subject"`` keeps each
participant's windows in one split (stratified by frailty class so every split sees all
classes) - the estimate of how the model does on a new person.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    return n - n_val - n_test, n_val, n_test


def split_windows(n_windows: int, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """Split id (0 train, 1 val, 2 test) per window, uniformly shuffled."""
    n_train, n_val, _ = _counts(n_windows, fractions)
    order = np.random.default_rng(seed).permutation(n_windows)
    assign = np.full(n_windows, 2, dtype=np.int8)
    assign[order[:n_train]] = 0
    assign[order[n_train : n_train + n_val]] = 1
    return assign


def split_subjects(
    labels: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> np.ndarray:
    """Split id per participant, stratified by class; each class must reach every split."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    assign = np.empty(len(labels), dtype=np.int8)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_train, n_val, n_test = _counts(len(members), fractions)
        if len(members) >= 3:  # at least one participant of this class per split
            n_val, n_test = max(n_val, 1), max(n_test, 1)
            n_train = len(members) - n_val - n_test
        if min(n_train, n_val, n_test) < 1:
            raise ValueError(
                f"split=subject needs >= 3 participants of class {int(cls)} to put one in each "
                f"of train/val/test, got {len(members)}; add participants or use split=window"
            )
        assign[members[:n_train]] = 0
        assign[members[n_train : n_train + n_val]] = 1
        assign[members[n_train + n_val :]] = 2
    return assign
