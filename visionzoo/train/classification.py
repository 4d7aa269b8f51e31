"""Fine-tuning an image classifier on class folders (:class:`visionzoo.datasets.ImageFolder`).

Training images get a random resized crop and a random horizontal flip; validation images the inference preset
(resize, center crop). The random draws of an image depend only on the run's seed, the epoch and the image's
index, never on which process or data-loader worker reads it: a resumed run and a run spread over several
ranks see exactly the crops an uninterrupted single-process run sees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionzoo.datasets import ImageFolder
from visionzoo.distributed import World, shard
from visionzoo.transforms import ImageClassification
from visionzoo.transforms import functional as F

from .data import TrainingData, Unreadable, sample_generator, split_readable
from .engine import Batch

# ImageNet statistics: every published classification entry normalises with them.
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class RandomResizedCropFlip:
    """The usual training augmentation: a random crop resized to ``size``, mirrored with probability 1/2.

    The crop covers a ``scale`` share of the image's area with an aspect ratio in ``ratio`` (drawn on a log
    scale); after ten draws that do not fit, the largest centred crop within ``ratio`` is taken.
    """

    def __init__(
        self, size: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
    ) -> None:
        if size < 1:
            raise ValueError(f"crop size must be positive, got {size}")
        self.size, self.scale, self.ratio = size, scale, ratio

    def box(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of a random crop of a ``height`` x ``width`` image."""
        area = height * width
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            draws = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * draws[0])
            aspect = math.exp(log_low + (log_high - log_low) * draws[1])
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return int(draws[2] * (height - h + 1)), int(draws[3] * (width - w + 1)), h, w
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif aspect > self.ratio[1]:
            h, w = height, round(height * self.ratio[1])
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        top, left, h, w = self.box(image.shape[-2], image.shape[-1], generator)
        image = F.resize(F.crop(image, top, left, h, w), [self.size, self.size], antialias=True)
        if torch.rand(1, generator=generator).item() < 0.5:
            image = F.hflip(image)
        return F.normalize(F.convert_image_dtype(image, torch.float32), mean=MEAN, std=STD)


class _Samples(torch.utils.data.Dataset):
    """A dataset's images through a transform, with per-image random draws fixed by (seed, epoch, index)."""

    def __init__(self, folder: ImageFolder, transform: Any, seed: int, random_draws: bool) -> None:
        self.folder, self.transform, self.seed, self.random_draws = folder, transform, seed, random_draws
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | Unreadable:
        from visionzoo.io.image import ImageDecodeError

        try:
            image, label = self.folder[index]
        except (ImageDecodeError, OSError) as error:
            return Unreadable(self.folder.samples[index][0], str(error))
        if self.random_draws:
            return self.transform(image, sample_generator(self.seed, self.epoch, index)), label
        return self.transform(image), label


def _collate(samples: list[Any]) -> tuple[torch.Tensor | None, torch.Tensor, list[str]]:
    readable, skipped = split_readable(samples)
    if not readable:
        return None, torch.zeros(0, dtype=torch.int64), skipped
    images = torch.stack([image for image, _ in readable])
    return images, torch.tensor([label for _, label in readable], dtype=torch.int64), skipped


@dataclass
class ClassificationTask(TrainingData):
    """Fine-tune ``model`` on ``train_dir`` (class folders), evaluating top-1/top-5 on ``val_dir`` if given.

    Args:
        model: a registered classification model's name.
        weights: what its builder gets: a weights entry (a fresh head is made for the folders' classes), a
            checkpoint path (it must fit), or None (random initialisation).
        crop_size: the training crop and the validation center crop, in pixels.
        resize_size: the validation images' shorter side before the center crop.
        builder_kwargs: further builder arguments (e.g. ``dropout``).
    """

    model: str
    weights: Any
    train_dir: Path
    val_dir: Path | None = None
    crop_size: int = 224
    resize_size: int = 256
    batch_size: int = 32
    workers: int = 2
    label_smoothing: float = 0.0
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "classification"
    collate = staticmethod(_collate)

    def __post_init__(self) -> None:
        self.train_set = ImageFolder(self.train_dir)
        self.val_set = ImageFolder(self.val_dir, classes=self.train_set.classes) if self.val_dir else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

    @property
    def classes(self) -> list[str]:
        return self.train_set.classes

    def training_samples(self, seed: int) -> torch.utils.data.Dataset:
        return _Samples(self.train_set, RandomResizedCropFlip(self.crop_size), seed, random_draws=True)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> Batch:
        images, labels, skipped = batch
        if images is None:
            return Batch(None, 0, skipped)
        logits = model(images.to(device, non_blocking=True))
        return Batch(self.criterion(logits, labels.to(device, non_blocking=True)), len(labels), skipped)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, world: World, device: torch.device, quiet: bool) -> dict[str, float]:
        """Top-1 and top-5 accuracy (percent) and the mean loss over the validation set, all ranks together."""
        if self.val_set is None:
            return {}
        from .engine import progress_bar, reduce_sum

        preset = ImageClassification(crop_size=self.crop_size, resize_size=self.resize_size)
        samples = _Samples(self.val_set, preset, 0, random_draws=False)
        mine = torch.utils.data.Subset(samples, shard(range(len(samples)), world))
        was_training = model.training
        model.eval()
        top1 = top5 = loss = count = skipped = 0.0
        k = min(5, len(self.classes))
        batches = self.loader(mine, None)
        for images, labels, unreadable in progress_bar(batches, len(batches), "evaluating", not quiet):
            skipped += len(unreadable)
            if images is None:
                continue
            labels = labels.to(device)
            logits = model(images.to(device)).float()
            ranked = logits.topk(k, dim=1).indices == labels[:, None]
            top1 += ranked[:, 0].sum().item()
            top5 += ranked.any(dim=1).sum().item()
            loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
            count += len(labels)
        model.train(was_training)
        top1, top5, loss, count, skipped = reduce_sum([top1, top5, loss, count, skipped], world, device)
        if count == 0:
            return {"val_images": 0, "val_skipped": int(skipped)}
        return {
            "top1": 100 * top1 / count,
            "top5": 100 * top5 / count,  # top-k with k = min(5, classes)
            "val_loss": loss / count,
            "val_images": int(count),
            "val_skipped": int(skipped),
        }

    def meta(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "model": self.model,
            "categories": list(self.classes),
            "num_classes": len(self.classes),
            "crop_size": self.crop_size,
            "resize_size": self.resize_size,
        }
