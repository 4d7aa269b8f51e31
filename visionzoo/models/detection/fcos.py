"""FCOS: an anchor-free single-stage detector that regresses, from every position of every pyramid level, the
distances to the four sides of the object it lies in, and how central it lies (its centre-ness).

Tian et al., "FCOS: Fully Convolutional One-Stage Object Detection" (2019), https://arxiv.org/abs/1904.01355,
and "FCOS: A Simple and Strong Anchor-free Object Detector" (2020), https://arxiv.org/abs/2006.09214 (centre
sampling, GIoU loss, the centre-ness branch on the regression tower). Positions are handled as one square
"anchor" per position whose side is the level's stride, so the shared anchor generator serves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...ops.feature_pyramid_network import LastLevelP6P7
from ...ops.losses import generalized_box_iou_loss, sigmoid_focal_loss
from ...ops.misc import FrozenBatchNorm2d
from .._api import WeightsEnum, register_model
from .._heads import head_width
from .._weights import detection_entry
from ..resnet import ResNet50_Weights, resnet50
from ._single_stage import PriorConv2d, SingleStageDetector, flatten_per_position, init_small_normal
from ._utils import BoxLinearCoder
from .anchor_utils import AnchorGenerator
from .backbone_utils import _build_detector, _resnet_fpn_extractor
from .transform import GeneralizedRCNNTransform

__all__ = [
    "FCOS",
    "FCOSHead",
    "FCOSClassificationHead",
    "FCOSRegressionHead",
    "FCOS_ResNet50_FPN_Weights",
    "fcos_resnet50_fpn",
]

Target = dict[str, torch.Tensor]
NormLayer = Callable[..., nn.Module]


def _flat_tower(in_channels: int, depth: int, norm_layer: NormLayer | None) -> nn.Sequential:
    """``depth`` times conv 3x3, norm (group norm of 32 groups by default), ReLU, as one flat ``Sequential``
    (the checkpoints' keys: ``conv.0`` conv, ``conv.1`` norm, ``conv.3`` next conv, ...)."""
    norm_layer = partial(nn.GroupNorm, 32) if norm_layer is None else norm_layer
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(in_channels, in_channels, 3, 1, 1), norm_layer(in_channels), nn.ReLU()]
    return nn.Sequential(*layers)


class FCOSClassificationHead(nn.Module):
    """A tower of ``num_convs`` conv-norm-ReLU blocks, then one logit per position (anchor) and class.

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per position (1 for FCOS).
        num_classes: classes, background included.
        num_convs: depth of the tower.
        prior_probability: every class's probability at initialisation.
        norm_layer: normalisation in the tower (default group norm with 32 groups).
    """

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        num_convs: int = 4,
        prior_probability: float = 0.01,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.conv = _flat_tower(in_channels, num_convs, norm_layer)
        init_small_normal(self.conv)
        self.cls_logits = PriorConv2d(in_channels, num_anchors * num_classes, prior_probability)

    def _reset_classifier(self, num_classes: int) -> None:
        old = self.cls_logits
        self.cls_logits = PriorConv2d(head_width(old), self.num_anchors * num_classes, old.prior_probability)
        self.num_classes = num_classes

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Per-level feature maps to ``(N, sum H * W * A, num_classes)`` logits."""
        return flatten_per_position([self.cls_logits(self.conv(level)) for level in x], self.num_classes)


class FCOSRegressionHead(nn.Module):
    """A tower of ``num_convs`` conv-norm-ReLU blocks, then per position the four (non-negative) distances to the
    box sides, relative to the level's stride, and a centre-ness logit.

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per position (1 for FCOS).
        num_convs: depth of the tower.
        norm_layer: normalisation in the tower (default group norm with 32 groups).
    """

    def __init__(
        self, in_channels: int, num_anchors: int, num_convs: int = 4, norm_layer: NormLayer | None = None
    ) -> None:
        super().__init__()
        self.conv = _flat_tower(in_channels, num_convs, norm_layer)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=3, stride=1, padding=1)
        self.bbox_ctrness = nn.Conv2d(in_channels, num_anchors, kernel_size=3, stride=1, padding=1)
        # The output layers first, then the tower: the reference's order of random draws.
        init_small_normal(self.bbox_reg)
        init_small_normal(self.bbox_ctrness)
        init_small_normal(self.conv)

    def forward(self, x: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-level feature maps to ``(N, sum H * W * A, 4)`` distances and ``(N, sum H * W * A, 1)`` logits."""
        distances, centreness = [], []
        for level in x:
            features = self.conv(level)
            distances.append(F.relu(self.bbox_reg(features)))
            centreness.append(self.bbox_ctrness(features))
        return flatten_per_position(distances, 4), flatten_per_position(centreness, 1)


