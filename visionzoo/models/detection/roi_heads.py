"""The second stage of the R-CNN detectors: classify each proposal and refine its box, per class; optionally
predict an instance mask (Mask R-CNN) or keypoint heatmaps (Keypoint R-CNN) inside each box.

In training, proposals (with the ground-truth boxes added) are matched to the ground truth and sampled, and
the head returns its classification and box losses (plus the mask or keypoint loss on the positive proposals);
in eval, the detections of each image after per-class NMS, with their mask probabilities or keypoints.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...ops import boxes as box_ops
from ...ops._library import operator
from ...ops.roi_align import roi_align
from . import _utils as det_utils

__all__ = [
    "RoIHeads",
    "fastrcnn_loss",
    "heatmaps_to_keypoints",
    "keypointrcnn_inference",
    "keypointrcnn_loss",
    "keypoints_to_heatmap",
    "maskrcnn_inference",
    "maskrcnn_loss",
    "paste_masks_in_image",
    "project_masks_on_boxes",
]

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


# --------------------------------------------------------------------------------------------------
# Masks (Mask R-CNN)
# --------------------------------------------------------------------------------------------------


def project_masks_on_boxes(
    gt_masks: torch.Tensor, boxes: torch.Tensor, matched_idxs: torch.Tensor, size: int
) -> torch.Tensor:
    """The part of each matched ground-truth mask under its proposal, resampled to ``size x size`` by RoIAlign.

    Args:
        gt_masks: one image's ``(G, H, W)`` binary masks.
        boxes: ``(R, 4)`` proposals in the same image's coordinates.
        matched_idxs: ``(R,)`` the ground-truth index of each proposal.

    Returns:
        ``(R, size, size)`` float targets in ``[0, 1]``.
    """
    # Each mask is its own "image" of the batch RoIAlign samples from: the RoI's batch index is the mask's index.
    rois = torch.cat((matched_idxs.to(boxes)[:, None], boxes), dim=1)
    return roi_align(gt_masks[:, None].to(rois), rois, (size, size), 1.0)[:, 0]


def maskrcnn_loss(
    mask_logits: torch.Tensor,
    proposals: list[torch.Tensor],
    gt_masks: list[torch.Tensor],
    gt_labels: list[torch.Tensor],
    mask_matched_idxs: list[torch.Tensor],
) -> torch.Tensor:
    """Binary cross-entropy between the logits of each positive proposal's true class and its projected
    ground-truth mask, averaged over every pixel of every proposal (zero, with a gradient, without positives)."""
    size = mask_logits.shape[-1]
    labels = torch.cat([classes[idxs] for classes, idxs in zip(gt_labels, mask_matched_idxs)])
    targets = torch.cat(
        [project_masks_on_boxes(m, p, i, size) for m, p, i in zip(gt_masks, proposals, mask_matched_idxs)]
    )
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    own_class = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return F.binary_cross_entropy_with_logits(own_class, targets)


def maskrcnn_inference(mask_logits: torch.Tensor, labels: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each detection's mask probabilities for its predicted class, ``(N, 1, M, M)`` per image."""
    classes = torch.cat(labels)
    probabilities = mask_logits[torch.arange(classes.shape[0], device=classes.device), classes].sigmoid()
    return list(probabilities[:, None].split([label.shape[0] for label in labels]))


