"""Optical flow metrics, as the flow benchmarks and the reference's RAFT evaluation compute them.

Per valid pixel the end-point error is ``|predicted - true|`` (the Euclidean distance between the two motion
vectors). Over a dataset:

* ``epe``: the mean end-point error over every valid pixel of every image (pixels weigh equally);
* ``per_image_epe``: each image's mean first, then their mean (images weigh equally; KITTI's "EPE");
* ``1px``, ``3px``, ``5px``: the % of valid pixels whose error is under 1, 3, 5 pixels;
* ``fl_all``: KITTI's outlier rate, the % of valid pixels whose error exceeds both 3 pixels and 5% of the true
  motion's length.
"""

from __future__ import annotations

import torch

THRESHOLDS = (1, 3, 5)


def end_point_error(predicted: torch.Tensor, true: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The end-point errors of the valid pixels, flattened.

    Args:
        predicted, true: ``(2, H, W)`` flows (``u`` then ``v``, in pixels).
        valid: ``(H, W)`` bool mask of the pixels whose true flow is known (None: all).

    Raises:
        ValueError: the shapes do not fit.
    """
    if predicted.dim() != 3 or predicted.shape[0] != 2 or predicted.shape != true.shape:
        raise ValueError(
            f"end_point_error: expected two (2, H, W) flows of one shape, got {tuple(predicted.shape)} and "
            f"{tuple(true.shape)}"
        )
    if valid is not None and (valid.dtype != torch.bool or valid.shape != true.shape[1:]):
        raise ValueError(
            f"end_point_error: valid must be a {tuple(true.shape[1:])} bool mask, got {tuple(valid.shape)} {valid.dtype}"
        )
    error = (predicted.double() - true.double()).pow(2).sum(dim=0).sqrt()
    return error.flatten() if valid is None else error[valid]


class FlowMetrics:
    """Accumulates the flow metrics (module docstring) over pairs of frames."""

    def __init__(self) -> None:
        self.pixels = 0
        self.images = 0
        self.error_sum = 0.0
        self.image_epe_sum = 0.0
        self.under = dict.fromkeys(THRESHOLDS, 0)
        self.outliers = 0

    def update(self, predicted: torch.Tensor, true: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        """Add one pair's predicted and true flow ``(2, H, W)``; ``valid`` as in :func:`end_point_error`. A pair
        without any valid pixel adds nothing."""
        error = end_point_error(predicted, true, valid)
        if error.numel() == 0:
            return
        length = true.double().pow(2).sum(dim=0).sqrt()
        length = length.flatten() if valid is None else length[valid]
        self.pixels += error.numel()
        self.images += 1
        self.error_sum += float(error.sum())
        self.image_epe_sum += float(error.mean())
        for threshold in THRESHOLDS:
            self.under[threshold] += int((error < threshold).sum())
        self.outliers += int(((error > 3) & (error > 0.05 * length)).sum())

    def compute(self) -> dict[str, float]:
        """The metrics so far (NaN before any valid pixel)."""
        if self.pixels == 0:
            return dict.fromkeys(("epe", "per_image_epe", *(f"{t}px" for t in THRESHOLDS), "fl_all"), float("nan"))
        return {
            "epe": self.error_sum / self.pixels,
            "per_image_epe": self.image_epe_sum / self.images,
            **{f"{t}px": 100.0 * self.under[t] / self.pixels for t in THRESHOLDS},
            "fl_all": 100.0 * self.outliers / self.pixels,
        }
