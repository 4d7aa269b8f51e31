"""Region Proposal Network (Ren et al., "Faster R-CNN", 2015): class-agnostic object proposals from anchors.

A small convolutional head scores every anchor for "object or not" and regresses a box from it; the best
boxes of each image, clipped, de-duplicated by NMS per feature level, are the proposals the box head
classifies. In training it also returns its two losses, on anchors sampled per image.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...ops import boxes as box_ops
from ...ops.misc import Conv2dNormActivation
from . import _utils as det_utils
from .anchor_utils import AnchorGenerator
from .image_list import ImageList

__all__ = ["RPNHead", "RegionProposalNetwork", "concat_box_prediction_layers", "permute_and_flatten"]


class RPNHead(nn.Module):
    """Shared 3x3 convolution(s) with ReLU, then a 1x1 objectness logit and a 1x1 box regression per anchor.

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per position.
        conv_depth: number of shared 3x3 convolutions.
    """

    # Version 2 wraps the shared convolution in Conv2dNormActivation blocks: "conv.weight" became "conv.0.0.weight".
    _version = 2

    def __init__(self, in_channels: int, num_anchors: int, conv_depth: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            *(Conv2dNormActivation(in_channels, in_channels, kernel_size=3, norm_layer=None) for _ in range(conv_depth))
        )
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, kernel_size=1, stride=1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=1, stride=1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict, *args: Any) -> None:
        if local_metadata.get("version") is None or local_metadata["version"] < 2:
            for kind in ("weight", "bias"):
                if f"{prefix}conv.{kind}" in state_dict:
                    state_dict[f"{prefix}conv.0.0.{kind}"] = state_dict.pop(f"{prefix}conv.{kind}")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    def forward(self, x: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per feature map, the objectness logits ``(N, A, H, W)`` and box deltas ``(N, 4 * A, H, W)``."""
        logits, deltas = [], []
        for feature in x:
            shared = self.conv(feature)
            logits.append(self.cls_logits(shared))
            deltas.append(self.bbox_pred(shared))
        return logits, deltas


def permute_and_flatten(layer: torch.Tensor, N: int, A: int, C: int, H: int, W: int) -> torch.Tensor:
    """``(N, A * C, H, W)`` predictions as ``(N, H * W * A, C)``: position-major, the anchors of a position together."""
    return layer.view(N, A, C, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, C)


