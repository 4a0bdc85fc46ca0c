"""Spliced-frame dataset served a whole batch at a time (one vectorised gather per batch)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from core.sampling import seeded_train_loader

from .corpus import FrameCorpus
from .features import splice_indices

__all__ = ["SplicedFrames", "frame_loader"]


class SplicedFrames(Dataset):
    """Frames ``frames`` of ``corpus`` with ``left`` + 1 + ``right`` context -> (B, 26 * 40) inputs."""

    def __init__(
        self, corpus: FrameCorpus, frames: np.ndarray, left: int = 20, right: int = 5
    ) -> None:
        self.feats = torch.from_numpy(corpus.feats)
        self.labels = torch.from_numpy(corpus.labels)
        self.frames = np.asarray(frames, dtype=np.int64)
        utt_of = np.repeat(np.arange(len(corpus.starts)), corpus.ends - corpus.starts)
        self.starts = corpus.starts[utt_of[self.frames]]
        self.ends = corpus.ends[utt_of[self.frames]]
        self.left, self.right = left, right

    @property
    def input_dim(self) -> int:
        return (self.left + 1 + self.right) * self.feats.shape[1]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, items) -> tuple[torch.Tensor, torch.Tensor]:
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        rows = splice_indices(
            self.frames[items], self.starts[items], self.ends[items], self.left, self.right
        )
        x = self.feats[torch.from_numpy(rows)].reshape(len(items), -1)
        return x, self.labels[torch.from_numpy(self.frames[items])]


def frame_loader(
    ds: SplicedFrames, batch_size: int, shuffle: bool, num_workers: int = 0, seed: int = 0
) -> DataLoader:
    if shuffle:  # order from (seed, epoch), resumable mid-epoch (docs/conventions.md)
        return seeded_train_loader(
            ds,
            batch_size,
            seed,
            batched_dataset=True,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )
    sampler = SequentialSampler(ds)
    return DataLoader(
        ds,
        sampler=BatchSampler(sampler, batch_size, drop_last=False),
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
