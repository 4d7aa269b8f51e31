"""SSDlite: SSD with depthwise-separable heads and extra layers, on MobileNetV3-Large, at 320x320.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (2018), https://arxiv.org/abs/1801.04381
(section 6.2: every 3x3 convolution of SSD's heads and extra layers becomes depthwise + pointwise), with the
MobileNetV3 backbone of Howard et al., "Searching for MobileNetV3" (2019), https://arxiv.org/abs/1905.02244
(section 6.3: the first feature map is taken at the expansion layer of the last stride-16 block).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...ops.misc import Conv2dNormActivation
from .._api import WeightsEnum, register_model
from .._features import stage_boundaries
from .._weights import detection_entry
from ..mobilenetv3 import MobileNet_V3_Large_Weights, mobilenet_v3_large
from .anchor_utils import DefaultBoxGenerator
from .backbone_utils import _build_detector
from .ssd import SSD, SSDScoringHead, _drop_size

__all__ = [
    "SSDLiteHead",
    "SSDLiteClassificationHead",
    "SSDLiteRegressionHead",
    "SSDLiteFeatureExtractorMobileNet",
    "SSDLite320_MobileNet_V3_Large_Weights",
    "ssdlite320_mobilenet_v3_large",
]

NormLayer = Callable[..., nn.Module]


def _normal_init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=0.03)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _prediction_block(in_channels: int, out_channels: int, norm_layer: NormLayer) -> nn.Sequential:
    """A 3x3 depthwise convolution (norm, ReLU6), then a 1x1 convolution to the predictions."""
    return nn.Sequential(
        Conv2dNormActivation(
            in_channels, in_channels, groups=in_channels, norm_layer=norm_layer, activation_layer=nn.ReLU6
        ),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


def _extra_block(in_channels: int, out_channels: int, norm_layer: NormLayer) -> nn.Sequential:
    """1x1 to half the output channels, 3x3 depthwise with stride 2, 1x1 to the output channels (norm, ReLU6)."""
    middle = out_channels // 2
    conv = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=nn.ReLU6)
    return nn.Sequential(
        conv(in_channels, middle, kernel_size=1),
        conv(middle, middle, kernel_size=3, stride=2, groups=middle),
        conv(middle, out_channels, kernel_size=1),
    )


class SSDLiteClassificationHead(SSDScoringHead):
    """Per feature map, a depthwise-separable prediction block giving each default box a logit per class.

    Args:
        in_channels: the channels of each feature map.
        num_anchors: the default boxes per cell of each feature map.
        num_classes: classes including the background.
        norm_layer: the normalisation after the depthwise convolutions.
    """

    def __init__(
        self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int, norm_layer: NormLayer
    ) -> None:
        layers = nn.ModuleList(
            _prediction_block(channels, num_classes * anchors, norm_layer)
            for channels, anchors in zip(in_channels, num_anchors)
        )
        _normal_init(layers)
        super().__init__(layers, num_classes)
        self.num_classes = num_classes

    def _reset_classifier(self, num_classes: int) -> None:
        # Only each block's last 1x1 convolution scores classes; the depthwise convolutions before it are kept.
        for block in self.module_list:
            anchors = block[1].out_channels // self.num_classes
            block[1] = nn.Conv2d(block[1].in_channels, num_classes * anchors, kernel_size=1)
            _normal_init(block[1])
        self.num_classes = self.num_columns = num_classes


class SSDLiteRegressionHead(SSDScoringHead):
    """Per feature map, a depthwise-separable prediction block giving each default box its four offsets.

    Args:
        in_channels: the channels of each feature map.
        num_anchors: the default boxes per cell of each feature map.
        norm_layer: the normalisation after the depthwise convolutions.
    """

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], norm_layer: NormLayer) -> None:
        layers = nn.ModuleList(
            _prediction_block(channels, 4 * anchors, norm_layer) for channels, anchors in zip(in_channels, num_anchors)
        )
        _normal_init(layers)
        super().__init__(layers, 4)


class SSDLiteHead(nn.Module):
    """SSDlite's classification and box regression heads over the same feature maps.

    Args:
        in_channels: the channels of each feature map.
        num_anchors: the default boxes per cell of each feature map.
        num_classes: classes including the background.
        norm_layer: the normalisation after the depthwise convolutions.
    """

    def __init__(
        self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int, norm_layer: NormLayer
    ) -> None:
        super().__init__()
        self.classification_head = SSDLiteClassificationHead(in_channels, num_anchors, num_classes, norm_layer)
        self.regression_head = SSDLiteRegressionHead(in_channels, num_anchors, norm_layer)

    def forward(self, x: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"bbox_regression": (N, num_boxes, 4), "cls_logits": (N, num_boxes, num_classes)}``."""
        return {"bbox_regression": self.regression_head(x), "cls_logits": self.classification_head(x)}