def concat_box_prediction_layers(
    box_cls: list[torch.Tensor], box_regression: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-level head outputs as two flat tensors in the anchors' order: scores ``(N * sum HWA, C)`` and
    deltas ``(N * sum HWA, 4)``, images outermost."""
    scores, deltas = [], []
    for cls_level, regression_level in zip(box_cls, box_regression):
        n, a_times_c, h, w = cls_level.shape
        a = regression_level.shape[1] // 4
        scores.append(permute_and_flatten(cls_level, n, a, a_times_c // a, h, w))
        deltas.append(permute_and_flatten(regression_level, n, a, 4, h, w))
    return torch.cat(scores, dim=1).flatten(0, -2), torch.cat(deltas, dim=1).reshape(-1, 4)


def _check_train_test_counts(name: str, value: Any) -> None:
    if not isinstance(value, dict) or not {"training", "testing"} <= value.keys():
        raise ValueError(f"{name} must be a dict with 'training' and 'testing' counts, got {value!r}")


class RegionProposalNetwork(nn.Module):
    """Proposals from anchors: scores and regresses them with ``head``, keeps the best per image.

    Args:
        anchor_generator: the anchors of each feature map.
        head: returns per-level objectness logits and box deltas (an :class:`RPNHead`).
        fg_iou_thresh: an anchor with at least this IoU with a ground-truth box is a positive (training).
        bg_iou_thresh: an anchor whose best IoU is below this is a negative (training).
        batch_size_per_image: anchors sampled per image for the losses.
        positive_fraction: the largest share of positives among them.
        pre_nms_top_n: ``{"training": n, "testing": n}``: the best anchors kept per level before NMS.
        post_nms_top_n: ``{"training": n, "testing": n}``: proposals kept per image after NMS.
        nms_thresh: the IoU above which NMS drops the lower-scored proposal.
        score_thresh: proposals need at least this objectness probability.
    """

    def __init__(
        self,
        anchor_generator: AnchorGenerator,
        head: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        pre_nms_top_n: dict[str, int],
        post_nms_top_n: dict[str, int],
        nms_thresh: float,
        score_thresh: float = 0.0,
    ) -> None:
        super().__init__()
        _check_train_test_counts("pre_nms_top_n", pre_nms_top_n)
        _check_train_test_counts("post_nms_top_n", post_nms_top_n)
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.box_similarity = box_ops.box_iou
        # Every ground-truth box gets at least its best anchors, even below fg_iou_thresh.
        self.proposal_matcher = det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.fg_bg_sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre_nms_top_n = pre_nms_top_n
        self._post_nms_top_n = post_nms_top_n
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = 1e-3

    def pre_nms_top_n(self) -> int:
        """The best anchors kept per level before NMS, in the current mode."""
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        """The proposals kept per image after NMS, in the current mode."""
        return self._post_nms_top_n["training" if self.training else "testing"]

    def assign_targets_to_anchors(
        self, anchors: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per image, each anchor's label (1 object, 0 background, -1 ignored; float32) and the ground-truth box
        it regresses to (any box for non-objects: their regression is not trained)."""
        labels, matched_boxes = [], []
        for anchors_per_image, target in zip(anchors, targets):
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:  # an image without objects: every anchor is background
                device = anchors_per_image.device
                matched_boxes.append(torch.zeros(anchors_per_image.shape, dtype=torch.float32, device=device))
                labels.append(torch.zeros(anchors_per_image.shape[0], dtype=torch.float32, device=device))
                continue
            matched = self.proposal_matcher(self.box_similarity(gt_boxes, anchors_per_image))
            matched_boxes.append(gt_boxes[matched.clamp(min=0)])
            label = (matched >= 0).to(torch.float32)
            label[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(label)
        return labels, matched_boxes

    def _get_top_n_idx(self, objectness: torch.Tensor, num_anchors_per_level: list[int]) -> torch.Tensor:
        """Indices (into all anchors) of the ``pre_nms_top_n`` best anchors of each level, per image."""
        indices, offset = [], 0
        for level in objectness.split(num_anchors_per_level, 1):
            top = level.topk(det_utils._topk_min(level, self.pre_nms_top_n(), 1), dim=1).indices
            indices.append(top + offset)
            offset += level.shape[1]
        return torch.cat(indices, dim=1)

    def filter_proposals(
        self,
        proposals: torch.Tensor,
        objectness: torch.Tensor,
        image_shapes: list[tuple[int, int]],
        num_anchors_per_level: list[int],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The proposals of each image: the best per level, clipped to the image, without tiny or low-scored
        boxes, after NMS within each level, the ``post_nms_top_n`` best. Returns boxes and probabilities."""
        num_images = proposals.shape[0]
        objectness = objectness.detach().reshape(num_images, -1)
        levels = torch.repeat_interleave(
            torch.arange(len(num_anchors_per_level), device=proposals.device),
            torch.tensor(num_anchors_per_level, device=proposals.device),
        )
        top = self._get_top_n_idx(objectness, num_anchors_per_level)
        rows = torch.arange(num_images, device=proposals.device)[:, None]
        probabilities = torch.sigmoid(objectness[rows, top])
        levels, proposals = levels[top], proposals[rows, top]

        final_boxes, final_scores = [], []
        for boxes, scores, level, image_shape in zip(proposals, probabilities, levels, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            keep = box_ops.remove_small_boxes(boxes, self.min_size)
            boxes, scores, level = boxes[keep], scores[keep], level[keep]
            keep = torch.nonzero(scores >= self.score_thresh).flatten()
            boxes, scores, level = boxes[keep], scores[keep], level[keep]
            keep = box_ops.batched_nms(boxes, scores, level, self.nms_thresh)[: self.post_nms_top_n()]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
        return final_boxes, final_scores

    def compute_loss(
        self,
        objectness: torch.Tensor,
        pred_bbox_deltas: torch.Tensor,
        labels: list[torch.Tensor],
        regression_targets: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The objectness loss (binary cross-entropy on the sampled anchors) and the box loss (smooth L1 with
        beta 1/9 on the sampled positives, summed, divided by the number of sampled anchors)."""
        positive_masks, negative_masks = self.fg_bg_sampler(labels)
        positive = torch.nonzero(torch.cat(positive_masks)).flatten()
        negative = torch.nonzero(torch.cat(negative_masks)).flatten()
        sampled = torch.cat([positive, negative])
        labels, regression_targets = torch.cat(labels), torch.cat(regression_targets)
        box_loss = (
            F.smooth_l1_loss(pred_bbox_deltas[positive], regression_targets[positive], beta=1 / 9, reduction="sum")
            / sampled.numel()
        )
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels[sampled])
        return objectness_loss, box_loss

    def forward(
        self,
        images: ImageList,
        features: dict[str, torch.Tensor],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Proposals (one ``(P_i, 4)`` tensor per image) and, in training, ``loss_objectness`` and
        ``loss_rpn_box_reg`` (an empty dict in eval mode).

        Raises:
            ValueError: training without ``targets``.
        """
        if self.training and targets is None:
            raise ValueError("targets should not be None: the RPN needs ground-truth boxes in training mode")
        features = list(features.values())
        objectness, pred_bbox_deltas = self.head(features)
        anchors = self.anchor_generator(images, features)
        num_anchors_per_level = [o.shape[1] * o.shape[2] * o.shape[3] for o in objectness]
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        # Proposals are not differentiated through: the box head sees them as given boxes.
        proposals = self.box_coder.decode(pred_bbox_deltas.detach(), anchors).view(len(anchors), -1, 4)
        boxes, _ = self.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)

        losses = {}
        if self.training:
            labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched_gt_boxes, anchors)
            loss_objectness, loss_rpn_box_reg = self.compute_loss(
                objectness, pred_bbox_deltas, labels, regression_targets
            )
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses
