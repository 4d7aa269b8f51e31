"""Detection losses: the sigmoid focal loss (Lin et al., https://arxiv.org/abs/1708.02002) and the generalized,
distance and complete IoU losses between matched pairs of boxes (Rezatofighi et al.,
https://arxiv.org/abs/1902.09630; Zheng et al., https://arxiv.org/abs/1911.08287)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .boxes import _check_boxes

__all__ = ["sigmoid_focal_loss", "generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"]

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        # An empty batch gives 0 (still attached to the graph) rather than the NaN of an empty mean.
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    return loss


def sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2, reduction: str = "none"
) -> Tensor:
    """Binary cross-entropy scaled by ``(1 - p_t) ** gamma``, which discounts the easy examples, and weighted by
    ``alpha`` for the positives (``1 - alpha`` for the negatives).

    Args:
        inputs: logits, any shape.
        targets: 0/1 (or soft) labels of the same shape.
        alpha: positive-class weight in [0, 1], or -1 for no weighting.
        gamma: focusing exponent.
        reduction: ``none``, ``mean`` or ``sum``.
    """
    if not (0 <= alpha <= 1) and alpha != -1:
        raise ValueError(f"alpha must be in [0, 1], or -1 for no weighting, got {alpha}")
    _check_reduction(reduction)
    if inputs.shape != targets.shape:
        raise ValueError(
            f"inputs and targets must have the same shape, got {tuple(inputs.shape)} and {tuple(targets.shape)}"
        )
    p = torch.sigmoid(inputs)
    cross_entropy = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = cross_entropy * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    if reduction == "mean":
        return loss.mean()
    return _reduce(loss, reduction)


def _matched_parts(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For each matched pair of ``xyxy`` boxes: intersection, union, and the enclosing box's corners."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    if boxes1.shape != boxes2.shape:
        raise ValueError(
            f"boxes1 and boxes2 must have the same shape, got {tuple(boxes1.shape)} and {tuple(boxes2.shape)}"
        )
    x1, y1, x2, y2 = boxes1.unbind(-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(-1)
    w = torch.min(x2, x2g) - torch.max(x1, x1g)
    h = torch.min(y2, y2g) - torch.max(y1, y1g)
    # Pairs that do not overlap get exactly 0 (no gradient through the negative extents).
    inter = torch.where((w > 0) & (h > 0), w * h, torch.zeros_like(w))
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    enclosing_lo = torch.stack((torch.min(x1, x1g), torch.min(y1, y1g)), -1)
    enclosing_hi = torch.stack((torch.max(x2, x2g), torch.max(y2, y2g)), -1)
    return inter, union, enclosing_lo, enclosing_hi


def _as_float(t: Tensor) -> Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def generalized_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - GIoU`` of each matched pair of ``xyxy`` boxes (``boxes1[i]`` with ``boxes2[i]``), in [0, 2].

    Args:
        boxes1, boxes2: Tensor[..., 4] of the same shape.
        reduction: ``none``, ``mean`` or ``sum``.
        eps: keeps the divisions finite for degenerate boxes.
    """
    _check_reduction(reduction)
    boxes1, boxes2 = _as_float(boxes1), _as_float(boxes2)
    inter, union, lo, hi = _matched_parts(boxes1, boxes2)
    iou = inter / (union + eps)
    enclosing_area = (hi[..., 0] - lo[..., 0]) * (hi[..., 1] - lo[..., 1])
    giou = iou - (enclosing_area - union) / (enclosing_area + eps)
    return _reduce(1 - giou, reduction)


def _distance_loss_and_iou(boxes1: Tensor, boxes2: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    inter, union, lo, hi = _matched_parts(boxes1, boxes2)
    iou = inter / (union + eps)
    diagonal_squared = ((hi - lo) ** 2).sum(-1) + eps
    centre_offset = (boxes1[..., :2] + boxes1[..., 2:]) / 2 - (boxes2[..., :2] + boxes2[..., 2:]) / 2
    return 1 - iou + (centre_offset**2).sum(-1) / diagonal_squared, iou


def distance_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - DIoU`` of each matched pair of ``xyxy`` boxes: ``1 - IoU`` plus the squared distance of the centres
    over the squared diagonal of the enclosing box.

    Args:
        boxes1, boxes2: Tensor[..., 4] of the same shape.
        reduction: ``none``, ``mean`` or ``sum``.
        eps: keeps the divisions finite for degenerate boxes.
    """
    _check_reduction(reduction)
    loss, _ = _distance_loss_and_iou(_as_float(boxes1), _as_float(boxes2), eps)
    return _reduce(loss, reduction)


def complete_box_iou_loss(boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7) -> Tensor:
    """``1 - CIoU`` of each matched pair of ``xyxy`` boxes: the distance IoU loss plus an aspect-ratio penalty
    whose weight is not differentiated.

    Args:
        boxes1, boxes2: Tensor[..., 4] of the same shape.
        reduction: ``none``, ``mean`` or ``sum``.
        eps: used in the penalty's weight (the distance part keeps its default 1e-7, as in the reference).
    """
    _check_reduction(reduction)
    boxes1, boxes2 = _as_float(boxes1), _as_float(boxes2)
    distance_loss, iou = _distance_loss_and_iou(boxes1, boxes2, 1e-7)
    size1, size2 = boxes1[..., 2:] - boxes1[..., :2], boxes2[..., 2:] - boxes2[..., :2]
    angle_gap = torch.atan(size2[..., 0] / size2[..., 1]) - torch.atan(size1[..., 0] / size1[..., 1])
    v = (4 / torch.pi**2) * angle_gap**2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _reduce(distance_loss + alpha * v, reduction)
