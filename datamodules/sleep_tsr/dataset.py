"""Sequences of L consecutive epochs that never cross recordings; per-bin normalisation."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def bin_statistics(features: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of every frequency bin over all epochs and frames (float64 sums)."""
    total = sum(f.shape[0] * f.shape[1] for f in features)
    s1 = sum(f.sum((0, 1), dtype=np.float64) for f in features)
    s2 = sum(np.square(f, dtype=np.float64).sum((0, 1)) for f in features)
    mean = s1 / total
    std = np.sqrt(np.maximum(s2 / total - mean**2, 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


class SequenceDataset(Dataset):
    """Item: ``(x (L, T, F), y (L,), recording index, start epoch)``.

    ``stride`` 1 gives every window (training, and test-time aggregation over all windows that
    cover an epoch); windows never span two recordings, and a recording shorter than L is skipped.
    """

    def __init__(
        self,
        features: list[np.ndarray],
        labels: list[np.ndarray],
        seq_len: int = 20,
        stride: int = 1,
    ) -> None:
        self.features = [torch.from_numpy(np.ascontiguousarray(f)) for f in features]
        self.labels = [torch.from_numpy(np.asarray(y, dtype=np.int64)) for y in labels]
        self.seq_len = seq_len
        index = []
        for r, y in enumerate(labels):
            n = len(y)
            if n < seq_len:
                continue
            starts = list(range(0, n - seq_len + 1, stride))
            if starts[-1] != n - seq_len:
                starts.append(n - seq_len)  # the tail is always covered
            index.extend((r, s) for s in starts)
        self.index = np.asarray(index, dtype=np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        r, s = (int(v) for v in self.index[i])
        return self.features[r][s : s + self.seq_len], self.labels[r][s : s + self.seq_len], r, s
