"""Data pieces every task's loader shares: per-image random draws that do not depend on who reads the image,
unreadable images turned into countable placeholders, and one sampler for every world size."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

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


class TrainingData:
    """What every task's training data shares, mixed into the task classes: the model built for the task's
    classes, and a loader whose per-epoch order and random draws depend only on the seed and the epoch.

    A task provides ``model``, ``weights``, ``builder_kwargs``, ``batch_size``, ``workers``, ``classes``,
    ``collate`` (a static method) and ``training_samples(seed)``, a dataset with a settable ``epoch``.
    """

    model: str
    weights: Any
    builder_kwargs: dict[str, Any]
    batch_size: int
    workers: int
    classes: list[str]
    collate: Callable[[list[Any]], Any]
    training_samples: Callable[[int], torch.utils.data.Dataset]
    _samples: Any = None
    _sampler: torch.utils.data.DistributedSampler | None = None

    def build_model(self) -> nn.Module:
        """The registered model for ``len(classes)`` classes; the builder's warnings (e.g. a fresh head for N
        classes) become one-line notes on stderr, as the command line prints them."""
        from visionzoo.models import get_model

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            model = get_model(self.model, weights=self.weights, num_classes=len(self.classes), **self.builder_kwargs)
        for warning in caught:
            print(f"visionzoo train: note: {warning.message}", file=sys.stderr)
        return model

    def train_loader(self, world: World, seed: int) -> torch.utils.data.DataLoader:
        self._samples = self.training_samples(seed)
        self._sampler = training_sampler(self._samples, world, seed)
        return self.loader(self._samples, self._sampler)

    def loader(self, samples: torch.utils.data.Dataset, sampler: Any) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            samples, batch_size=self.batch_size, sampler=sampler, num_workers=self.workers, collate_fn=self.collate
        )

    def set_epoch(self, epoch: int) -> None:
        if self._samples is None or self._sampler is None:
            raise RuntimeError("set_epoch before train_loader")
        self._samples.epoch = epoch
        self._sampler.set_epoch(epoch)
