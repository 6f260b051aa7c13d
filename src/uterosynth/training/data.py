"""Resumable, shardable data order: batch ``g`` of a run is a pure function of (seed, g, rank).

Why not ``DataLoader(shuffle=True)``: its order lives in iterator state that cannot be saved,
so a run resumed mid-epoch would see different batches. Here epoch ``e`` uses the permutation
seeded by ``(seed, e)``, sharded over ranks like ``DistributedSampler`` (padded, strided), and
the loop only has to remember how many micro-batches it has consumed. With per-item ``weights``
an epoch is instead ``n`` draws with replacement in proportion to them (e.g. class balancing),
seeded the same way, so weighted runs resume exactly too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..core.errors import DataError
from ..core.seeding import index_seed

__all__ = ["ResumableBatches", "EpochDataset", "resumable_loader"]


class ResumableBatches:
    """Infinite batch sampler yielding ``[(epoch, index), ...]`` from micro-batch ``start`` on.

    Args:
        n: dataset size.
        batch_size: items per micro-batch on this rank.
        seed: run seed.
        rank, world_size: this process's shard.
        start: global micro-batch counter to resume from.
        weights: optional per-item draw weights (positive, any scale); each epoch then draws
            ``n`` items with replacement in proportion to them instead of permuting.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start: int = 0,
        weights: Sequence[float] | None = None,
    ):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and (
            self.weights.shape != (n,) or not bool(torch.isfinite(self.weights).all()) or bool((self.weights <= 0).any())
        ):
            raise DataError(f"sample weights must be {n} positive finite numbers, one per training item")
        per_rank = -(-n // world_size)
        self.batches_per_epoch = per_rank // batch_size
        if self.batches_per_epoch == 0:
            raise DataError(
                f"training split has {n} item(s): too few for batch_size={batch_size} on {world_size} "
                "process(es); lower train.batch_size or add data"
            )

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` (drop-last, so every rank has the same number)."""
        g = torch.Generator().manual_seed(index_seed(self.seed, epoch, salt="data-order"))
        if self.weights is None:
            perm = torch.randperm(self.n, generator=g).tolist()
        else:
            perm = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        total = -(-self.n // self.world_size) * self.world_size
        perm = (perm * (total // self.n + 1))[:total]
        mine = perm[self.rank :: self.world_size]
        b = self.batch_size
        return [mine[i * b : (i + 1) * b] for i in range(self.batches_per_epoch)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = self.start
        while True:
            epoch, pos = divmod(g, self.batches_per_epoch)
            batches = self.epoch_batches(epoch)
            for batch in batches[pos:]:
                yield [(epoch, i) for i in batch]
            g = (epoch + 1) * self.batches_per_epoch


class EpochDataset(Dataset):
    """Wraps a map-style dataset of dicts; indexed by ``(epoch, index)``.

    When ``transform`` is a MONAI randomizable transform it is re-seeded per
    ``(seed, epoch, index)``, so augmentation is also resumable and independent of workers.
    """

    def __init__(self, base: Dataset, *, transform: Callable | None = None, seed: int = 0, key: str = "image"):
        self.base, self.transform, self.seed, self.key = base, transform, seed, key

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, ref: tuple[int, int]) -> dict[str, Any]:
        epoch, index = ref
        sample = dict(self.base[index])
        if self.transform is not None:
            if hasattr(self.transform, "set_random_state"):
                self.transform.set_random_state(seed=index_seed(self.seed, epoch * len(self) + index) % 2**32)
            sample[self.key] = torch.as_tensor(self.transform(sample[self.key])).float()
        return sample


def resumable_loader(
    dataset: Dataset, order: ResumableBatches, *, num_workers: int = 0, transform: Callable | None = None
) -> DataLoader:
    """An infinite :class:`DataLoader` of ``dataset`` in ``order``, which resumes exactly at its ``start``."""
    return DataLoader(
        EpochDataset(dataset, transform=transform, seed=order.seed),
        batch_sampler=order,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(order.seed),  # keeps the global RNG untouched
        persistent_workers=False,
    )
