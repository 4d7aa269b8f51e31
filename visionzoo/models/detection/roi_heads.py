"""The second stage of Faster R-CNN: classify each proposal and refine its box, per class.

In training, proposals (with the ground-truth boxes added) are matched to the ground truth and sampled, and
the head returns its classification and box losses; in eval, the detections of each image after per-class NMS.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...ops import boxes as box_ops
from . import _utils as det_utils

__all__ = ["RoIHeads", "fastrcnn_loss"]

Target = dict[str, torch.Tensor]


def fastrcnn_loss(
    class_logits: torch.Tensor,
    box_regression: torch.Tensor,
    labels: list[torch.Tensor],
    regression_targets: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over the classes of every sampled proposal, and smooth L1 (beta 1/9) between the true
    class's predicted deltas and the targets on the positives, summed and divided by the number of proposals."""
    labels = torch.cat(labels)
    regression_targets = torch.cat(regression_targets)
    classification_loss = F.cross_entropy(class_logits, labels)
    positive = torch.nonzero(labels > 0).flatten()
    per_class = box_regression.reshape(class_logits.shape[0], -1, 4)
    box_loss = F.smooth_l1_loss(
        per_class[positive, labels[positive]], regression_targets[positive], beta=1 / 9, reduction="sum"
    )
    return classification_loss, box_loss / labels.numel()


class RoIHeads(nn.Module):
    """Pools each proposal's features, runs the box head and predictor, and trains or post-processes them.

    Args:
        box_roi_pool: ``(features, proposals, image_shapes) -> (R, C, h, w)`` (a MultiScaleRoIAlign).
        box_head: pooled features to one vector per proposal (e.g. ``TwoMLPHead``).
        box_predictor: that vector to class logits and per-class box deltas (``FastRCNNPredictor``).
        fg_iou_thresh: a proposal with at least this IoU with a ground-truth box takes its class (training).
        bg_iou_thresh: a proposal whose best IoU is below this is background (training).
        batch_size_per_image: proposals sampled per image for the losses.
        positive_fraction: the largest share of foreground among them.
        bbox_reg_weights: the box coder's weights (default ``(10, 10, 5, 5)``).
        score_thresh: detections need a class probability above this (eval).
        nms_thresh: the IoU above which NMS drops the lower-scored detection of the same class (eval).
        detections_per_img: the most detections returned per image (eval).
    """

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        bbox_reg_weights: tuple[float, float, float, float] | None,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
    ) -> None:
        super().__init__()
        self.box_similarity = box_ops.box_iou
        self.proposal_matcher = det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.fg_bg_sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_coder = det_utils.BoxCoder(
            bbox_reg_weights if bbox_reg_weights is not None else (10.0, 10.0, 5.0, 5.0)
        )
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

    def assign_targets_to_proposals(
        self, proposals: list[torch.Tensor], gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per image, each proposal's matched ground-truth index (0 where unmatched) and its class label
        (0 background, -1 ignored between the thresholds)."""
        matched_idxs, labels = [], []
        for proposals_in_image, boxes, classes in zip(proposals, gt_boxes, gt_labels):
            if boxes.numel() == 0:  # an image without objects: every proposal is background
                zeros = torch.zeros(proposals_in_image.shape[0], dtype=torch.int64, device=proposals_in_image.device)
                matched_idxs.append(zeros)
                labels.append(zeros.clone())
                continue
            matched = self.proposal_matcher(self.box_similarity(boxes, proposals_in_image))
            clamped = matched.clamp(min=0)
            label = classes[clamped].to(torch.int64)
            label[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
            label[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1  # the sampler skips these
            matched_idxs.append(clamped)
            labels.append(label)
        return matched_idxs, labels

    def subsample(self, labels: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per image, the indices of the sampled proposals (foreground and background), in proposal order."""
        positive, negative = self.fg_bg_sampler(labels)
        return [torch.nonzero(p | n).flatten() for p, n in zip(positive, negative)]

    def add_gt_proposals(self, proposals: list[torch.Tensor], gt_boxes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each image's proposals followed by its ground-truth boxes (so that every object has a good proposal)."""
        return [torch.cat((p, gt)) for p, gt in zip(proposals, gt_boxes)]

    def check_targets(self, targets: list[Target] | None) -> None:
        """Raise ``ValueError`` unless every target has ``boxes`` and ``labels``."""
        if targets is None:
            raise ValueError("targets should not be None")
        for key in ("boxes", "labels"):
            if not all(key in t for t in targets):
                raise ValueError(f"Every element of targets should have a {key} key")

    def select_training_samples(
        self, proposals: list[torch.Tensor], targets: list[Target] | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], tuple[torch.Tensor, ...]]:
        """The sampled proposals of each image with their matched ground-truth indices, labels and box targets."""
        self.check_targets(targets)
        dtype, device = proposals[0].dtype, proposals[0].device
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, [t["labels"] for t in targets])
        sampled = self.subsample(labels)
        proposals = [p[s] for p, s in zip(proposals, sampled)]
        labels = [label[s] for label, s in zip(labels, sampled)]
        matched_idxs = [m[s] for m, s in zip(matched_idxs, sampled)]
        # Background-only images regress to a dummy box: their targets are never used (no positives).
        matched_boxes = [
            (boxes if boxes.numel() else torch.zeros((1, 4), dtype=dtype, device=device))[m]
            for boxes, m in zip(gt_boxes, matched_idxs)
        ]
        return proposals, matched_idxs, labels, self.box_coder.encode(matched_boxes, proposals)

    def postprocess_detections(
        self,
        class_logits: torch.Tensor,
        box_regression: torch.Tensor,
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """Per image: every (proposal, foreground class) pair as a detection, clipped, above ``score_thresh``,
        not tiny, after per-class NMS, the ``detections_per_img`` best. Returns boxes, scores, labels."""
        num_classes = class_logits.shape[-1]
        counts = [len(p) for p in proposals]
        all_boxes = self.box_coder.decode(box_regression, proposals).split(counts)
        all_scores = F.softmax(class_logits, -1).split(counts)
        final_boxes, final_scores, final_labels = [], [], []
        for boxes, scores, image_shape in zip(all_boxes, all_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = torch.arange(num_classes, device=class_logits.device).expand_as(scores)
            # Drop the background class, then treat each class's prediction as a detection of its own.
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].flatten(), labels[:, 1:].flatten()
            keep = torch.nonzero(scores > self.score_thresh).flatten()
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            final_boxes.append(boxes[keep])
            final_scores.append(scores[keep])
            final_labels.append(labels[keep])
        return final_boxes, final_scores, final_labels

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[Target] | None = None,
    ) -> tuple[list[Target], dict[str, torch.Tensor]]:
        """In training, ``([], {"loss_classifier", "loss_box_reg"})``; in eval, one dict of ``boxes``, ``labels``
        and ``scores`` per image, in the (resized) image's coordinates, and no losses.

        Raises:
            TypeError: target boxes not floating point or labels not int64.
            ValueError: training without targets, or targets without boxes or labels.
        """
        if targets is not None:
            self.check_targets(targets)
        for target in targets or []:
            if not target["boxes"].is_floating_point():
                raise TypeError(f"target boxes must of float type, instead got {target['boxes'].dtype}")
            if target["labels"].dtype != torch.int64:
                raise TypeError(f"target labels must of int64 type, instead got {target['labels'].dtype}")
        if self.training:
            proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        return [{"boxes": b, "labels": c, "scores": s} for b, s, c in zip(boxes, scores, labels)], {}
