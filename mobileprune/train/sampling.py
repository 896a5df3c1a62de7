"""The order training images are seen in, as a position that can be saved, resumed and split across processes.

A plain shuffled DataLoader cannot be resumed in the middle of an epoch (its order lives in a generator
that has moved on), and its random crops come from whichever process happens to load an image. Here
both are functions of numbers: epoch `e`'s order is a permutation seeded by (seed, e), and the random
augmentation of image `i` in epoch `e` is seeded by (seed, e, i). So a run killed after batch `b` goes on
from (e, b) with the same images and the same crops, and under `torchrun` each process takes its share of
every global batch and augments it exactly as a single process would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Sampler

_SALT = 1_000_003  # spreads (seed, epoch, index) over seeds without collisions for realistic sizes


def _seed(*parts: int) -> int:
    value = 0
    for part in parts:
        value = (value * _SALT + int(part)) % (2**63 - 1)
    return value


@dataclass(frozen=True)
class Draw:
    """One training sample: image `index` as augmented in `epoch`."""

    index: int
    epoch: int


class SeededAugmentation(Dataset):
    """`dataset[i]` with the global RNG seeded by (seed, epoch, i) while its random transform runs."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, draw: Draw):
        rng = torch.default_generator  # transforms draw from it; torch.manual_seed would also seed CUDA (slow)
        state = rng.get_state()  # the caller's RNG stream is left exactly as it was
        rng.manual_seed(_seed(self.seed, draw.epoch, draw.index))
        try:
            return self.dataset[draw.index]
        finally:
            rng.set_state(state)


class EpochBatches(Sampler[list[Draw]]):
    """Batches of `Draw`s: epoch after epoch, each a seeded permutation; this process's share of each batch.

    `rank`/`world`: under torchrun every process walks the same global batches and keeps every
    `world`-th image of each, so together they see what one process with the same global batch sees.
    For training (`shuffle`), a last global batch too small to give every process an image is dropped
    (a process with nothing to train on would stall the others); evaluation keeps every image.
    """

    def __init__(self, size: int, batch_size: int, seed: int, shuffle: bool = True, rank: int = 0, world: int = 1):
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.rank, self.world = rank, world
        self.smallest_last = world if shuffle else 1
        self.epoch, self.start = 0, 0  # where the next iteration begins (see `resume_at`)

    def global_batches(self) -> int:
        full, rest = divmod(self.size, self.batch_size)
        return full + (1 if rest >= self.smallest_last else 0)

    def __len__(self) -> int:
        return self.global_batches()

    def resume_at(self, epoch: int, batch: int) -> None:
        self.epoch, self.start = epoch, batch

    def order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        return torch.randperm(self.size, generator=torch.Generator().manual_seed(_seed(self.seed, epoch))).tolist()

    def __iter__(self) -> Iterator[list[Draw]]:
        """One epoch from the current position; a finished pass moves on to the next epoch, as DataLoaders do."""
        epoch, order = self.epoch, self.order(self.epoch)
        for b in range(self.start, self.global_batches()):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield [Draw(i, epoch) for i in batch[self.rank :: self.world]]
        self.epoch, self.start = epoch + 1, 0