class FCOSHead(nn.Module):
    """The classification head and the regression head (with its centre-ness branch).

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per position (1 for FCOS).
        num_classes: classes, background included.
        num_convs: depth of both towers.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, num_convs: int | None = 4) -> None:
        super().__init__()
        num_convs = 4 if num_convs is None else num_convs
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.classification_head = FCOSClassificationHead(in_channels, num_anchors, num_classes, num_convs)
        self.regression_head = FCOSRegressionHead(in_channels, num_anchors, num_convs)

    def compute_loss(
        self,
        targets: list[Target],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """The focal loss over every position, the GIoU loss and the centre-ness cross-entropy over the foreground
        positions, each summed over the batch and divided by its number of foreground positions."""
        classes, boxes = [], []
        for target, matched in zip(targets, matched_idxs):
            if len(target["labels"]) == 0:
                image_classes = target["labels"].new_zeros((len(matched),))
                image_boxes = target["boxes"].new_zeros((len(matched), 4))
            else:
                image_classes = target["labels"][matched.clip(min=0)]
                image_boxes = target["boxes"][matched.clip(min=0)]
            image_classes[matched < 0] = -1  # background
            classes.append(image_classes)
            boxes.append(image_boxes)
        gt_classes, gt_boxes, all_anchors = torch.stack(classes), torch.stack(boxes), torch.stack(anchors)
        foreground = gt_classes >= 0
        num_foreground = max(1, int(foreground.sum()))

        cls_logits = head_outputs["cls_logits"]
        one_hot = torch.zeros_like(cls_logits)
        one_hot[foreground, gt_classes[foreground]] = 1.0
        loss_cls = sigmoid_focal_loss(cls_logits, one_hot, reduction="sum")

        predicted = self.box_coder.decode(head_outputs["bbox_regression"], all_anchors)
        loss_box = generalized_box_iou_loss(predicted[foreground], gt_boxes[foreground], reduction="sum")

        # Centre-ness: sqrt of (min/max of left, right) times (min/max of top, bottom), of the target distances.
        distances = self.box_coder.encode(all_anchors, gt_boxes)
        left_right, top_bottom = distances[..., [0, 2]], distances[..., [1, 3]]
        ratio_x = left_right.min(dim=-1).values / left_right.max(dim=-1).values
        ratio_y = top_bottom.min(dim=-1).values / top_bottom.max(dim=-1).values
        centreness = torch.sqrt(ratio_x * ratio_y)
        predicted_centreness = head_outputs["bbox_ctrness"].squeeze(dim=2)
        loss_ctrness = F.binary_cross_entropy_with_logits(
            predicted_centreness[foreground], centreness[foreground], reduction="sum"
        )
        return {
            "classification": loss_cls / num_foreground,
            "bbox_regression": loss_box / num_foreground,
            "bbox_ctrness": loss_ctrness / num_foreground,
        }

    def forward(self, x: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        distances, centreness = self.regression_head(x)
        return {"cls_logits": self.classification_head(x), "bbox_regression": distances, "bbox_ctrness": centreness}


class FCOS(SingleStageDetector):
    """FCOS around any backbone that returns feature maps of ``backbone.out_channels`` channels.

    In training, a position is foreground for a box when it lies inside the box, within
    ``center_sampling_radius`` strides of its centre, and the box's largest side distance suits the position's
    level (4 to 8 strides; the finest and coarsest levels are open-ended); of several such boxes, the smallest wins.
    A detection's score is the geometric mean of its class probability and its centre-ness. See
    :class:`SingleStageDetector` for the forward and the postprocessing.

    Args:
        backbone: returns one feature map or an ordered dict of them; must have an ``out_channels`` attribute.
        num_classes: classes including the background.
        min_size, max_size, image_mean, image_std: the input transform (see ``GeneralizedRCNNTransform``).
        anchor_generator: one square anchor per position whose size is the level's stride (default strides 8 to
            128).
        head: default an :class:`FCOSHead`.
        center_sampling_radius: in strides.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: the postprocessing.
        **kwargs: further ``GeneralizedRCNNTransform`` arguments.

    Raises:
        ValueError: a backbone without ``out_channels``, an anchor generator with more than one anchor per position.
        TypeError: an anchor generator of another type.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        anchor_generator: AnchorGenerator | None = None,
        head: nn.Module | None = None,
        center_sampling_radius: float = 1.5,
        score_thresh: float = 0.2,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        **kwargs: Any,
    ) -> None:
        self._check_parts(backbone, anchor_generator)
        if anchor_generator is None:
            strides = ((8,), (16,), (32,), (64,), (128,))  # the levels' strides: one point per position
            anchor_generator = AnchorGenerator(strides, ((1.0,),) * len(strides))
        per_position = anchor_generator.num_anchors_per_location()[0]
        if per_position != 1:
            raise ValueError(f"anchor_generator.num_anchors_per_location()[0] should be 1 instead of {per_position}")
        if head is None:
            head = FCOSHead(backbone.out_channels, per_position, num_classes)
        transform = GeneralizedRCNNTransform(
            min_size,
            max_size,
            [0.485, 0.456, 0.406] if image_mean is None else image_mean,
            [0.229, 0.224, 0.225] if image_std is None else image_std,
            **kwargs,
        )
        super().__init__(
            backbone, anchor_generator, head, transform, score_thresh, nms_thresh, detections_per_img, topk_candidates
        )
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.center_sampling_radius = center_sampling_radius

    def _match(self, anchors: torch.Tensor, gt_boxes: torch.Tensor, num_anchors_per_level: list[int]) -> torch.Tensor:
        """Each position's ground-truth box index, or -1 for background."""
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        strides = anchors[:, 2] - anchors[:, 0]
        gt_centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        near_centre = (centres[:, None] - gt_centres[None]).abs().max(dim=2).values
        match = near_centre < self.center_sampling_radius * strides[:, None]
        x, y = centres[:, 0, None], centres[:, 1, None]  # (P, 1) against (M,) box sides
        x0, y0, x1, y1 = gt_boxes.unbind(dim=1)
        to_sides = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=2)  # (P, M, 4)
        match &= to_sides.min(dim=2).values > 0
        # Each level takes the boxes whose largest side distance lies in (4, 8) strides; open-ended at both ends.
        lower, upper = strides * 4, strides * 8
        lower[: num_anchors_per_level[0]] = 0
        upper[-num_anchors_per_level[-1] :] = float("inf")
        reach = to_sides.max(dim=2).values
        match &= (reach > lower[:, None]) & (reach < upper[:, None])
        # Among the boxes a position matches, the one of smallest area.
        areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        preference = match.to(torch.float32) * (1e8 - areas[None, :])
        best, matched = preference.max(dim=1)
        matched[best < 1e-5] = -1
        return matched

    def compute_loss(
        self,
        targets: list[Target],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        num_anchors_per_level: list[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Match each image's positions to its boxes (all background for an image without boxes), then the
        head's losses."""
        if num_anchors_per_level is None:
            raise ValueError("FCOS.compute_loss needs num_anchors_per_level (positions per pyramid level)")
        matched_idxs = []
        for image_anchors, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched_idxs.append(
                    torch.full((len(image_anchors),), -1, dtype=torch.int64, device=image_anchors.device)
                )
            else:
                matched_idxs.append(self._match(image_anchors, target["boxes"], num_anchors_per_level))
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)

    def _class_scores(self, level_outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.sqrt(torch.sigmoid(level_outputs["cls_logits"]) * torch.sigmoid(level_outputs["bbox_ctrness"]))

    def _decode_boxes(self, regression: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        return self.box_coder.decode(regression, anchors)


# --------------------------------------------------------------------------------------------------
# Weights and builder
# --------------------------------------------------------------------------------------------------


class FCOS_ResNet50_FPN_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        "https://download.pytorch.org/models/fcos_resnet50_fpn_coco-99b0c9b7.pth",
        params=32269600,
        box_map=39.2,
        gflops=128.207,
        file_mb=123.608,
        recipe="https://github.com/pytorch/vision/tree/main/references/detection#fcos-resnet-50-fpn",
        docs="Trained on COCO train2017 with a schedule close to the paper's.",
    )
    DEFAULT = COCO_V1


def _resnet50_fpn(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> FCOS:
    norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = resnet50(weights=weights_backbone, norm_layer=norm_layer)
    extractor = _resnet_fpn_extractor(backbone, trainable, [2, 3, 4], LastLevelP6P7(256, 256))
    return FCOS(extractor, num_classes, **kwargs)


@register_model(task="detection", weights=FCOS_ResNet50_FPN_Weights)
def fcos_resnet50_fpn(
    *,
    weights: FCOS_ResNet50_FPN_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FCOS:
    """FCOS with a ResNet-50 FPN backbone (levels P3 to P7).

    The model takes a list of ``(3, H, W)`` float images in ``[0, 1]`` (sizes may differ); in training it returns
    the losses ``classification``, ``bbox_regression`` and ``bbox_ctrness``, in eval one dict of ``boxes``,
    ``scores`` and ``labels`` per image.

    Args:
        weights: a ``FCOS_ResNet50_FPN_Weights`` member, its name, None, or the path of a local checkpoint.
        progress: show a download progress bar.
        num_classes: classes including the background (default 91, COCO's ids). With published weights, another
            value re-initialises the class logits (with a warning) and loads everything else.
        weights_backbone: the backbone's ImageNet weights, used when ``weights`` is None.
        trainable_backbone_layers: backbone stages left trainable, from the last (0 to 5; default 3, or 5
            without any pretrained weights).
        **kwargs: ``FCOS`` arguments (``min_size``, ``score_thresh``, ``nms_thresh``, ``detections_per_img``,
            ``topk_candidates``, ``center_sampling_radius``, ...) and the deprecated ``pretrained_backbone``.
    """
    return _build_detector(
        _resnet50_fpn,
        resnet50,
        weights,
        progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        max_trainable=5,
        kwargs=kwargs,
    )
