"""DeepLabV3: atrous spatial pyramid pooling on a dilated backbone.

Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation" (2017),
https://arxiv.org/abs/1706.05587. The head (ASPP) looks at the last feature map through parallel 3x3
convolutions of growing dilation, a 1x1 convolution and a global average ("image pooling"), and fuses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._api import WeightsEnum, register_model
from .._weights import segmentation_entry
from ..mobilenetv3 import MobileNet_V3_Large_Weights, mobilenet_v3_large
from ..resnet import ResNet50_Weights, ResNet101_Weights, resnet50, resnet101
from ._base import (
    SegmentationModel,
    build_segmentation,
    dilated_resnet_features,
    mobilenet_v3_features,
    upsample_to,
)
from .fcn import FCNHead

__all__ = [
    "DeepLabV3",
    "DeepLabHead",
    "ASPP",
    "DeepLabV3_ResNet50_Weights",
    "DeepLabV3_ResNet101_Weights",
    "DeepLabV3_MobileNet_V3_Large_Weights",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
]


class DeepLabV3(SegmentationModel):
    """DeepLabV3: a backbone, a :class:`DeepLabHead` and an optional auxiliary ``FCNHead`` (see
    ``SegmentationModel``)."""


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> list[nn.Module]:
    # Plain layers rather than ops.misc.Conv2dNormActivation: the checkpoints number these layers 0, 1, 2 inside
    # containers that also hold other modules (ASPPPooling's leading pool).
    padding = dilation * (kernel_size - 1) // 2
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class ASPPConv(nn.Sequential):
    """One atrous branch: a 3x3 convolution dilated by ``dilation``, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(*_conv_bn_relu(in_channels, out_channels, 3, dilation))


