"""Fried phenotype score -> frailty class (Amjad et al., Sec. 3.2; Fried et al., 2001)."""

from __future__ import annotations

import numpy as np

CLASS_NAMES = ("robust", "pre_frail", "frail")


def fried_to_label(score: np.ndarray | float) -> np.ndarray:
    """0 -> robust (0), 1-2 -> pre-frail (1), 3-5 -> frail (2).

    Scores must be whole numbers in [0, 5]; anything else raises rather than being binned
    into a wrong class (a 2.5 or a 7 means a wrong column or a data-entry error).
    """
    score = np.asarray(score, dtype=float)
    bad = ~np.isfinite(score) | (score < 0) | (score > 5) | (np.round(score) != score)
    if np.any(bad):
        raise ValueError(f"Fried scores must be integers 0-5, got {score[bad][:5].tolist()}")
    return np.where(score == 0, 0, np.where(score <= 2, 1, 2)).astype(np.int64)
