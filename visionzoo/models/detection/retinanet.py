"""RetinaNet: a single-stage detector whose focal loss lets it learn from every anchor at once.

Lin et al., "Focal Loss for Dense Object Detection" (2017), https://arxiv.org/abs/1708.02002. Nine anchors per
position of the pyramid levels P3 to P7, each scored for every class by a sigmoid and regressed by a box head.
The ``_v2`` builder follows Zhang et al., "Bridging the Gap Between Anchor-based and Anchor-free Detection via
Adaptive Training Sample Selection" (2019), https://arxiv.org/abs/1912.02424: group norm in the heads, P6 from C5
and a GIoU box loss.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...ops import boxes as box_ops
from ...ops.feature_pyramid_network import LastLevelP6P7
from ...ops.losses import (
    complete_box_iou_loss,
    distance_box_iou_loss,
    generalized_box_iou_loss,
    sigmoid_focal_loss,
)
from ...ops.misc import FrozenBatchNorm2d
from .._api import WeightsEnum, register_model
from .._heads import head_width
from .._weights import detection_entry
from ..resnet import ResNet50_Weights, resnet50
from ._single_stage import (
    PriorConv2d,
    SingleStageDetector,
    conv_tower,
    flatten_per_position,
    init_small_normal,
    sum_in_order,
)
from ._utils import BoxCoder, Matcher, overwrite_eps
from .anchor_utils import AnchorGenerator
from .backbone_utils import _build_detector, _resnet_fpn_extractor
from .transform import GeneralizedRCNNTransform

__all__ = [
    "RetinaNet",
    "RetinaNetHead",
    "RetinaNetClassificationHead",
    "RetinaNetRegressionHead",
    "RetinaNet_ResNet50_FPN_Weights",
    "RetinaNet_ResNet50_FPN_V2_Weights",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
]

Target = dict[str, torch.Tensor]
NormLayer = Callable[..., nn.Module]


def _default_anchorgen() -> AnchorGenerator:
    # Three octave scales (2^0, 2^(1/3), 2^(2/3), truncated to whole pixels) of 32..512, one base size per level.
    sizes = tuple((base, int(base * 2 ** (1 / 3)), int(base * 2 ** (2 / 3))) for base in (32, 64, 128, 256, 512))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


class _VersionedTower(nn.Module):
    """A head with a four-convolution ``conv`` tower. Version 2 wraps each convolution in a
    ``Conv2dNormActivation``: version 1 checkpoints' ``conv.{2i}.weight`` (ReLUs in between) is ``conv.{i}.0.weight``.
    """

    _version = 2

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict, *args: Any) -> None:
        if local_metadata.get("version") is None or local_metadata["version"] < 2:
            for i in range(4):
                for kind in ("weight", "bias"):
                    old = f"{prefix}conv.{2 * i}.{kind}"
                    if old in state_dict:
                        state_dict[f"{prefix}conv.{i}.0.{kind}"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)


class RetinaNetClassificationHead(_VersionedTower):
    """Four 3x3 convolutions with ReLU, then one logit per anchor and class.

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per position.
        num_classes: classes, background included (its logit is trained as a class like any other).
        prior_probability: every class's probability at initialisation.
        norm_layer: normalisation after each tower convolution (default none).
    """

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        prior_probability: float = 0.01,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        self.conv = conv_tower(in_channels, 4, norm_layer)
        init_small_normal(self.conv)
        self.cls_logits = PriorConv2d(in_channels, num_anchors * num_classes, prior_probability)
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.BETWEEN_THRESHOLDS = Matcher.BETWEEN_THRESHOLDS  # the reference keeps it on the head too

    def _reset_classifier(self, num_classes: int) -> None:
        old = self.cls_logits
        self.cls_logits = PriorConv2d(head_width(old), self.num_anchors * num_classes, old.prior_probability)
        self.num_classes = num_classes

    def compute_loss(
        self, targets: list[Target], head_outputs: dict[str, torch.Tensor], matched_idxs: list[torch.Tensor]
    ) -> torch.Tensor:
        """Sigmoid focal loss over the anchors that are not ignored (those between the IoU thresholds), summed and
        divided by each image's number of foreground anchors, averaged over the images."""
        losses = []
        for target, logits, matched in zip(targets, head_outputs["cls_logits"], matched_idxs):
            foreground = matched >= 0
            one_hot = torch.zeros_like(logits)
            one_hot[foreground, target["labels"][matched[foreground]]] = 1.0
            counted = matched != self.BETWEEN_THRESHOLDS
            loss = sigmoid_focal_loss(logits[counted], one_hot[counted], reduction="sum")
            losses.append(loss / max(1, foreground.sum()))
        return sum_in_order(losses) / len(targets)

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Per-level feature maps to ``(N, sum H * W * A, num_classes)`` logits."""
        return flatten_per_position([self.cls_logits(self.conv(level)) for level in x], self.num_classes)


def _l1(coder: BoxCoder, anchors: torch.Tensor, matched: torch.Tensor, regression: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(regression, coder.encode_single(matched, anchors), reduction="sum")


def _smooth_l1(coder: BoxCoder, anchors: torch.Tensor, matched: torch.Tensor, regression: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(regression, coder.encode_single(matched, anchors), reduction="sum", beta=1.0)


def _on_boxes(loss: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def box_loss(
        coder: BoxCoder, anchors: torch.Tensor, matched: torch.Tensor, regression: torch.Tensor
    ) -> torch.Tensor:
        return loss(coder.decode_single(regression, anchors), matched, reduction="sum")

    return box_loss


# The regression losses a head can use: on the encoded offsets (l1, smooth_l1) or on the decoded boxes.
_BOX_LOSSES = {
    "l1": _l1,
    "smooth_l1": _smooth_l1,
    "giou": _on_boxes(generalized_box_iou_loss),
    "diou": _on_boxes(distance_box_iou_loss),
    "ciou": _on_boxes(complete_box_iou_loss),
}


class RetinaNetRegressionHead(_VersionedTower):
    """Four 3x3 convolutions with ReLU, then four box offsets per anchor.

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per position.
        norm_layer: normalisation after each tower convolution (default none).
        loss_type: the box loss: ``"l1"`` (default) or ``"smooth_l1"`` on the offsets, ``"giou"``, ``"diou"`` or
            ``"ciou"`` on the decoded boxes. Kept as ``_loss_type``, which the reference's users set directly.
    """

    def __init__(
        self, in_channels: int, num_anchors: int, norm_layer: NormLayer | None = None, loss_type: str = "l1"
    ) -> None:
        super().__init__()
        if loss_type not in _BOX_LOSSES:
            raise ValueError(f"loss_type must be one of {', '.join(_BOX_LOSSES)}, got {loss_type!r}")
        self.conv = conv_tower(in_channels, 4, norm_layer)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, kernel_size=3, stride=1, padding=1)
        init_small_normal(self.bbox_reg)  # before the tower: the reference's order of random draws
        init_small_normal(self.conv)
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self._loss_type = loss_type

    def compute_loss(
        self,
        targets: list[Target],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> torch.Tensor:
        """The box loss of each image's foreground anchors, divided by their number, averaged over the images."""
        if self._loss_type not in _BOX_LOSSES:
            raise ValueError(f"_loss_type must be one of {', '.join(_BOX_LOSSES)}, got {self._loss_type!r}")
        box_loss = _BOX_LOSSES[self._loss_type]
        losses = []
        for target, regression, image_anchors, matched in zip(
            targets, head_outputs["bbox_regression"], anchors, matched_idxs
        ):
            foreground = torch.where(matched >= 0)[0]
            loss = box_loss(
                self.box_coder, image_anchors[foreground], target["boxes"][matched[foreground]], regression[foreground]
            )
            losses.append(loss / max(1, foreground.numel()))
        return sum_in_order(losses) / max(1, len(targets))

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        """Per-level feature maps to ``(N, sum H * W * A, 4)`` box offsets."""
        return flatten_per_position([self.bbox_reg(self.conv(level)) for level in x], 4)