class SSDLiteFeatureExtractorMobileNet(nn.Module):
    """A MobileNet's ``features`` cut into SSDlite's first two feature maps, plus four extra blocks.

    The first map is the output of the expansion layer of block ``c4_pos`` (stride 16), the second the end of
    ``features`` (stride 32); the extra blocks halve the resolution four more times.

    Args:
        backbone: a MobileNet ``features``; its layers are reused, not copied.
        c4_pos: the index of the last stride-16 block, a downsampling inverted residual.
        norm_layer: the normalisation of the extra blocks.
        width_mult: scales the extra blocks' channels (512, 256, 256, 128), to at least ``min_depth``.
        min_depth: the fewest channels of an extra block.

    Raises:
        ValueError: block ``c4_pos`` has a residual connection (its expansion output would not be its input's
            successor alone).
    """

    def __init__(
        self,
        backbone: nn.Sequential,
        c4_pos: int,
        norm_layer: NormLayer,
        width_mult: float = 1.0,
        min_depth: int = 16,
    ) -> None:
        super().__init__()
        if backbone[c4_pos].use_res_connect:
            raise ValueError("backbone[c4_pos].use_res_connect should be False")
        c4 = backbone[c4_pos].block
        self.features = nn.Sequential(
            nn.Sequential(*backbone[:c4_pos], c4[0]),  # up to the C4 block's expansion
            nn.Sequential(c4[1:], *backbone[c4_pos + 1 :]),  # from its depthwise convolution to the end
        )
        widths = [max(min_depth, int(d * width_mult)) for d in (512, 256, 256, 128)]
        inputs = [backbone[-1].out_channels, *widths[:-1]]
        self.extra = nn.ModuleList(_extra_block(i, o, norm_layer) for i, o in zip(inputs, widths))
        _normal_init(self.extra)
        self.out_channels = [c4[0].out_channels, backbone[-1].out_channels, *widths]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The six feature maps, ``"0"`` (stride 16) to ``"5"``."""
        outputs = []
        for block in [*self.features, *self.extra]:
            x = block(x)
            outputs.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(outputs))


def _mobilenet_extractor(
    backbone: nn.Module, trainable_layers: int, norm_layer: NormLayer
) -> SSDLiteFeatureExtractorMobileNet:
    """Freeze a MobileNet's ``features`` but its last ``trainable_layers`` stages (the stem, each downsampling
    block, the last block start one), then wrap them as SSDlite's feature extractor."""
    features = backbone.features
    stages = stage_boundaries(features)
    if not 0 <= trainable_layers <= len(stages):
        raise ValueError(f"trainable_layers should be in the range [0, {len(stages)}], got {trainable_layers}")
    first_trainable = len(features) if trainable_layers == 0 else stages[len(stages) - trainable_layers]
    for block in features[:first_trainable]:
        block.requires_grad_(False)
    return SSDLiteFeatureExtractorMobileNet(features, stages[-2], norm_layer)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


class SSDLite320_MobileNet_V3_Large_Weights(WeightsEnum):
    COCO_V1 = detection_entry(
        "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
        params=3440060,
        box_map=21.3,
        gflops=0.583,
        file_mb=13.418,
        recipe="https://github.com/pytorch/vision/tree/main/references/detection#ssdlite320-mobilenetv3-large",
        docs="Trained on COCO train2017 with a recipe close to the papers'.",
    )
    DEFAULT = COCO_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _ssdlite320_mobilenet_v3_large(
    weights_backbone: WeightsEnum | str | None, is_trained: bool, trainable: int, num_classes: int, kwargs: dict
) -> SSD:
    kwargs = dict(kwargs)
    norm_layer = kwargs.pop("norm_layer", None) or partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    # Without ImageNet weights the last stage is halved (table 6 of the MobileNetV3 paper) and every convolution
    # starts from SSDlite's own initialisation.
    reduced_tail = weights_backbone is None
    backbone = mobilenet_v3_large(weights=weights_backbone, norm_layer=norm_layer, reduced_tail=reduced_tail)
    if weights_backbone is None:
        _normal_init(backbone)
    backbone = _mobilenet_extractor(backbone, trainable, norm_layer)
    anchors = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95)
    head = SSDLiteHead(backbone.out_channels, anchors.num_anchors_per_location(), num_classes, norm_layer)
    defaults = {
        "score_thresh": 0.001,
        "nms_thresh": 0.55,
        "detections_per_img": 300,
        "topk_candidates": 300,
        # [0, 1] to [-1, 1], as the backbone was trained
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    return SSD(backbone, anchors, (320, 320), num_classes, head=head, **{**defaults, **kwargs})


@register_model(task="detection", weights=SSDLite320_MobileNet_V3_Large_Weights)
def ssdlite320_mobilenet_v3_large(
    *,
    weights: SSDLite320_MobileNet_V3_Large_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: MobileNet_V3_Large_Weights | str | None = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    norm_layer: NormLayer | None = None,
    **kwargs: Any,
) -> SSD:
    """SSDlite with a MobileNetV3-Large backbone: images resized to 320x320, 3234 default boxes on six maps.

    The model takes a list of ``(3, H, W)`` float images in ``[0, 1]`` (sizes may differ); see
    :meth:`SSD.forward` for what it returns.

    Args:
        weights: an ``SSDLite320_MobileNet_V3_Large_Weights`` member, its name, None, or the path of a local
            checkpoint.
        progress: show a download progress bar.
        num_classes: classes including the background (default 91, COCO's ids). With published weights, another
            value re-initialises the classification head's last convolutions (with a warning).
        weights_backbone: the backbone's ImageNet weights, used when ``weights`` is None; without them the
            backbone's last stage is halved, as in the published weights.
        trainable_backbone_layers: backbone stages left trainable, from the last (0 to 6; default 6).
        norm_layer: the normalisation of the backbone, extra blocks and heads (default batch norm with eps 0.001
            and momentum 0.03).
        **kwargs: ``SSD`` arguments (``score_thresh`` 0.001, ``nms_thresh`` 0.55, ``detections_per_img`` 300,
            ``topk_candidates`` 300 by default, ...) and the deprecated ``pretrained_backbone``.
    """
    return _build_detector(
        _ssdlite320_mobilenet_v3_large,
        mobilenet_v3_large,
        weights,
        progress,
        num_classes=num_classes,
        weights_backbone=weights_backbone,
        trainable_backbone_layers=trainable_backbone_layers,
        max_trainable=6,
        default_trainable=6,
        kwargs={**_drop_size("ssdlite320_mobilenet_v3_large", kwargs), "norm_layer": norm_layer},
    )
