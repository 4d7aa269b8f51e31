"""Faster R-CNN: a region proposal network and a box head sharing one backbone.

Ren et al., "Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks" (2015),
https://arxiv.org/abs/1506.01497. The ``_v2`` builder follows Li et al., "Benchmarking Detection Transfer Learning
with Vision Transformers" (2021), https://arxiv.org/abs/2111.11429: batch norm in the FPN and heads, a two-layer
RPN head and a four-convolution box head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...ops.misc import BatchNorm2d, Conv2dNormActivation, FrozenBatchNorm2d
from ...ops.poolers import MultiScaleRoIAlign
from .._api import WeightsEnum, register_model
from .._heads import head_width, require_classes
from .._weights import detection_entry
from ..mobilenetv3 import MobileNet_V3_Large_Weights, mobilenet_v3_large
from ..resnet import ResNet50_Weights, resnet50
from ._utils import overwrite_eps
from .anchor_utils import AnchorGenerator
from .backbone_utils import _build_detector, _mobilenet_extractor, _resnet_fpn_extractor
from .generalized_rcnn import GeneralizedRCNN
from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork, RPNHead
from .transform import GeneralizedRCNNTransform

__all__ = [
    "FasterRCNN",
    "TwoMLPHead",
    "FastRCNNConvFCHead",
    "FastRCNNPredictor",
    "FasterRCNN_ResNet50_FPN_Weights",
    "FasterRCNN_ResNet50_FPN_V2_Weights",
    "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
]


def _default_anchorgen() -> AnchorGenerator:
    # One anchor size per FPN level (P2..P6), three aspect ratios each.
    sizes = ((32,), (64,), (128,), (256,), (512,))
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


class TwoMLPHead(nn.Module):
    """Flatten each pooled RoI and apply two fully connected layers with ReLU (the FPN box head).

    Args:
        in_channels: the flattened size of a pooled RoI (channels x height x width).
        representation_size: the width of both layers.
    """

    def __init__(self, in_channels: int, representation_size: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(start_dim=1)))))


class FastRCNNConvFCHead(nn.Sequential):
    """3x3 convolutions (with optional normalisation and ReLU), then flatten and fully connected layers with ReLU.

    Args:
        input_size: a pooled RoI's ``(channels, height, width)``.
        conv_layers: the output channels of each convolution.
        fc_layers: the width of each fully connected layer.
        norm_layer: normalisation after each convolution (default none).
    """

    def __init__(
        self,
        input_size: tuple[int, int, int],
        conv_layers: Sequence[int],
        fc_layers: Sequence[int],
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        channels, height, width = input_size
        blocks: list[nn.Module] = []
        for out_channels in conv_layers:
            blocks.append(Conv2dNormActivation(channels, out_channels, norm_layer=norm_layer))
            channels = out_channels
        blocks.append(nn.Flatten())
        features = channels * height * width
        for out_features in fc_layers:
            blocks += [nn.Linear(features, out_features), nn.ReLU(inplace=True)]
            features = out_features
        super().__init__(*blocks)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)


class FastRCNNPredictor(nn.Module):
    """Class logits and per-class box deltas from each RoI's feature vector.

    Args:
        in_channels: the size of the box head's output.
        num_classes: the number of classes, background included.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(R, C)`` or ``(R, C, 1, 1)`` features to ``(R, num_classes)`` logits and ``(R, 4 * num_classes)``
        deltas."""
        if x.dim() == 4 and tuple(x.shape[2:]) != (1, 1):
            raise ValueError(f"expected features of shape (R, C) or (R, C, 1, 1), got {tuple(x.shape)}")
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


class FasterRCNN(GeneralizedRCNN):
    """Faster R-CNN around any backbone that returns feature maps of ``backbone.out_channels`` channels.

    Args:
        backbone: returns one feature map or an ordered dict of them; must have an ``out_channels`` attribute.
        num_classes: classes including the background; None only with a custom ``box_predictor``.
        min_size, max_size, image_mean, image_std: the input transform (see ``GeneralizedRCNNTransform``);
            mean and std default to ImageNet's.
        rpn_anchor_generator, rpn_head: default one anchor size per FPN level and an ``RPNHead``.
        rpn_pre_nms_top_n_train/_test, rpn_post_nms_top_n_train/_test: proposals kept per level before NMS and
            per image after it, in training and in eval.
        rpn_nms_thresh, rpn_fg_iou_thresh, rpn_bg_iou_thresh, rpn_batch_size_per_image, rpn_positive_fraction,
        rpn_score_thresh: see ``RegionProposalNetwork``.
        box_roi_pool: default a 7x7 ``MultiScaleRoIAlign`` over the feature maps ``"0"`` to ``"3"``.
        box_head, box_predictor: default a ``TwoMLPHead`` (1024 wide) and a ``FastRCNNPredictor``.
        box_score_thresh, box_nms_thresh, box_detections_per_img, box_fg_iou_thresh, box_bg_iou_thresh,
        box_batch_size_per_image, box_positive_fraction, bbox_reg_weights: see ``RoIHeads``.
        **kwargs: further ``GeneralizedRCNNTransform`` arguments (``size_divisible``, ``fixed_size``, ...).

    Raises:
        ValueError: a backbone without ``out_channels``; ``num_classes`` given together with ``box_predictor``
            or neither given.
        TypeError: an anchor generator or RoI pooler of another type.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        # transform
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        # RPN
        rpn_anchor_generator: AnchorGenerator | None = None,
        rpn_head: nn.Module | None = None,
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_score_thresh: float = 0.0,
        # box branch
        box_roi_pool: MultiScaleRoIAlign | None = None,
        box_head: nn.Module | None = None,
        box_predictor: nn.Module | None = None,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not hasattr(backbone, "out_channels"):
            raise ValueError(
                "backbone should contain an attribute out_channels specifying the number of output channels "
                "(assumed to be the same for all the levels)"
            )
        if not isinstance(rpn_anchor_generator, (AnchorGenerator, type(None))):
            raise TypeError(
                f"rpn_anchor_generator should be of type AnchorGenerator or None, got {type(rpn_anchor_generator)}"
            )
        if not isinstance(box_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(f"box_roi_pool should be of type MultiScaleRoIAlign or None, got {type(box_roi_pool)}")
        if num_classes is not None and box_predictor is not None:
            raise ValueError("num_classes should be None when box_predictor is specified")
        if num_classes is None and box_predictor is None:
            raise ValueError("num_classes should not be None when box_predictor is not specified")

        out_channels = backbone.out_channels
        if rpn_anchor_generator is None:
            rpn_anchor_generator = _default_anchorgen()
        if rpn_head is None:
            rpn_head = RPNHead(out_channels, rpn_anchor_generator.num_anchors_per_location()[0])
        rpn = RegionProposalNetwork(
            rpn_anchor_generator,
            rpn_head,
            rpn_fg_iou_thresh,
            rpn_bg_iou_thresh,
            rpn_batch_size_per_image,
            rpn_positive_fraction,
            {"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            {"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
            rpn_nms_thresh,
            score_thresh=rpn_score_thresh,
        )

        if box_roi_pool is None:
            box_roi_pool = MultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=2)
        representation_size = 1024
        if box_head is None:
            box_head = TwoMLPHead(out_channels * box_roi_pool.output_size[0] ** 2, representation_size)
        if box_predictor is None:
            box_predictor = FastRCNNPredictor(representation_size, num_classes)
        roi_heads = RoIHeads(
            box_roi_pool,
            box_head,
            box_predictor,
            box_fg_iou_thresh,
            box_bg_iou_thresh,
            box_batch_size_per_image,
            box_positive_fraction,
            bbox_reg_weights,
            box_score_thresh,
            box_nms_thresh,
            box_detections_per_img,
        )
        transform = GeneralizedRCNNTransform(
            min_size,
            max_size,
            [0.485, 0.456, 0.406] if image_mean is None else image_mean,
            [0.229, 0.224, 0.225] if image_std is None else image_std,
            **kwargs,
        )
        super().__init__(backbone, rpn, roi_heads, transform)

    def _reset_classifier(self, num_classes: int) -> None:
        require_classes(num_classes, type(self).__name__)
        predictor = self.roi_heads.box_predictor
        if not isinstance(predictor, FastRCNNPredictor):
            raise TypeError(f"cannot reset a custom box predictor ({type(predictor).__name__}); replace it yourself")
        self.roi_heads.box_predictor = FastRCNNPredictor(head_width(predictor.cls_score), num_classes)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPES = "https://github.com/pytorch/vision/tree/main/references/detection#"
_PAPER_RECIPE = "Trained on COCO train2017 with a schedule close to the paper's."


class FasterRCNN_ResNet50_FPN_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        f"{_URL}fasterrcnn_resnet50_fpn_coco-258fb6c6.pth",
        params=41755286,
        box_map=37.0,
        gflops=134.38,
        file_mb=159.743,
        recipe=f"{_RECIPES}faster-r-cnn-resnet-50-fpn",
        docs=_PAPER_RECIPE,
    )
    DEFAULT = COCO_V1


