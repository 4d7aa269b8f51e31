"""What a detector does to its inputs before the backbone and to its detections after the heads.

Each image is normalised and resized so that its shorter side is ``min_size`` (its longer side at most
``max_size``), its target boxes resized with it; the images are then padded into one batch. After the heads,
:meth:`GeneralizedRCNNTransform.postprocess` maps the detections back to each input image's own size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .image_list import ImageList
from .roi_heads import paste_masks_in_image

__all__ = ["GeneralizedRCNNTransform", "resize_boxes", "resize_keypoints"]

Target = dict[str, torch.Tensor]


def _resized_size(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    # The reference lets interpolate scale by this factor (in double precision), i.e. floor(side * factor).
    factor = min(min_size / min(height, width), max_size / max(height, width))
    return math.floor(height * factor), math.floor(width * factor)


def _resize_image_and_masks(
    image: torch.Tensor,
    min_size: int,
    max_size: int,
    target: Target | None = None,
    fixed_size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, Target | None]:
    """``image`` (``(C, H, W)``) resized bilinearly (half-pixel centres, no antialiasing) to ``fixed_size``
    (width, height) or by the factor that fits ``min_size``/``max_size``; ``target["masks"]`` with it (nearest)."""
    height, width = image.shape[-2:]
    size = (
        (fixed_size[1], fixed_size[0]) if fixed_size is not None else _resized_size(height, width, min_size, max_size)
    )
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    if target is not None and "masks" in target:
        target["masks"] = F.interpolate(target["masks"][:, None].float(), size=size)[:, 0].byte()
    return image, target


def _ratios(original_size: Sequence[int], new_size: Sequence[int], device: torch.device) -> list[torch.Tensor]:
    # float32 ratios whatever the boxes' dtype, as the reference computes them.
    return [
        torch.tensor(new, dtype=torch.float32, device=device) / torch.tensor(old, dtype=torch.float32, device=device)
        for new, old in zip(new_size, original_size)
    ]


def resize_boxes(boxes: torch.Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> torch.Tensor:
    """``boxes`` (``(N, 4)``, x1 y1 x2 y2) of an image of ``original_size`` (height, width) scaled to ``new_size``."""
    ratio_height, ratio_width = _ratios(original_size, new_size, boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    return torch.stack((x1 * ratio_width, y1 * ratio_height, x2 * ratio_width, y2 * ratio_height), dim=1)


def resize_keypoints(keypoints: torch.Tensor, original_size: Sequence[int], new_size: Sequence[int]) -> torch.Tensor:
    """``keypoints`` (``(N, K, 3)``: x, y, visibility) of an image of ``original_size`` scaled to ``new_size``."""
    ratio_height, ratio_width = _ratios(original_size, new_size, keypoints.device)
    x, y, visibility = keypoints.unbind(-1)
    return torch.stack((x * ratio_width, y * ratio_height, visibility), dim=-1).to(keypoints.dtype)


def check_targets_for_mode(training: bool, targets: Any) -> None:
    """Raise a clear error when a detector is called without targets in training or with targets in eval."""
    if training and targets is None:
        raise ValueError("targets should not be None in training mode: pass one dict of boxes and labels per image")
    if not training and targets is not None:
        raise ValueError(
            "targets were given in eval mode, where the model only predicts; call model.train() to compute "
            "the losses, or leave targets out"
        )


def _check_masks_and_keypoints(index: int, target: Target, num_boxes: int, image_size: Sequence[int] | None) -> None:
    if "masks" in target:
        masks = target["masks"]
        if not isinstance(masks, torch.Tensor) or masks.dim() != 3 or masks.shape[0] != num_boxes:
            raise ValueError(
                f"target {index}: masks must have shape (N, H, W) with one mask per box (N = {num_boxes}), got "
                f"{tuple(getattr(masks, 'shape', ())) or type(masks).__name__}"
            )
        if image_size is not None and tuple(masks.shape[1:]) != tuple(image_size):
            raise ValueError(
                f"target {index}: masks are {tuple(masks.shape[1:])} (H, W) but the image is {tuple(image_size)}; "
                "each mask must cover its whole image"
            )
    if "keypoints" in target:
        keypoints = target["keypoints"]
        if (
            not isinstance(keypoints, torch.Tensor)
            or keypoints.dim() != 3
            or keypoints.shape[0] != num_boxes
            or keypoints.shape[2] != 3
        ):
            raise ValueError(
                f"target {index}: keypoints must have shape (N, K, 3) (x, y, visibility for K keypoints of each of "
                f"the N = {num_boxes} boxes), got {tuple(getattr(keypoints, 'shape', ())) or type(keypoints).__name__}"
            )


def check_targets(targets: Any, num_images: int, image_sizes: Sequence[Sequence[int]] | None = None) -> None:
    """Raise a clear error unless ``targets`` is a list of one dict per image with ``boxes`` (float ``(N, 4)``,
    ``x2 > x1`` and ``y2 > y1``) and ``labels`` (integer ``(N,)``). An image may have no boxes (``N = 0``).
    Optional ``masks`` must be ``(N, H, W)``, ``(H, W)`` the image's size from ``image_sizes``; optional
    ``keypoints`` ``(N, K, 3)``."""
    if not isinstance(targets, (list, tuple)) or not all(isinstance(t, dict) for t in targets):
        raise TypeError(f"targets must be a list of dicts (one per image), got {type(targets).__name__}")
    if len(targets) != num_images:
        raise ValueError(f"got {num_images} images but {len(targets)} targets; give one target dict per image")
    for index, target in enumerate(targets):
        missing = [key for key in ("boxes", "labels") if key not in target]
        if missing:
            raise ValueError(f"target {index} has no {' or '.join(missing)} (it has: {', '.join(target) or 'nothing'})")
        boxes, labels = target["boxes"], target["labels"]
        if not isinstance(boxes, torch.Tensor) or not boxes.is_floating_point():
            raise TypeError(
                f"target {index}: boxes must be a floating point Tensor, got {getattr(boxes, 'dtype', boxes)!r}"
            )
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"target {index}: boxes must have shape (N, 4), got {tuple(boxes.shape)}")
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
            raise TypeError(
                f"target {index}: labels must be an integer Tensor, got {getattr(labels, 'dtype', labels)!r}"
            )
        if labels.shape != boxes.shape[:1]:
            raise ValueError(
                f"target {index}: labels must have shape ({boxes.shape[0]},), one per box, got {tuple(labels.shape)}"
            )
        _check_masks_and_keypoints(index, target, len(boxes), image_sizes[index] if image_sizes else None)
        degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if degenerate.any():
            box = int(degenerate.nonzero()[0])
            raise ValueError(
                f"target {index}: box {box} {boxes[box].tolist()} has x2 <= x1 or y2 <= y1; "
                "boxes must be (x1, y1, x2, y2) with positive width and height"
            )


class GeneralizedRCNNTransform(nn.Module):
    """Normalises, resizes and batches a detector's input images (and resizes their targets with them).

    Args:
        min_size: the shorter side after resizing; a sequence to pick one at random for each training image.
        max_size: the longest the longer side may get (the image is scaled down further if needed).
        image_mean: per-channel mean subtracted from the images.
        image_std: per-channel standard deviation the images are divided by.
        size_divisible: the batch's height and width are padded to multiples of this.
        fixed_size: resize every image to this ``(width, height)`` instead.
        _skip_resize: (keyword) in training, leave the images at their size.

    The forward returns an :class:`ImageList` (the padded batch and each image's resized size) and the targets
    (copied, boxes resized), or None without targets.
    """

    def __init__(
        self,
        min_size: int | Sequence[int],
        max_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        size_divisible: int = 32,
        fixed_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self._skip_resize = kwargs.pop("_skip_resize", False)
        if kwargs:
            raise TypeError(f"unexpected keyword argument(s): {', '.join(kwargs)}")
        if not isinstance(min_size, (list, tuple)):
            min_size = (min_size,)
        if not min_size or any(size <= 0 for size in min_size) or max_size <= 0:
            raise ValueError(f"min_size and max_size must be positive, got {min_size!r} and {max_size!r}")
        if len(image_mean) != len(image_std):
            raise ValueError(
                f"image_mean and image_std must have one value per channel, got {image_mean} and {image_std}"
            )
        if size_divisible <= 0:
            raise ValueError(f"size_divisible must be positive, got {size_divisible}")
        self.min_size = min_size
        self.max_size = max_size
        self.image_mean = image_mean
        self.image_std = image_std
        self.size_divisible = size_divisible
        self.fixed_size = fixed_size

    def forward(
        self, images: list[torch.Tensor], targets: list[Target] | None = None
    ) -> tuple[ImageList, list[Target] | None]:
        if not isinstance(images, (list, tuple)) or not images:
            raise TypeError(f"images must be a non-empty list of (C, H, W) tensors, got {type(images).__name__}")
        for index, image in enumerate(images):
            if not isinstance(image, torch.Tensor):
                raise TypeError(f"image {index} must be a Tensor, got {type(image).__name__}")
            if image.dim() != 3:
                raise ValueError(
                    f"images is expected to be a list of 3d tensors of shape [C, H, W], got {tuple(image.shape)} "
                    f"for image {index}"
                )
            if image.shape[0] != len(self.image_mean) or image.shape[1] == 0 or image.shape[2] == 0:
                raise ValueError(
                    f"image {index} has shape {tuple(image.shape)}; expected {len(self.image_mean)} channels and a "
                    "non-empty height and width"
                )
        if targets is not None:
            check_targets(targets, len(images), [tuple(image.shape[-2:]) for image in images])
            targets = [dict(target) for target in targets]  # the caller's dicts stay as they are
        resized = []
        for index, image in enumerate(images):
            image, target = self.resize(self.normalize(image), targets[index] if targets is not None else None)
            resized.append(image)
            if targets is not None:
                targets[index] = target
        image_sizes = [(image.shape[-2], image.shape[-1]) for image in resized]
        return ImageList(self.batch_images(resized, size_divisible=self.size_divisible), image_sizes), targets

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """``(image - mean) / std`` per channel; ``image`` must be floating point (values in ``[0, 1]``)."""
        if not image.is_floating_point():
            raise TypeError(
                f"Expected input images to be of floating type (in range [0, 1]), but found type {image.dtype} instead"
            )
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def torch_choice(self, k: Sequence[int]) -> int:
        """One of ``k`` at random, drawn from torch's generator (so ``torch.manual_seed`` fixes it)."""
        return k[int(torch.empty(1).uniform_(0.0, float(len(k))).item())]

    def resize(self, image: torch.Tensor, target: Target | None = None) -> tuple[torch.Tensor, Target | None]:
        """Resize one normalised image and its target (boxes, masks, keypoints)."""
        height, width = image.shape[-2:]
        if self.training:
            if self._skip_resize:
                return image, target
            size = self.torch_choice(self.min_size)  # draws even for a single size, as the reference does
        else:
            size = self.min_size[-1]
        image, target = _resize_image_and_masks(image, size, self.max_size, target, self.fixed_size)
        if target is None:
            return image, target
        new_size = image.shape[-2:]
        target["boxes"] = resize_boxes(target["boxes"], (height, width), new_size)
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], (height, width), new_size)
        return image, target

    def max_by_axis(self, the_list: list[list[int]]) -> list[int]:
        """The largest value of each position over the lists."""
        return [max(values) for values in zip(*the_list)]

    def batch_images(self, images: list[torch.Tensor], size_divisible: int = 32) -> torch.Tensor:
        """The images zero-padded at the bottom and right into one ``(N, C, H, W)`` tensor, ``H`` and ``W`` the
        largest height and width rounded up to multiples of ``size_divisible``."""
        channels, height, width = self.max_by_axis([list(image.shape) for image in images])
        height = math.ceil(height / size_divisible) * size_divisible
        width = math.ceil(width / size_divisible) * size_divisible
        # Padded copies stacked, rather than written into a zero batch: the same values, and no in-place writes
        # for torch.compile to turn into scatters (which Inductor's convolution fusion mishandles).
        return torch.stack(
            [
                F.pad(image, (0, width - image.shape[2], 0, height - image.shape[1], 0, channels - image.shape[0]))
                for image in images
            ]
        )

    def postprocess(
        self,
        result: list[Target],
        image_shapes: list[tuple[int, int]],
        original_image_sizes: list[tuple[int, int]],
    ) -> list[Target]:
        """Map each image's detections from its resized size back to its original size: boxes and keypoints
        scaled, masks pasted into an image of the original size (``(N, 1, H, W)``). Training results (losses)
        pass through unchanged."""
        if self.training:
            return result
        for prediction, resized_size, original_size in zip(result, image_shapes, original_image_sizes):
            prediction["boxes"] = resize_boxes(prediction["boxes"], resized_size, original_size)
            if "masks" in prediction:
                prediction["masks"] = paste_masks_in_image(prediction["masks"], prediction["boxes"], original_size)
            if "keypoints" in prediction:
                prediction["keypoints"] = resize_keypoints(prediction["keypoints"], resized_size, original_size)
        return result

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(\n"
            f"    Normalize(mean={self.image_mean}, std={self.image_std})\n"
            f"    Resize(min_size={self.min_size}, max_size={self.max_size}, mode='bilinear')\n)"
        )