class ASPPPooling(nn.Sequential):
    """The image-level branch: global average, 1x1 convolution, BatchNorm, ReLU, spread back over the map."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_to(super().forward(x), x.shape[-2:])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, one :class:`ASPPConv` per rate and :class:`ASPPPooling`, run
    in parallel, concatenated, and projected to ``out_channels`` (1x1 convolution, BatchNorm, ReLU, dropout 0.5).

    Raises:
        ValueError: no atrous rate given.
    """

    def __init__(self, in_channels: int, atrous_rates: Sequence[int], out_channels: int = 256) -> None:
        super().__init__()
        rates = tuple(atrous_rates)
        if not rates:
            raise ValueError("ASPP needs at least one atrous rate")
        self.convs = nn.ModuleList(
            [
                nn.Sequential(*_conv_bn_relu(in_channels, out_channels)),
                *(ASPPConv(in_channels, out_channels, rate) for rate in rates),
                ASPPPooling(in_channels, out_channels),
            ]
        )
        self.project = nn.Sequential(*_conv_bn_relu(len(self.convs) * out_channels, out_channels), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """:class:`ASPP` (rates 12, 24, 36 by default), a 3x3 convolution, BatchNorm, ReLU, 1x1 convolution to scores."""

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__(
            ASPP(in_channels, atrous_rates),
            *_conv_bn_relu(256, 256, 3),
            nn.Conv2d(256, num_classes, 1),
        )


def _deeplabv3_resnet(network: nn.Module, num_classes: int, aux: bool) -> DeepLabV3:
    backbone, channels = dilated_resnet_features(network, aux=aux)
    aux_classifier = FCNHead(channels["aux"], num_classes) if aux else None  # built first: the reference's draw order
    return DeepLabV3(backbone, DeepLabHead(channels["out"], num_classes), aux_classifier)


def _deeplabv3_mobilenet_v3(network: nn.Module, num_classes: int, aux: bool) -> DeepLabV3:
    backbone, channels = mobilenet_v3_features(network, last="out", stride8="aux" if aux else None)
    aux_classifier = FCNHead(channels["aux"], num_classes) if aux else None
    return DeepLabV3(backbone, DeepLabHead(channels["out"], num_classes), aux_classifier)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPES = "https://github.com/pytorch/vision/tree/main/references/segmentation#"


class DeepLabV3_ResNet50_Weights(WeightsEnum):
    COCO_WITH_VOC_LABELS_V1 = segmentation_entry(
        f"{_URL}deeplabv3_resnet50_coco-cd0a2569.pth",
        params=42004074,
        miou=66.4,
        pixel_acc=92.4,
        gflops=178.722,
        file_mb=160.515,
        recipe=f"{_RECIPES}deeplabv3_resnet50",
    )
    DEFAULT = COCO_WITH_VOC_LABELS_V1


class DeepLabV3_ResNet101_Weights(WeightsEnum):
    COCO_WITH_VOC_LABELS_V1 = segmentation_entry(
        f"{_URL}deeplabv3_resnet101_coco-586e9e4e.pth",
        params=60996202,
        miou=67.4,
        pixel_acc=92.4,
        gflops=258.743,
        file_mb=233.217,
        recipe=f"{_RECIPES}fcn_resnet101",  # sic: the reference's entry points at FCN's recipe
    )
    DEFAULT = COCO_WITH_VOC_LABELS_V1


class DeepLabV3_MobileNet_V3_Large_Weights(WeightsEnum):
    COCO_WITH_VOC_LABELS_V1 = segmentation_entry(
        f"{_URL}deeplabv3_mobilenet_v3_large-fc3c493d.pth",
        params=11029328,
        miou=60.3,
        pixel_acc=91.2,
        gflops=10.452,
        file_mb=42.301,
        recipe=f"{_RECIPES}deeplabv3_mobilenet_v3_large",
    )
    DEFAULT = COCO_WITH_VOC_LABELS_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

_DILATED_RESNET = {"replace_stride_with_dilation": [False, True, True]}


@register_model(task="segmentation", weights=DeepLabV3_ResNet50_Weights)
def deeplabv3_resnet50(
    *,
    weights: DeepLabV3_ResNet50_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> DeepLabV3:
    """DeepLabV3 with a dilated ResNet-50 backbone.

    Args:
        weights: a ``DeepLabV3_ResNet50_Weights`` member, its name, None, or the path of a local checkpoint.
        progress: show a download progress bar.
        num_classes: default: the weights' 21 VOC labels. With published weights, another value re-initialises
            the classifiers' last layers (with a warning) and loads everything else.
        aux_loss: add the auxiliary ``FCNHead`` on ``layer3`` (default: when ``weights`` are published ones).
        weights_backbone: the ImageNet weights of the backbone, used when ``weights`` is None.
        **kwargs: the deprecated ``pretrained_backbone``.
    """
    return build_segmentation(
        _deeplabv3_resnet,
        resnet50,
        weights,
        progress,
        backbone_options=_DILATED_RESNET,
        num_classes=num_classes,
        aux_loss=aux_loss,
        weights_backbone=weights_backbone,
        **kwargs,
    )


@register_model(task="segmentation", weights=DeepLabV3_ResNet101_Weights)
def deeplabv3_resnet101(
    *,
    weights: DeepLabV3_ResNet101_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: ResNet101_Weights | str | None = ResNet101_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> DeepLabV3:
    """DeepLabV3 with a dilated ResNet-101 backbone; arguments as ``deeplabv3_resnet50``."""
    return build_segmentation(
        _deeplabv3_resnet,
        resnet101,
        weights,
        progress,
        backbone_options=_DILATED_RESNET,
        num_classes=num_classes,
        aux_loss=aux_loss,
        weights_backbone=weights_backbone,
        **kwargs,
    )


@register_model(task="segmentation", weights=DeepLabV3_MobileNet_V3_Large_Weights)
def deeplabv3_mobilenet_v3_large(
    *,
    weights: DeepLabV3_MobileNet_V3_Large_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: MobileNet_V3_Large_Weights | str | None = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> DeepLabV3:
    """DeepLabV3 with a MobileNetV3-Large backbone whose last stage is dilated (output stride 16); the auxiliary
    ``FCNHead`` reads the end of the stride-8 stage. Arguments as ``deeplabv3_resnet50``."""
    return build_segmentation(
        _deeplabv3_mobilenet_v3,
        mobilenet_v3_large,
        weights,
        progress,
        backbone_options={"dilated": True},
        num_classes=num_classes,
        aux_loss=aux_loss,
        weights_backbone=weights_backbone,
        **kwargs,
    )