def _expand_boxes(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    """``boxes`` scaled by ``scale`` about their centres."""
    half_width = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    half_height = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    center_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    center_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return torch.stack(
        (center_x - half_width, center_y - half_height, center_x + half_width, center_y + half_height), dim=1
    )


def paste_masks_in_image(
    masks: torch.Tensor, boxes: torch.Tensor, img_shape: tuple[int, int], padding: int = 1
) -> torch.Tensor:
    """Paste each detection's ``M x M`` mask into an empty image of ``img_shape`` (height, width), stretched
    bilinearly over its box.

    The masks get ``padding`` zero pixels on every side, and their boxes grow by the same proportion, so that a
    mask fades out at its box's border instead of ending in a hard edge. Box corners are truncated to whole
    pixels and the box covers ``x1..x2`` inclusive; the part of a box outside the image is cut off.

    Args:
        masks: ``(N, 1, M, M)`` probabilities.
        boxes: ``(N, 4)`` boxes (x1, y1, x2, y2) in the image's pixel coordinates.

    Returns:
        ``(N, 1, H, W)``, zero outside each box.
    """
    if masks.dim() != 4 or masks.shape[1] != 1 or boxes.shape != (masks.shape[0], 4):
        raise ValueError(
            f"expected masks of shape (N, 1, M, M) and boxes of shape (N, 4), got {tuple(masks.shape)} and "
            f"{tuple(boxes.shape)}"
        )
    return _paste_masks(masks, boxes, int(img_shape[0]), int(img_shape[1]), padding)


def _pasted_shape(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, padding: int) -> torch.Tensor:
    return masks.new_empty((masks.shape[0], 1, height, width))


@operator("paste_masks", _pasted_shape)
def _paste_masks(masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, padding: int) -> torch.Tensor:
    """:func:`paste_masks_in_image` as one operator (a loop over boxes of data-dependent sizes)."""
    side = masks.shape[-1]
    masks = F.pad(masks, (padding,) * 4)
    boxes = _expand_boxes(boxes, (side + 2 * padding) / side).to(torch.int64)
    pasted = masks.new_zeros((masks.shape[0], 1, height, width))
    for mask, out, (x1, y1, x2, y2) in zip(masks, pasted, boxes.tolist()):
        # The whole box's resampled mask, then the part of it inside the image.
        stretched = F.interpolate(mask[None], size=(y2 - y1 + 1, x2 - x1 + 1), mode="bilinear", align_corners=False)
        top, left, bottom, right = max(y1, 0), max(x1, 0), min(y2 + 1, height), min(x2 + 1, width)
        if bottom > top and right > left:
            out[0, top:bottom, left:right] = stretched[0, 0, top - y1 : bottom - y1, left - x1 : right - x1]
    return pasted


# --------------------------------------------------------------------------------------------------
# Keypoints (Keypoint R-CNN)
# --------------------------------------------------------------------------------------------------


def keypoints_to_heatmap(
    keypoints: torch.Tensor, rois: torch.Tensor, heatmap_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each keypoint's cell in its RoI's ``heatmap_size x heatmap_size`` grid.

    Args:
        keypoints: ``(R, K, 3)`` x, y, visibility.
        rois: ``(R, 4)`` boxes.

    Returns:
        ``(R, K)`` flat cell indices (``y * heatmap_size + x``, 0 where invalid) and ``(R, K)`` validity (1 for a
        visible keypoint inside its RoI, else 0).
    """
    x1, y1, x2, y2 = (rois[:, i : i + 1] for i in range(4))
    x, y = keypoints[..., 0], keypoints[..., 1]
    column = ((x - x1) * (heatmap_size / (x2 - x1))).floor().long()
    row = ((y - y1) * (heatmap_size / (y2 - y1))).floor().long()
    # A keypoint exactly on the far edge belongs to the last cell, not to one past it.
    column[x == x2] = heatmap_size - 1
    row[y == y2] = heatmap_size - 1
    inside = (column >= 0) & (row >= 0) & (column < heatmap_size) & (row < heatmap_size)
    valid = (inside & (keypoints[..., 2] > 0)).long()
    return (row * heatmap_size + column) * valid, valid


def keypointrcnn_loss(
    keypoint_logits: torch.Tensor,
    proposals: list[torch.Tensor],
    gt_keypoints: list[torch.Tensor],
    keypoint_matched_idxs: list[torch.Tensor],
) -> torch.Tensor:
    """Cross-entropy over the heatmap cells of each valid keypoint of each positive proposal (a softmax per
    keypoint over its ``H x W`` map); zero, with a gradient, when there is none."""
    num_rois, num_keypoints, height, width = keypoint_logits.shape
    if height != width:
        raise ValueError(f"keypoint heatmaps must be square, got {height} x {width}")
    cells, valid = [], []
    for boxes, keypoints, idxs in zip(proposals, gt_keypoints, keypoint_matched_idxs):
        image_cells, image_valid = keypoints_to_heatmap(keypoints[idxs], boxes, height)
        cells.append(image_cells.flatten())
        valid.append(image_valid.flatten())
    targets = torch.cat(cells)
    chosen = torch.nonzero(torch.cat(valid)).flatten()
    if targets.numel() == 0 or chosen.numel() == 0:
        return keypoint_logits.sum() * 0
    logits = keypoint_logits.reshape(num_rois * num_keypoints, height * width)
    return F.cross_entropy(logits[chosen], targets[chosen])


def heatmaps_to_keypoints(maps: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The most likely position of each keypoint in each RoI, and its heatmap score.

    Each RoI's heatmaps are upsampled (bicubic) to the RoI's size in pixels, rounded up; a keypoint sits at the
    centre of its best cell (continuous coordinate = discrete + 0.5, Heckbert 1990).

    Args:
        maps: ``(R, K, H, W)`` heatmap logits.
        rois: ``(R, 4)`` boxes (x1, y1, x2, y2).

    Returns:
        ``(R, K, 3)`` keypoints (x, y, 1) in the boxes' coordinates and ``(R, K)`` scores (the upsampled logits).
    """
    return _keypoints_from_heatmaps(maps, rois)


def _keypoints_shape(maps: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    num_rois, num_keypoints = maps.shape[:2]
    return maps.new_empty((num_rois, num_keypoints, 3), dtype=torch.float32), maps.new_empty(
        (num_rois, num_keypoints), dtype=torch.float32
    )


@operator("heatmaps_to_keypoints", _keypoints_shape)
def _keypoints_from_heatmaps(maps: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`heatmaps_to_keypoints` as one operator (each RoI's maps upsampled to its own size)."""
    num_keypoints = maps.shape[1]
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    keypoints = torch.zeros((len(rois), num_keypoints, 3), dtype=torch.float32, device=maps.device)
    scores = torch.zeros((len(rois), num_keypoints), dtype=torch.float32, device=maps.device)
    if len(rois) == 0:
        return keypoints, scores
    keypoints[..., 2] = 1
    map_widths, map_heights = widths.ceil().long().tolist(), heights.ceil().long().tolist()
    which = torch.arange(num_keypoints, device=maps.device)
    for i, (map_height, map_width) in enumerate(zip(map_heights, map_widths)):
        upsampled = F.interpolate(maps[i][:, None], size=(map_height, map_width), mode="bicubic", align_corners=False)
        best = upsampled.reshape(num_keypoints, -1).argmax(dim=1)
        row, column = best // map_width, best % map_width
        # The upsampled grid is whole pixels; scale its cell centres back to the box's exact size.
        keypoints[i, :, 0] = (column.float() + 0.5) * (widths[i] / map_width) + rois[i, 0]
        keypoints[i, :, 1] = (row.float() + 0.5) * (heights[i] / map_height) + rois[i, 1]
        scores[i] = upsampled[which, 0, row, column]
    return keypoints, scores


def keypointrcnn_inference(
    keypoint_logits: torch.Tensor, boxes: list[torch.Tensor]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per image, its detections' keypoints ``(N, K, 3)`` and keypoint scores ``(N, K)``."""
    keypoints, scores = [], []
    for maps, image_boxes in zip(keypoint_logits.split([b.shape[0] for b in boxes]), boxes):
        image_keypoints, image_scores = heatmaps_to_keypoints(maps, image_boxes)
        keypoints.append(image_keypoints)
        scores.append(image_scores)
    return keypoints, scores


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
        mask_roi_pool, mask_head, mask_predictor: the mask branch (Mask R-CNN), all three or none: pooled
            features of each box to ``(R, num_classes, M, M)`` mask logits.
        keypoint_roi_pool, keypoint_head, keypoint_predictor: the keypoint branch (Keypoint R-CNN), all three or
            none: pooled features of each box to ``(R, K, H, H)`` heatmap logits.
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
        mask_roi_pool: nn.Module | None = None,
        mask_head: nn.Module | None = None,
        mask_predictor: nn.Module | None = None,
        keypoint_roi_pool: nn.Module | None = None,
        keypoint_head: nn.Module | None = None,
        keypoint_predictor: nn.Module | None = None,
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
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor
        self.keypoint_roi_pool = keypoint_roi_pool
        self.keypoint_head = keypoint_head
        self.keypoint_predictor = keypoint_predictor

    def has_mask(self) -> bool:
        """Whether the mask branch is complete (pooler, head and predictor)."""
        return None not in (self.mask_roi_pool, self.mask_head, self.mask_predictor)

    def has_keypoint(self) -> bool:
        """Whether the keypoint branch is complete (pooler, head and predictor)."""
        return None not in (self.keypoint_roi_pool, self.keypoint_head, self.keypoint_predictor)

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
        """Raise ``ValueError`` unless every target has ``boxes`` and ``labels`` (and ``masks`` or ``keypoints``
        for the branches this head has)."""
        if targets is None:
            raise ValueError("targets should not be None")
        keys = ["boxes", "labels"] + ["masks"] * self.has_mask() + ["keypoints"] * self.has_keypoint()
        for key in keys:
            for index, target in enumerate(targets):
                if key not in target:
                    raise ValueError(f"Every element of targets should have a {key} key (target {index} has none)")

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
        counts = [p.shape[0] for p in proposals]
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

    def _positives(
        self, proposals: list[torch.Tensor], matched_idxs: list[torch.Tensor], labels: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The foreground proposals of each image and their ground-truth indices: what the mask and keypoint
        branches train on."""
        positive = [torch.nonzero(label > 0).flatten() for label in labels]
        return [p[i] for p, i in zip(proposals, positive)], [m[i] for m, i in zip(matched_idxs, positive)]

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[Target] | None = None,
    ) -> tuple[list[Target], dict[str, torch.Tensor]]:
        """In training, ``([], losses)``: ``loss_classifier`` and ``loss_box_reg``, plus ``loss_mask`` or
        ``loss_keypoint`` with those branches. In eval, one dict of ``boxes``, ``labels`` and ``scores`` per image,
        in the (resized) image's coordinates, plus ``masks`` (``(N, 1, M, M)`` probabilities in each box) or
        ``keypoints`` (``(N, K, 3)``) and ``keypoints_scores`` (``(N, K)``); and no losses.

        Raises:
            TypeError: target boxes not floating point, labels not int64, keypoints not float32.
            ValueError: training without targets, or targets without boxes, labels, masks or keypoints.
        """
        if targets is not None:
            self.check_targets(targets)
        for target in targets or []:
            if not target["boxes"].is_floating_point():
                raise TypeError(f"target boxes must of float type, instead got {target['boxes'].dtype}")
            if target["labels"].dtype != torch.int64:
                raise TypeError(f"target labels must of int64 type, instead got {target['labels'].dtype}")
            if self.has_keypoint() and target["keypoints"].dtype != torch.float32:
                raise TypeError(f"target keypoints must of float type, instead got {target['keypoints'].dtype}")
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        result: list[Target] = []
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
            # The mask and keypoint branches learn from the foreground proposals only.
            branch_boxes, branch_idxs = self._positives(proposals, matched_idxs, labels)
        else:
            boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
            result = [{"boxes": b, "labels": c, "scores": s} for b, s, c in zip(boxes, scores, labels)]
            branch_boxes = boxes
        if self.has_mask():
            pooled = self.mask_roi_pool(features, branch_boxes, image_shapes)
            mask_logits = self.mask_predictor(self.mask_head(pooled))
            if self.training:
                gt_masks = [t["masks"] for t in targets]
                gt_labels = [t["labels"] for t in targets]
                losses["loss_mask"] = maskrcnn_loss(mask_logits, branch_boxes, gt_masks, gt_labels, branch_idxs)
            else:
                for detections, masks in zip(result, maskrcnn_inference(mask_logits, labels)):
                    detections["masks"] = masks
        if self.has_keypoint():
            pooled = self.keypoint_roi_pool(features, branch_boxes, image_shapes)
            keypoint_logits = self.keypoint_predictor(self.keypoint_head(pooled))
            if self.training:
                gt_keypoints = [t["keypoints"] for t in targets]
                losses["loss_keypoint"] = keypointrcnn_loss(keypoint_logits, branch_boxes, gt_keypoints, branch_idxs)
            else:
                keypoints, keypoint_scores = keypointrcnn_inference(keypoint_logits, branch_boxes)
                for detections, points, point_scores in zip(result, keypoints, keypoint_scores):
                    detections["keypoints"] = points
                    detections["keypoints_scores"] = point_scores
        return result, losses
