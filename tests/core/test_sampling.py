"""The training loader every datamodule uses: order, augmentation and mid-epoch restart."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, Subset

from core.sampling import seeded_train_loader


class Noisy(Dataset):
    """An item plus a draw from the global torch RNG (a random augmentation)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([float(i), torch.rand(()).item()])


class Batched(Dataset):
    """Takes a list of indices, returns the whole batch (as deep_gmm's frames)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, items: list[int]) -> torch.Tensor:
        return torch.tensor(items, dtype=torch.float) + torch.rand(len(items))


def _epoch(loader, epoch: int) -> list[torch.Tensor]:
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_order_and_augmentation_depend_on_seed_and_epoch_only():
    a = seeded_train_loader(Noisy(), 4, seed=3)
    torch.manual_seed(0)
    first = _epoch(a, 1)
    torch.manual_seed(12345)  # someone drew random numbers in between: nothing changes
    torch.rand(7)
    again = _epoch(seeded_train_loader(Noisy(), 4, seed=3), 1)
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    assert not torch.equal(first[0], _epoch(a, 2)[0])  # a new epoch, a new order
    assert not torch.equal(first[0], _epoch(seeded_train_loader(Noisy(), 4, seed=4), 1)[0])


def test_skip_batches_continues_exactly_where_an_epoch_stopped():
    for make in (
        lambda: seeded_train_loader(Subset(Noisy(), list(range(10))), 4, seed=1),
        lambda: seeded_train_loader(Batched(), 4, seed=1, batched_dataset=True),
    ):
        full = _epoch(make(), 2)
        resumed = make()
        assert resumed.skip_batches(1)
        tail = _epoch(resumed, 2)
        assert len(tail) == len(full) - 1
        assert all(torch.equal(x, y) for x, y in zip(full[1:], tail, strict=True))
        assert len(_epoch(resumed, 2)) == len(full)  # the skip is for one iteration only


def test_loader_is_stateful_for_lightning():
    from lightning.fabric.utilities.types import _Stateful

    loader = seeded_train_loader(Noisy(), 4, seed=5)
    assert isinstance(loader, _Stateful)
    loader.sampler.set_epoch(3)
    assert loader.state_dict() == {"seed": 5, "epoch": 3}
