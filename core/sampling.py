"""Training data order that depends only on (seed, epoch), so a resumed run replays it exactly."""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSeededRandomSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``seed`` and the epoch number.

    Lightning calls ``set_epoch`` before every training epoch, also the first one after a resume
    (when ``on_train_epoch_start`` is skipped), so the order never depends on the global RNG.
    """

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        self.data_source = data_source
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=g).tolist()


def seeded_train_loader(dataset: Dataset, batch_size: int, seed: int, **kwargs: Any) -> DataLoader:
    """A shuffling training DataLoader whose order is a function of (seed, epoch)."""
    return DataLoader(
        dataset, batch_size=batch_size, sampler=EpochSeededRandomSampler(dataset, seed), **kwargs
    )
