"""Box coding, matching and sampling: the bookkeeping every anchor- or proposal-based detector shares.

:class:`BoxCoder` turns boxes into regression targets relative to reference boxes and back (the R-CNN
parameterisation, Girshick et al. 2014); :class:`Matcher` assigns each prediction the ground-truth box it
overlaps most; :class:`BalancedPositiveNegativeSampler` picks the training examples of each image.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from ...ops._library import tracing
from ...ops.misc import FrozenBatchNorm2d

__all__ = [
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "BoxLinearCoder",
    "Matcher",
    "SSDMatcher",
    "overwrite_eps",
    "retrieve_out_channels",
]


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if not isinstance(boxes, torch.Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")


class BalancedPositiveNegativeSampler:
    """Picks, per image, up to ``batch_size_per_image`` examples of which at most ``positive_fraction`` are positive.

    Positives are drawn first, then negatives fill the rest of the batch (as many as there are). Each image draws
    ``torch.randperm`` over its positives, then over its negatives, so a seeded run picks what the reference picks.

    Args:
        batch_size_per_image: examples per image.
        positive_fraction: the largest share of positives in an image's examples, in ``[0, 1]``.
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        if isinstance(batch_size_per_image, bool) or not isinstance(batch_size_per_image, int):
            raise TypeError(f"batch_size_per_image must be an int, got {batch_size_per_image!r}")
        if batch_size_per_image <= 0:
            raise ValueError(f"batch_size_per_image must be positive, got {batch_size_per_image}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction!r}")
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Sample each image's examples.

        Args:
            matched_idxs: per image, one label per candidate: ``>= 1`` positive, ``0`` negative, ``-1`` ignored.

        Returns:
            Two lists of ``uint8`` masks over each image's candidates: the positives picked, the negatives picked.
        """
        positive_masks, negative_masks = [], []
        for labels in matched_idxs:
            positive = torch.nonzero(labels >= 1).flatten()
            negative = torch.nonzero(labels == 0).flatten()
            num_positive = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_negative = min(negative.numel(), self.batch_size_per_image - num_positive)
            chosen_positive = positive[torch.randperm(positive.numel(), device=positive.device)[:num_positive]]
            chosen_negative = negative[torch.randperm(negative.numel(), device=negative.device)[:num_negative]]
            positive_masks.append(_mask(labels, chosen_positive))
            negative_masks.append(_mask(labels, chosen_negative))
        return positive_masks, negative_masks


def _mask(like: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(like, dtype=torch.uint8)
    mask[indices] = 1
    return mask


class BoxCoder:
    """Encodes boxes as ``(dx, dy, dw, dh)`` offsets from reference boxes, scaled by ``weights``, and decodes them.

    ``dx = wx * (x - xa) / wa`` for the centres and ``dw = ww * log(w / wa)`` for the sizes.

    Args:
        weights: the scales ``(wx, wy, ww, wh)`` of the four offsets (RPN uses ones, the box head ``(10, 10, 5, 5)``).
        bbox_xform_clip: the largest ``dw``/``dh`` decoded, so that ``exp`` cannot overflow: boxes grow at most
            1000/16 times the reference box.
    """

    def __init__(
        self, weights: tuple[float, float, float, float], bbox_xform_clip: float = math.log(1000.0 / 16)
    ) -> None:
        if len(weights) != 4:
            raise ValueError(f"weights must hold four numbers (wx, wy, ww, wh), got {weights!r}")
        self.weights = weights
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, reference_boxes: list[torch.Tensor], proposals: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """:meth:`encode_single` on per-image lists; returns one ``(N_i, 4)`` target tensor per image."""
        if len(reference_boxes) != len(proposals):
            raise ValueError(f"got {len(reference_boxes)} images of reference boxes but {len(proposals)} of proposals")
        counts = [len(boxes) for boxes in reference_boxes]
        targets = self.encode_single(torch.cat(reference_boxes), torch.cat(proposals))
        return targets.split(counts, 0)

    def encode_single(self, reference_boxes: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """The offsets that take each of ``proposals`` (``(N, 4)``, x1 y1 x2 y2) to the box at the same row of
        ``reference_boxes`` (the targets a regressor learns). Returns ``(N, 4)``."""
        _check_boxes(reference_boxes, "reference_boxes")
        _check_boxes(proposals, "proposals")
        if len(reference_boxes) != len(proposals):
            raise ValueError(f"got {len(reference_boxes)} reference boxes but {len(proposals)} proposals")
        weights = torch.as_tensor(self.weights, dtype=reference_boxes.dtype, device=reference_boxes.device)
        anchor_size = proposals[:, 2:] - proposals[:, :2]
        anchor_centre = proposals[:, :2] + 0.5 * anchor_size
        target_size = reference_boxes[:, 2:] - reference_boxes[:, :2]
        target_centre = reference_boxes[:, :2] + 0.5 * target_size
        centre_offsets = weights[:2] * (target_centre - anchor_centre) / anchor_size
        size_offsets = weights[2:] * torch.log(target_size / anchor_size)
        return torch.cat((centre_offsets, size_offsets), dim=1)

    def decode(self, rel_codes: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`decode_single` for per-image reference boxes; ``rel_codes`` holds one row per box, all images
        concatenated, with ``4 * K`` offsets (``K`` classes). Returns ``(sum N_i, K, 4)``."""
        if not isinstance(boxes, (list, tuple)):
            raise TypeError(f"boxes must be a list or tuple of per-image tensors, got {type(boxes).__name__}")
        if not isinstance(rel_codes, torch.Tensor):
            raise TypeError(f"rel_codes must be a Tensor, got {type(rel_codes).__name__}")
        if rel_codes.dim() != 2:
            rel_codes = rel_codes.reshape(sum(b.shape[0] for b in boxes), -1)
        decoded = self.decode_single(rel_codes, torch.cat(boxes))
        if not tracing() and decoded.shape[0] == 0:
            return decoded  # the reference's shape without boxes: (0, 4 * K)
        return decoded.unflatten(1, (-1, 4))

    def decode_single(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """The boxes that ``rel_codes`` (``(N, 4 * K)``) describe relative to ``boxes`` (``(N, 4)``): ``(N, 4 * K)``,
        in ``rel_codes``' dtype."""
        _check_boxes(boxes, "boxes")
        if rel_codes.dim() != 2 or rel_codes.shape[1] % 4 or rel_codes.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"rel_codes must have shape ({boxes.shape[0]}, 4 * K) to match the boxes, got {tuple(rel_codes.shape)}"
            )
        boxes = boxes.to(rel_codes.dtype)
        size = boxes[:, 2:] - boxes[:, :2]
        centre = boxes[:, :2] + 0.5 * size
        wx, wy, ww, wh = self.weights
        codes = rel_codes.unflatten(1, (-1, 4))  # (N, K, 4)
        # Divide by each Python weight separately: the same scalar arithmetic as the reference, bit for bit.
        dx, dy = codes[..., 0] / wx, codes[..., 1] / wy
        dw = (codes[..., 2] / ww).clamp(max=self.bbox_xform_clip)
        dh = (codes[..., 3] / wh).clamp(max=self.bbox_xform_clip)
        centre_x = dx * size[:, 0, None] + centre[:, 0, None]
        centre_y = dy * size[:, 1, None] + centre[:, 1, None]
        half_w = 0.5 * (torch.exp(dw) * size[:, 0, None])
        half_h = 0.5 * (torch.exp(dh) * size[:, 1, None])
        corners = (centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h)
        return torch.stack(corners, dim=2).flatten(1)


