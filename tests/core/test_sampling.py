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


class _Seen(torch.nn.Module):
    """Holds the item indices of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[int]] = []


def _overfit(loader, epochs: int = 3) -> list[list[int]]:
    """``Trainer(overfit_batches=1)``: Lightning re-creates the loader with a SequentialSampler."""
    import lightning as L

    net = _Seen()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch, _):
            index = batch[:, 0] if batch.dim() > 1 else batch  # Noisy: (i, draw); Batched: i + draw
            net.seen.append(index.long().tolist())
            return (self.net.w * batch.sum()).sum()

        def train_dataloader(self):
            return loader

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = L.Trainer(
        overfit_batches=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(Module())
    return net.seen


def test_overfit_batches_trains_the_same_first_batch_every_epoch():
    """debug=overfit used to stop every seeded loader: Lightning's SequentialSampler handed plain
    indices to a dataset that reads (index, item seed)."""
    for loader in (
        seeded_train_loader(Noisy(), 4, seed=1),
        seeded_train_loader(Batched(), 4, seed=1, batched_dataset=True),
    ):
        assert _overfit(loader) == [[0, 1, 2, 3]] * 3
