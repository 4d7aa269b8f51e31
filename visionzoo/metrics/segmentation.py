"""Semantic segmentation metrics from a confusion matrix, as the reference's segmentation evaluation computes them:
pixels whose target is the ignore index (255 in Pascal VOC: object borders and difficult regions) are left out;
pixel accuracy is the share of the other pixels predicted right, the IoU of a class is
``TP / (TP + FP + FN)``, and mean IoU averages it over the classes."""

from __future__ import annotations

import torch

VOC_IGNORE_INDEX = 255


class ConfusionMatrix:
    """Counts of (target class, predicted class) pairs over every pixel scored.

    Args:
        num_classes: the number of classes the model scores.
        ignore_index: the target value of pixels that are not scored.

    Attributes:
        counts: ``(num_classes, num_classes)`` int64; row: target class, column: predicted class.
    """

    def __init__(self, num_classes: int, ignore_index: int = VOC_IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"ConfusionMatrix: num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, target: torch.Tensor, prediction: torch.Tensor) -> None:
        """Add the pixels of one or more class-index maps of the same shape.

        Raises:
            ValueError: the shapes differ, a tensor is not of integers, a prediction is not a class index, or a
                target is neither a class index nor the ignore index.
        """
        if target.shape != prediction.shape:
            raise ValueError(
                f"ConfusionMatrix.update: target {tuple(target.shape)} and prediction {tuple(prediction.shape)} "
                "differ in shape"
            )
        for name, tensor in (("target", target), ("prediction", prediction)):
            if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
                raise ValueError(
                    f"ConfusionMatrix.update: {name} must hold class indices (integers), got {tensor.dtype}"
                )
        n = self.num_classes
        target = target.flatten().to("cpu", torch.int64)
        prediction = prediction.flatten().to("cpu", torch.int64)
        scored = target != self.ignore_index
        target, prediction = target[scored], prediction[scored]
        outside = (target < 0) | (target >= n)
        if outside.any():
            raise ValueError(
                f"the target holds class {int(target[outside][0])}, but there are {n} classes (0..{n - 1}; "
                f"{self.ignore_index} marks pixels left out)"
            )
        if prediction.numel() and (int(prediction.min()) < 0 or int(prediction.max()) >= n):
            raise ValueError(f"ConfusionMatrix.update: predictions must lie in 0..{n - 1}")
        self.counts += torch.bincount(target * n + prediction, minlength=n * n).view(n, n)

    @property
    def pixels(self) -> int:
        """The number of pixels scored."""
        return int(self.counts.sum())

    def iou(self) -> torch.Tensor:
        """Per class, ``TP / (TP + FP + FN)`` in %, NaN for a class neither in the targets nor predicted."""
        counts = self.counts.to(torch.float64)
        hits = counts.diag()
        union = counts.sum(dim=0) + counts.sum(dim=1) - hits
        return torch.where(union > 0, 100.0 * hits / union.clamp(min=1), torch.nan)

    def compute(self) -> dict[str, float]:
        """``miou`` (the mean of :meth:`iou` over the classes that occur, in targets or predictions) and
        ``pixel_acc`` (the share of scored pixels predicted right), both in %; NaN before any pixel.

        On a dataset where every class occurs (COCO val2017 with VOC labels, VOC val) this is the reference's mean
        IoU; on a subset, classes that never occur are left out of the mean instead of making it NaN.
        """
        if self.pixels == 0:
            return {"miou": float("nan"), "pixel_acc": float("nan")}
        return {
            "miou": float(self.iou().nanmean()),
            "pixel_acc": 100.0 * float(self.counts.diag().sum()) / self.pixels,
        }
