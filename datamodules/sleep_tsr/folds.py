"""Leave-one-subject-out folds with seeded validation subjects."""

from __future__ import annotations

import numpy as np


def loso_split(
    subjects: list[int], fold: int, n_val: int = 4, seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """``(train, val, test)`` subject ids: subject ``fold`` (in sorted order) is the test set,
    ``n_val`` of the others drawn with ``seed`` (and the fold) validate, the rest train."""
    subjects = sorted(subjects)
    if not 0 <= fold < len(subjects):
        raise ValueError(f"fold {fold} out of range for {len(subjects)} subjects")
    if len(subjects) < n_val + 2:
        raise ValueError(f"{len(subjects)} subjects cannot give 1 test + {n_val} val + >=1 train")
    test = subjects[fold]
    others = [s for s in subjects if s != test]
    rng = np.random.default_rng([seed, fold])
    val = sorted(int(s) for s in rng.choice(others, size=n_val, replace=False))
    train = [s for s in others if s not in val]
    return train, val, [test]