class FasterRCNN_ResNet50_FPN_V2_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        f"{_URL}fasterrcnn_resnet50_fpn_v2_coco-dd69338a.pth",
        params=43712278,
        box_map=46.7,
        gflops=280.371,
        file_mb=167.104,
        recipe="https://github.com/pytorch/vision/pull/5763",
        docs="Trained on COCO train2017 with a longer, stronger recipe (heavier augmentation and regularisation) "
        "that lifts box mAP by almost ten points over the original Faster R-CNN.",
    )
    DEFAULT = COCO_V1


class FasterRCNN_MobileNet_V3_Large_FPN_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        f"{_URL}fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
        params=19386354,
        box_map=32.8,
        gflops=4.494,
        file_mb=74.239,
        recipe=f"{_RECIPES}faster-r-cnn-mobilenetv3-large-fpn",
        docs=_PAPER_RECIPE,
    )
    DEFAULT = COCO_V1


class FasterRCNN_MobileNet_V3_Large_320_FPN_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        f"{_URL}fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth",
        params=19386354,
        box_map=22.8,
        gflops=0.719,
        file_mb=74.239,
        recipe=f"{_RECIPES}faster-r-cnn-mobilenetv3-large-320-fpn",
        docs=_PAPER_RECIPE + " Tuned for low-resolution (320 pixel) inputs on mobile devices.",
    )
    DEFAULT = COCO_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _resnet50_fpn(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> FasterRCNN:
    norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = resnet50(weights=weights_backbone, norm_layer=norm_layer)
    return FasterRCNN(_resnet_fpn_extractor(backbone, trainable), num_classes=num_classes, **kwargs)


def _resnet50_fpn_v2(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> FasterRCNN:
    # Batch norm throughout (trainable statistics, even in the frozen stages' place): the v2 recipe's choice.
    backbone = _resnet_fpn_extractor(resnet50(weights=weights_backbone), trainable, norm_layer=nn.BatchNorm2d)
    anchors = _default_anchorgen()
    rpn_head = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
    box_head = FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256] * 4, [1024], norm_layer=BatchNorm2d)
    return FasterRCNN(
        backbone, num_classes=num_classes, rpn_anchor_generator=anchors, rpn_head=rpn_head, box_head=box_head, **kwargs
    )


def _mobilenet_v3_large_fpn(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> FasterRCNN:
    norm_layer = FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = _mobilenet_extractor(
        mobilenet_v3_large(weights=weights_backbone, norm_layer=norm_layer), True, trainable
    )
    # Two pyramid levels plus the pooled one, each with every anchor size.
    sizes = ((32, 64, 128, 256, 512),) * 3
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    return FasterRCNN(backbone, num_classes, rpn_anchor_generator=anchors, **kwargs)


@register_model(task="detection", weights=FasterRCNN_ResNet50_FPN_Weights)
def fasterrcnn_resnet50_fpn(
    *,
    weights: FasterRCNN_ResNet50_FPN_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN with a ResNet-50 FPN backbone.

    The model takes a list of ``(3, H, W)`` float images in ``[0, 1]`` (sizes may differ); see
    :meth:`GeneralizedRCNN.forward` for what it returns in training and in eval.

    Args:
        weights: a ``FasterRCNN_ResNet50_FPN_Weights`` member, its name, None, or the path of a local checkpoint.
        progress: show a download progress bar.
        num_classes: classes including the background (default 91, COCO's ids). With published weights, another
            value re-initialises the box predictor (with a warning) and loads everything else.
        weights_backbone: the backbone's ImageNet weights, used when ``weights`` is None.
        trainable_backbone_layers: backbone stages left trainable, from the last (0 to 5; default 3, or 5
            without any pretrained weights).
        **kwargs: ``FasterRCNN`` arguments (``min_size``, ``box_score_thresh``, ...) and the deprecated
            ``pretrained_backbone``.
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
    if weights == FasterRCNN_ResNet50_FPN_Weights.COCO_V1:
        overwrite_eps(model, 0.0)  # trained with frozen batch norms that added no epsilon to the variance
    return model


@register_model(task="detection", weights=FasterRCNN_ResNet50_FPN_V2_Weights)
def fasterrcnn_resnet50_fpn_v2(
    *,
    weights: FasterRCNN_ResNet50_FPN_V2_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """The improved Faster R-CNN with a ResNet-50 FPN backbone (batch norm, deeper heads); arguments as
    ``fasterrcnn_resnet50_fpn``, but no backbone weights by default."""
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


@register_model(task="detection", weights=FasterRCNN_MobileNet_V3_Large_FPN_Weights)
def fasterrcnn_mobilenet_v3_large_fpn(
    *,
    weights: FasterRCNN_MobileNet_V3_Large_FPN_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: MobileNet_V3_Large_Weights | str | None = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN with a MobileNetV3-Large FPN backbone; arguments as ``fasterrcnn_resnet50_fpn``
    (``trainable_backbone_layers`` 0 to 6). Proposals need an objectness above 0.05 by default."""
    return _build_detector(
        _mobilenet_v3_large_fpn,
        mobilenet_v3_large,
        weights,
        progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        max_trainable=6,
        kwargs={"rpn_score_thresh": 0.05, **kwargs},
    )


@register_model(task="detection", weights=FasterRCNN_MobileNet_V3_Large_320_FPN_Weights)
def fasterrcnn_mobilenet_v3_large_320_fpn(
    *,
    weights: FasterRCNN_MobileNet_V3_Large_320_FPN_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: MobileNet_V3_Large_Weights | str | None = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """``fasterrcnn_mobilenet_v3_large_fpn`` for low-resolution inputs: images resized to 320 (at most 640)
    pixels and 150 proposals per image by default."""
    defaults = {
        "min_size": 320,
        "max_size": 640,
        "rpn_pre_nms_top_n_test": 150,
        "rpn_post_nms_top_n_test": 150,
        "rpn_score_thresh": 0.05,
    }
    return _build_detector(
        _mobilenet_v3_large_fpn,
        mobilenet_v3_large,
        weights,
        progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        max_trainable=6,
        kwargs={**defaults, **kwargs},
    )