class BoxLinearCoder:
    """FCOS's box coding: the distances from a box's centre to the four edges of the target box, optionally
    divided by the box's width and height.

    Args:
        normalize_by_size: divide the distances by the reference box's size.
    """

    def __init__(self, normalize_by_size: bool = True) -> None:
        self.normalize_by_size = normalize_by_size

    def _sizes(self, boxes: torch.Tensor) -> torch.Tensor:
        size = boxes[..., 2:] - boxes[..., :2]
        return torch.cat((size, size), dim=-1)

    def encode(self, reference_boxes: torch.Tensor, proposals: torch.Tensor) -> torch.Tensor:
        """Distances ``(left, top, right, bottom)`` from each reference box's centre to the edges of ``proposals``."""
        centre = 0.5 * (reference_boxes[..., :2] + reference_boxes[..., 2:])
        targets = torch.cat((centre - proposals[..., :2], proposals[..., 2:] - centre), dim=-1)
        return targets / self._sizes(reference_boxes) if self.normalize_by_size else targets

    def decode(self, rel_codes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """The boxes whose edges lie at distances ``rel_codes`` from the centres of ``boxes`` (same leading shape)."""
        boxes = boxes.to(dtype=rel_codes.dtype)
        centre = 0.5 * (boxes[..., :2] + boxes[..., 2:])
        if self.normalize_by_size:
            rel_codes = rel_codes * self._sizes(boxes)
        return torch.cat((centre - rel_codes[..., :2], centre + rel_codes[..., 2:]), dim=-1)


class Matcher:
    """Assigns each prediction the ground-truth element it matches best, when the match is good enough.

    Called on an ``(M, N)`` quality matrix (e.g. the IoU of ``M`` ground-truth boxes with ``N`` predictions), it
    returns ``N`` int64 indices: the best ground truth where its quality is ``>= high_threshold``,
    :attr:`BETWEEN_THRESHOLDS` (-2) where it lies in ``[low_threshold, high_threshold)``, and
    :attr:`BELOW_LOW_THRESHOLD` (-1) below ``low_threshold``.

    Args:
        high_threshold: the quality from which a match counts.
        low_threshold: the quality under which a prediction is a negative.
        allow_low_quality_matches: also match, to its best ground truth, every prediction that is (one of) the
            best for some ground truth, however low the quality: no ground truth is left without a prediction.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        if low_threshold > high_threshold:
            raise ValueError(
                f"low_threshold ({low_threshold}) must not be greater than high_threshold ({high_threshold})"
            )
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> torch.Tensor:
        if match_quality_matrix.dim() != 2:
            raise ValueError(f"match_quality_matrix must be 2-D (M, N), got {tuple(match_quality_matrix.shape)}")
        if match_quality_matrix.numel() == 0:
            if match_quality_matrix.shape[0] == 0:
                raise ValueError("No ground-truth boxes available for one of the images during training")
            raise ValueError("No proposal boxes available for one of the images during training")
        best_quality, best_match = match_quality_matrix.max(dim=0)
        matches = best_match.clone()
        matches[best_quality < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        between = (best_quality >= self.low_threshold) & (best_quality < self.high_threshold)
        matches[between] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            self.set_low_quality_matches_(matches, best_match, match_quality_matrix)
        return matches

    def set_low_quality_matches_(
        self, matches: torch.Tensor, all_matches: torch.Tensor, match_quality_matrix: torch.Tensor
    ) -> None:
        """Give back, in place, their best ground truth (``all_matches``) to the predictions that are the best,
        ties included, for at least one ground truth."""
        best_for_each_gt = match_quality_matrix.max(dim=1, keepdim=True).values
        is_best_for_some_gt = (match_quality_matrix == best_for_each_gt).any(dim=0)
        matches[is_best_for_some_gt] = all_matches[is_best_for_some_gt]


class SSDMatcher(Matcher):
    """SSD's matching: one threshold, and each ground truth also keeps the one prediction that matches it best."""

    def __init__(self, threshold: float) -> None:
        super().__init__(threshold, threshold, allow_low_quality_matches=False)

    def __call__(self, match_quality_matrix: torch.Tensor) -> torch.Tensor:
        matches = super().__call__(match_quality_matrix)
        best_prediction = match_quality_matrix.max(dim=1).indices
        matches[best_prediction] = torch.arange(best_prediction.numel(), device=best_prediction.device)
        return matches


def overwrite_eps(model: nn.Module, eps: float) -> None:
    """Set the ``eps`` of every :class:`FrozenBatchNorm2d` in ``model``: the oldest published detection
    checkpoints were trained with 0.0, the default today is 1e-5."""
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = eps


def retrieve_out_channels(model: nn.Module, size: tuple[int, int]) -> list[int]:
    """The channels of each feature map ``model`` returns for a zero image of ``size`` (width, height), found by
    running it once in eval mode without gradients (its training mode is restored)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            features = model(torch.zeros((1, 3, size[1], size[0]), device=device))
    finally:
        model.train(was_training)
    if isinstance(features, torch.Tensor):
        features = OrderedDict([("0", features)])
    return [x.size(1) for x in features.values()]


def _topk_min(input: torch.Tensor, orig_kval: int, axis: int) -> int:
    """``orig_kval``, or the size of ``input`` along ``axis`` if that is smaller (how many top-k can give)."""
    return min(orig_kval, input.size(axis))
