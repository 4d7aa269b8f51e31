"""Fine-tuning a detector on a COCO-format image directory and annotation file
(:class:`visionzoo.datasets.CocoDetection`), evaluated by COCO box mAP (pycocotools).

Training images are flipped left to right with probability 1/2 (boxes and masks with them; keypoint targets are
left unflipped, since mirroring swaps left and right keypoints), drawn per (seed, epoch, image) as for
classification. The models resize and normalise their inputs themselves, so an image only becomes float in [0, 1].

Labels: ``label_space="contiguous"`` (the default) numbers the file's categories 1..N after the background 0 and
builds the model with ``num_classes=N + 1`` (from published weights, only the class-scoring layers are new);
``"coco"`` keeps the 91 COCO labels the published weights score, for data in COCO's categories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from visionzoo.distributed import World, shard
from visionzoo.transforms import functional as F

from .data import TrainingData, Unreadable, sample_generator, split_readable
from .engine import Batch


def hflip_sample(image: torch.Tensor, target: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """Mirror an image and its boxes (and masks) left to right."""
    width = image.shape[-1]
    target = dict(target)
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
    target["boxes"] = boxes
    if "masks" in target:
        target["masks"] = target["masks"].flip(-1)
    return F.hflip(image), target


class _DetectionSamples(torch.utils.data.Dataset):
    """CocoDetection items as float images (flipped at random when ``flip``), or :class:`Unreadable`."""

    def __init__(self, dataset: Any, seed: int, flip: bool) -> None:
        self.dataset, self.seed, self.flip = dataset, seed, flip
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]] | Unreadable:
        from visionzoo.io.image import ImageDecodeError

        try:
            image, target = self.dataset.load(index)
        except (ImageDecodeError, OSError) as error:
            return Unreadable(str(self.dataset.image_path(index)), str(error))
        image = F.convert_image_dtype(image, torch.float32)
        if self.flip and "keypoints" not in target:
            if torch.rand(1, generator=sample_generator(self.seed, self.epoch, index)).item() < 0.5:
                image, target = hflip_sample(image, target)
        return image, target


def _collate(samples: list[Any]) -> tuple[list[torch.Tensor], list[dict[str, Any]], list[str]]:
    readable, skipped = split_readable(samples)
    return [image for image, _ in readable], [target for _, target in readable], skipped


def _model_target(target: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The fields a detection model trains on, on ``device`` (image ids, areas and crowd flags stay behind)."""
    return {k: v.to(device) for k, v in target.items() if k in ("boxes", "labels", "masks", "keypoints")}


@dataclass
class DetectionTask(TrainingData):
    """Fine-tune detection ``model`` on ``image_dir`` + ``annotations``; COCO mAP on ``val_dir`` +
    ``val_annotations`` when given.

    Args:
        weights: a weights entry (new class-scoring layers when the label count differs), a checkpoint path
            (it must fit), or None (random, with ``builder_kwargs["weights_backbone"]`` as the backbone).
        label_space: ``"contiguous"`` or ``"coco"`` (see the module docstring).
        builder_kwargs: further builder arguments (``weights_backbone``, ``min_size``, ``max_size``, ...).
    """

    model: str
    weights: Any
    image_dir: Path
    annotations: Path
    val_dir: Path | None = None
    val_annotations: Path | None = None
    batch_size: int = 2
    workers: int = 2
    label_space: str = "contiguous"
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "detection"
    collate = staticmethod(_collate)

    def __post_init__(self) -> None:
        from visionzoo.datasets import CocoDetection

        if (self.val_dir is None) != (self.val_annotations is None):
            raise ValueError("validation needs both an image directory and its annotation file (--val-annotations)")
        space: Any = self.label_space
        self.train_set = CocoDetection(self.image_dir, self.annotations, label_space=space, include_crowd=False)
        self.val_set = (
            CocoDetection(self.val_dir, self.val_annotations, label_space=space)
            if self.val_dir is not None and self.val_annotations is not None
            else None
        )
        if self.val_set is not None and self.val_set.categories != self.train_set.categories:
            raise ValueError(
                f"{self.val_annotations} has other categories than {self.annotations}: "
                f"{self.val_set.categories} vs {self.train_set.categories}"
            )

    @property
    def classes(self) -> list[str]:
        """The label names, index 0 the background."""
        return list(self.train_set.categories)

    def training_samples(self, seed: int) -> torch.utils.data.Dataset:
        return _DetectionSamples(self.train_set, seed, flip=True)

    def loss(self, model: nn.Module, batch: Any, device: torch.device) -> Batch:
        images, targets, skipped = batch
        if not images:
            return Batch(None, 0, skipped)
        losses = model([image.to(device) for image in images], [_model_target(t, device) for t in targets])
        return Batch(sum(losses.values()), len(images), skipped)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, world: World, device: torch.device, quiet: bool) -> dict[str, float]:
        """COCO box AP, AP50, ... (percent) over the validation images, all ranks' detections together."""
        if self.val_set is None:
            return {}
        from visionzoo.metrics.coco import CocoEvaluator

        from .engine import progress_bar, reduce_sum

        samples = _DetectionSamples(self.val_set, 0, flip=False)
        mine = torch.utils.data.Subset(samples, shard(range(len(samples)), world))
        batches = self.loader(mine, None)
        was_training = model.training
        model.eval()
        evaluator = CocoEvaluator(self.val_set, ("bbox",))
        skipped = 0
        for images, targets, unreadable in progress_bar(batches, len(batches), "evaluating", not quiet):
            skipped += len(unreadable)
            if images:
                evaluator.update(model([image.to(device) for image in images]), targets)
        model.train(was_training)
        evaluator.synchronize()
        (skipped,) = reduce_sum([skipped], world, device)
        if not evaluator.image_ids:
            return {"val_images": 0, "val_skipped": int(skipped)}
        stats = evaluator.evaluate()["bbox"]
        scores = {f"box_{name}": value for name, value in stats.items() if value is not None}
        return {**scores, "val_images": len(evaluator.image_ids), "val_skipped": int(skipped)}

    def meta(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "model": self.model,
            "categories": self.classes,
            "num_classes": len(self.classes),
            "label_space": self.label_space,
        }
