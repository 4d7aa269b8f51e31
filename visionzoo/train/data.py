"""Data pieces every task's loader shares: per-image random draws that do not depend on who reads the image,
unreadable images turned into countable placeholders, and one sampler for every world size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from visionzoo.distributed import World


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A generator seed for one image in one epoch: distinct for every (seed, epoch, index) in practice."""
    mixed = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) % (1 << 64)
    return mixed ^ (mixed >> 31)


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator an image's augmentation draws from in ``epoch``."""
    return torch.Generator().manual_seed(sample_seed(seed, epoch, index))


@dataclass(frozen=True)
class Unreadable:
    """A sample whose file could not be decoded: left out of its batch and counted."""

    path: str
    reason: str


def split_readable(samples: list[Any]) -> tuple[list[Any], list[str]]:
    """The readable samples of a batch, and the paths of the unreadable ones."""
    readable = [s for s in samples if not isinstance(s, Unreadable)]
    return readable, [s.path for s in samples if isinstance(s, Unreadable)]


def training_sampler(dataset: torch.utils.data.Dataset, world: World, seed: int) -> torch.utils.data.Sampler:
    """One shuffled order per epoch (from ``seed`` and the epoch), cut into per-rank shares (a world of one takes
    it all), so the global batches do not depend on how many processes share them."""
    return torch.utils.data.DistributedSampler(
        dataset, num_replicas=world.world_size, rank=world.rank, shuffle=True, seed=seed
    )
