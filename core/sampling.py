"""Training data order that depends only on (seed, epoch), so a resumed run replays it exactly.

Every datamodule builds its training loader with :func:`seeded_train_loader`. The order of an
epoch is a permutation drawn from ``(seed, epoch)`` alone, never from the global RNG, so
loggers, progress bars or anything else that draws random numbers cannot change it. The
loader is *resumable*: a run resumed from a checkpoint written in the middle of an epoch
skips the indices of the batches already trained (no data is read for them) and continues
with the very next batch; the runner's ``ExactResume`` callback tells it how many.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, SequentialSampler

log = logging.getLogger(__name__)


class EpochSeededRandomSampler(Sampler[int]):
    """A random permutation per epoch drawn from ``seed`` and the epoch number.

    Lightning calls ``set_epoch`` before every training epoch, also the first one after a resume
    (when ``on_train_epoch_start`` is skipped), so the order never depends on the global RNG.
    ``skip(n)`` drops the first ``n`` indices of the next iteration only (mid-epoch resume).
    """

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        self.data_source = data_source
        self.seed = int(seed)
        self.epoch = 0
        self._skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def skip(self, n: int) -> None:
        """Start the next iteration ``n`` indices into the epoch's permutation."""
        self._skip = int(n)

    def __len__(self) -> int:
        return len(self.data_source)

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=g)[skip:].tolist()


class SequentialOrder(EpochSeededRandomSampler):
    """The dataset's own order in every epoch: what Lightning's ``overfit_batches`` asks for."""

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        yield from range(skip, len(self.data_source))


def item_seed(seed: int, epoch: int, position: int) -> int:
    """The RNG seed of the item at ``position`` of ``epoch`` (its augmentation draws)."""
    return ((int(seed) * 1_000_003 + int(epoch)) * 10_000_019 + int(position)) % (2**32)


class SeededOrder(Sampler[Any]):
    """Yields ``(key, item seed)``: an epoch-seeded order plus a seed for each item's random draws.

    ``key`` is an index (or, with ``batch_size``, a list of indices for a dataset that takes a
    whole batch at once). :class:`SeededItems` seeds python, numpy and torch with the item seed
    before reading the item, so random augmentations depend on (seed, epoch, position) only:
    the same in a worker process or the main one, after a resume or a logger's random draw.
    """

    def __init__(self, order: EpochSeededRandomSampler, batch_size: int | None = None) -> None:
        self.order = order
        self.batch_size = batch_size
        self.drop_last = False
        self._start = 0

    @property
    def seed(self) -> int:
        return self.order.seed

    @property
    def epoch(self) -> int:
        return self.order.epoch

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def skip(self, n: int) -> None:
        """Start the next iteration ``n`` items (or whole batches, with ``batch_size``) in."""
        n_items = n * self.batch_size if self.batch_size else n
        self.order.skip(n_items)
        self._start = n

    def __len__(self) -> int:
        n = len(self.order)
        if not self.batch_size:
            return n
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        position, self._start = self._start, 0
        epoch = self.order.epoch
        if not self.batch_size:
            for i in self.order:
                yield i, item_seed(self.order.seed, epoch, position)
                position += 1
            return
        batch: list[int] = []
        for i in self.order:
            batch.append(i)
            if len(batch) == self.batch_size:
                yield batch, item_seed(self.order.seed, epoch, position)
                batch, position = [], position + 1
        if batch and not self.drop_last:
            yield batch, item_seed(self.order.seed, epoch, position)


