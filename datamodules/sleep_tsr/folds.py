"""Leave-one-subject-out folds with seeded validation subjects."""

from __future__ import annotations

import numpy as np


def loso_split(
    subjects: list[int], test: int, n_val: int = 4, seed: int = 0
) -> tuple[list[int], list[int], list[int]]:
    """``(train, val, test)`` subject ids: subject id ``test`` is the test set, ``n_val`` of the
    others drawn with ``seed`` (and the test id) validate, the rest train.

    The fold is the subject id, not a position in the list, so an unusable night of another
    subject never moves a fold onto a different person."""
    subjects = sorted(subjects)
    if test not in subjects:
        raise ValueError(f"test subject {test} is not among the subjects {subjects}")
    if len(subjects) < n_val + 2:
        raise ValueError(f"{len(subjects)} subjects cannot give 1 test + {n_val} val + >=1 train")
    others = [s for s in subjects if s != test]
    rng = np.random.default_rng([seed, test])
    val = sorted(int(s) for s in rng.choice(others, size=n_val, replace=False))
    train = [s for s in others if s not in val]
    return train, val, [test]