class RetinaNetHead(nn.Module):
    """The classification and the box regression heads, run on every pyramid level.

    Args:
        in_channels: channels of every feature map.
        num_anchors: anchors per position.
        num_classes: classes, background included.
        norm_layer: normalisation in both towers (default none).
    """

    def __init__(
        self, in_channels: int, num_anchors: int, num_classes: int, norm_layer: NormLayer | None = None
    ) -> None:
        super().__init__()
        self.classification_head = RetinaNetClassificationHead(
            in_channels, num_anchors, num_classes, norm_layer=norm_layer
        )
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, norm_layer=norm_layer)

    def compute_loss(
        self,
        targets: list[Target],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        matched_idxs: list[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """``{"classification": focal loss, "bbox_regression": box loss}``."""
        return {
            "classification": self.classification_head.compute_loss(targets, head_outputs, matched_idxs),
            "bbox_regression": self.regression_head.compute_loss(targets, head_outputs, anchors, matched_idxs),
        }

    def forward(self, x: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"cls_logits": self.classification_head(x), "bbox_regression": self.regression_head(x)}


class RetinaNet(SingleStageDetector):
    """RetinaNet around any backbone that returns feature maps of ``backbone.out_channels`` channels.

    In training, each anchor is matched to the ground-truth box it overlaps most: foreground from
    ``fg_iou_thresh``, background below ``bg_iou_thresh``, ignored in between (and every box keeps its best
    anchors). See :class:`SingleStageDetector` for the forward and the postprocessing.

    Args:
        backbone: returns one feature map or an ordered dict of them; must have an ``out_channels`` attribute.
        num_classes: classes including the background.
        min_size, max_size, image_mean, image_std: the input transform (see ``GeneralizedRCNNTransform``);
            mean and std default to ImageNet's.
        anchor_generator: default three sizes and three aspect ratios per level, for five levels.
        head: default a :class:`RetinaNetHead`.
        proposal_matcher: default a ``Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)``.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: the postprocessing.
        fg_iou_thresh, bg_iou_thresh: the matcher's thresholds.
        **kwargs: further ``GeneralizedRCNNTransform`` arguments (``size_divisible``, ``fixed_size``, ...).

    Raises:
        ValueError: a backbone without ``out_channels``.
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
        proposal_matcher: Matcher | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 300,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        topk_candidates: int = 1000,
        **kwargs: Any,
    ) -> None:
        self._check_parts(backbone, anchor_generator)
        if anchor_generator is None:
            anchor_generator = _default_anchorgen()
        if head is None:
            head = RetinaNetHead(backbone.out_channels, anchor_generator.num_anchors_per_location()[0], num_classes)
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
        if proposal_matcher is None:
            proposal_matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.proposal_matcher = proposal_matcher
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))

    def compute_loss(
        self,
        targets: list[Target],
        head_outputs: dict[str, torch.Tensor],
        anchors: list[torch.Tensor],
        num_anchors_per_level: list[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Match each image's anchors to its boxes (all background for an image without boxes), then the head's
        losses."""
        matched_idxs = []
        for image_anchors, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched_idxs.append(
                    torch.full((len(image_anchors),), -1, dtype=torch.int64, device=image_anchors.device)
                )
            else:
                matched_idxs.append(self.proposal_matcher(box_ops.box_iou(target["boxes"], image_anchors)))
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)

    def _class_scores(self, level_outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.sigmoid(level_outputs["cls_logits"])

    def _decode_boxes(self, regression: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        return self.box_coder.decode_single(regression, anchors)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"


class RetinaNet_ResNet50_FPN_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        f"{_URL}retinanet_resnet50_fpn_coco-eeacb38b.pth",
        params=34014999,
        box_map=36.4,
        gflops=151.54,
        file_mb=130.267,
        recipe="https://github.com/pytorch/vision/tree/main/references/detection#retinanet",
        docs="Trained on COCO train2017 with a schedule close to the paper's.",
    )
    DEFAULT = COCO_V1


class RetinaNet_ResNet50_FPN_V2_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        f"{_URL}retinanet_resnet50_fpn_v2_coco-5905b1c5.pth",
        params=38198935,
        box_map=41.5,
        gflops=152.238,
        file_mb=146.037,
        recipe="https://github.com/pytorch/vision/pull/5756",
        docs="Trained on COCO train2017 with an enhanced recipe (longer schedule, stronger augmentation) that "
        "lifts box mAP by five points over the original RetinaNet.",
    )
    DEFAULT = COCO_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _resnet50_fpn(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> RetinaNet:
    norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = resnet50(weights=weights_backbone, norm_layer=norm_layer)
    # P3 to P5 from the backbone (P2 would give too many anchors), P6 and P7 from P5.
    extractor = _resnet_fpn_extractor(backbone, trainable, [2, 3, 4], LastLevelP6P7(256, 256))
    return RetinaNet(extractor, num_classes, **kwargs)


def _resnet50_fpn_v2(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> RetinaNet:
    # Batch norm in the backbone whatever the weights, P6 from C5 (2048 channels), group norm in the heads.
    backbone = resnet50(weights=weights_backbone)
    extractor = _resnet_fpn_extractor(backbone, trainable, [2, 3, 4], LastLevelP6P7(2048, 256))
    anchors = _default_anchorgen()
    head = RetinaNetHead(
        extractor.out_channels, anchors.num_anchors_per_location()[0], num_classes, norm_layer=partial(nn.GroupNorm, 32)
    )
    head.regression_head._loss_type = "giou"
    return RetinaNet(extractor, num_classes, anchor_generator=anchors, head=head, **kwargs)


@register_model(task="detection", weights=RetinaNet_ResNet50_FPN_Weights)
def retinanet_resnet50_fpn(
    *,
    weights: RetinaNet_ResNet50_FPN_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> RetinaNet:
    """RetinaNet with a ResNet-50 FPN backbone (levels P3 to P7).

    The model takes a list of ``(3, H, W)`` float images in ``[0, 1]`` (sizes may differ); see
    :meth:`SingleStageDetector.forward` for what it returns in training (losses ``classification`` and
    ``bbox_regression``) and in eval.

    Args:
        weights: a ``RetinaNet_ResNet50_FPN_Weights`` member, its name, None, or the path of a local checkpoint.
        progress: show a download progress bar.
        num_classes: classes including the background (default 91, COCO's ids). With published weights, another
            value re-initialises the class logits (with a warning) and loads everything else.
        weights_backbone: the backbone's ImageNet weights, used when ``weights`` is None.
        trainable_backbone_layers: backbone stages left trainable, from the last (0 to 5; default 3, or 5
            without any pretrained weights).
        **kwargs: ``RetinaNet`` arguments (``min_size``, ``score_thresh``, ``nms_thresh``, ``detections_per_img``,
            ``topk_candidates``, ``fg_iou_thresh``, ``bg_iou_thresh``, ...) and the deprecated ``pretrained_backbone``.
    """
    model = _build_detector(
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
    if weights == RetinaNet_ResNet50_FPN_Weights.COCO_V1:
        overwrite_eps(model, 0.0)  # trained with frozen batch norms that added no epsilon to the variance
    return model


@register_model(task="detection", weights=RetinaNet_ResNet50_FPN_V2_Weights)
def retinanet_resnet50_fpn_v2(
    *,
    weights: RetinaNet_ResNet50_FPN_V2_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> RetinaNet:
    """The improved RetinaNet with a ResNet-50 FPN backbone (group norm heads, GIoU loss); arguments as
    ``retinanet_resnet50_fpn``, but no backbone weights by default."""
    return _build_detector(
        _resnet50_fpn_v2,
        resnet50,
        weights,
        progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        max_trainable=5,
        kwargs=kwargs,
    )