class SeededItems(Dataset):
    """Reads ``dataset[key]`` after seeding every RNG with the item seed (see SeededOrder)."""

    def __init__(self, dataset: Dataset, seed: int = 0, batch_size: int | None = None) -> None:
        self.dataset = dataset
        self.seed = int(seed)  # the loader's data-order seed
        self.batch_size = batch_size  # a batched dataset's keys: lists of this many indices

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[Any, int]) -> Any:
        index, seed = key
        random.seed(seed)
        np.random.seed(seed)  # noqa: NPY002 (global RNG on purpose: transforms draw from it)
        torch.manual_seed(seed)
        return self.dataset[index]

    def __getattr__(self, name: str) -> Any:  # the wrapped dataset's attributes stay reachable
        if name in ("dataset", "seed", "batch_size") or name.startswith("__"):  # not ours
            raise AttributeError(name)
        return getattr(self.dataset, name)


class ResumableTrainLoader(DataLoader):
    """A DataLoader over a :class:`SeededOrder` that can start in the middle of an epoch.

    Lightning saves ``state_dict()`` in the checkpoint (and stops warning that the loader is
    not resumable); the runner's ``ExactResume`` callback calls :meth:`skip_batches` with the
    number of batches the checkpoint had already trained in its epoch. The constructor is
    DataLoader's, so Lightning can re-create it.
    """

    def __init__(self, dataset: Dataset, *args: Any, **kwargs: Any) -> None:
        sampler = kwargs.get("sampler")
        if type(sampler) is SequentialSampler and isinstance(dataset, SeededItems):
            # Lightning re-creates the loader with a SequentialSampler for ``overfit_batches``
            # (the same first batches every epoch); its plain indices would reach SeededItems,
            # which reads (key, item seed): keep that protocol, in the dataset's own order.
            order = SequentialOrder(dataset.dataset, dataset.seed)
            kwargs["sampler"] = SeededOrder(order, batch_size=dataset.batch_size)
        super().__init__(dataset, *args, **kwargs)

    def _order(self) -> SeededOrder | None:
        for candidate in (self.sampler, getattr(self.batch_sampler, "sampler", None)):
            if isinstance(candidate, SeededOrder):
                return candidate
        return None

    def skip_batches(self, n: int) -> bool:
        """Make the next iteration start at batch ``n``; False when the sampler cannot skip."""
        order = self._order()
        if order is None:
            return False
        order.skip(n if order.batch_size or self.batch_size is None else n * int(self.batch_size))
        return True

    def state_dict(self) -> dict[str, Any]:
        order = self._order()
        return {"seed": getattr(order, "seed", None), "epoch": getattr(order, "epoch", None)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        order = self._order()
        seed = getattr(order, "seed", None)
        if state.get("seed") is not None and seed is not None and state["seed"] != seed:
            log.warning(
                "resuming with data-order seed %s but the checkpoint was trained with seed %s: "
                "the resumed run will not match an uninterrupted one",
                seed,
                state["seed"],
            )


def seeded_train_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    *,
    sampler: EpochSeededRandomSampler | None = None,
    batched_dataset: bool = False,
    drop_last: bool = False,
    **kwargs: Any,
) -> ResumableTrainLoader:
    """The one way to build a training DataLoader: shuffled by (seed, epoch), resumable mid-epoch.

    ``sampler``: a subclass of :class:`EpochSeededRandomSampler` (e.g. one that maps indices);
    ``batched_dataset``: the dataset takes a list of indices and returns a whole batch.
    Each item (or batch) is read with every RNG seeded from (seed, epoch, position), so random
    augmentations are reproducible too. Other keyword arguments (``num_workers``,
    ``collate_fn``, ``pin_memory`` ...) go to DataLoader.
    """
    order = sampler if sampler is not None else EpochSeededRandomSampler(dataset, seed)
    items = SeededItems(dataset, seed, batch_size if batched_dataset else None)
    if batched_dataset:
        seeded = SeededOrder(order, batch_size=batch_size)
        seeded.drop_last = drop_last
        return ResumableTrainLoader(items, batch_size=None, sampler=seeded, **kwargs)
    seeded = SeededOrder(order)
    return ResumableTrainLoader(
        items, batch_size=batch_size, sampler=seeded, drop_last=drop_last, **kwargs
    )
