"""FCN: a fully convolutional classifier on a dilated ResNet.

Long et al., "Fully Convolutional Networks for Semantic Segmentation" (2014), https://arxiv.org/abs/1411.4038.
This variant drops the paper's skip connections: the backbone dilates its last two stages instead of striding
(output stride 8), and a small convolutional head scores every position of the last feature map.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .._api import WeightsEnum, register_model
from .._weights import segmentation_entry
from ..resnet import ResNet50_Weights, ResNet101_Weights, resnet50, resnet101
from ._base import SegmentationModel, build_segmentation, dilated_resnet_features

__all__ = ["FCN", "FCNHead", "FCN_ResNet50_Weights", "FCN_ResNet101_Weights", "fcn_resnet50", "fcn_resnet101"]


class FCN(SegmentationModel):
    """FCN: a backbone, an :class:`FCNHead` classifier and an optional auxiliary one (see ``SegmentationModel``)."""


class FCNHead(nn.Sequential):
    """3x3 convolution to a quarter of the channels, BatchNorm, ReLU, dropout, 1x1 convolution to class scores."""

    def __init__(self, in_channels: int, channels: int) -> None:
        inter_channels = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(inter_channels, channels, 1),
        )


def _fcn_resnet(network: nn.Module, num_classes: int, aux: bool) -> FCN:
    backbone, channels = dilated_resnet_features(network, aux=aux)
    aux_classifier = FCNHead(channels["aux"], num_classes) if aux else None  # built first: the reference's draw order
    return FCN(backbone, FCNHead(channels["out"], num_classes), aux_classifier)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPES = "https://github.com/pytorch/vision/tree/main/references/segmentation#"


class FCN_ResNet50_Weights(WeightsEnum):
    COCO_WITH_VOC_LABELS_V1 = segmentation_entry(
        f"{_URL}fcn_resnet50_coco-1167a1af.pth",
        params=35322218,
        miou=60.5,
        pixel_acc=91.4,
        gflops=152.717,
        file_mb=135.009,
        recipe=f"{_RECIPES}fcn_resnet50",
    )
    DEFAULT = COCO_WITH_VOC_LABELS_V1


class FCN_ResNet101_Weights(WeightsEnum):
    COCO_WITH_VOC_LABELS_V1 = segmentation_entry(
        f"{_URL}fcn_resnet101_coco-7ecb50ca.pth",
        params=54314346,
        miou=63.7,
        pixel_acc=91.9,
        gflops=232.738,
        file_mb=207.711,
        recipe=f"{_RECIPES}deeplabv3_resnet101",  # sic: the reference's entry points at DeepLabV3's recipe
    )
    DEFAULT = COCO_WITH_VOC_LABELS_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

_DILATED = {"replace_stride_with_dilation": [False, True, True]}


@register_model(task="segmentation", weights=FCN_ResNet50_Weights)
def fcn_resnet50(
    *,
    weights: FCN_ResNet50_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> FCN:
    """FCN with a dilated ResNet-50 backbone.

    Args:
        weights: an ``FCN_ResNet50_Weights`` member, its name, None, or the path of a local checkpoint.
        progress: show a download progress bar.
        num_classes: default: the weights' 21 VOC labels. With published weights, another value re-initialises
            the classifiers' last layers (with a warning) and loads everything else.
        aux_loss: add the auxiliary classifier on ``layer3`` (default: when ``weights`` are published ones).
        weights_backbone: the ImageNet weights of the backbone, used when ``weights`` is None.
        **kwargs: the deprecated ``pretrained_backbone``.
    """
    return build_segmentation(
        _fcn_resnet,
        resnet50,
        weights,
        progress,
        backbone_options=_DILATED,
        num_classes=num_classes,
        aux_loss=aux_loss,
        weights_backbone=weights_backbone,
        **kwargs,
    )


@register_model(task="segmentation", weights=FCN_ResNet101_Weights)
def fcn_resnet101(
    *,
    weights: FCN_ResNet101_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: ResNet101_Weights | str | None = ResNet101_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> FCN:
    """FCN with a dilated ResNet-101 backbone; arguments as ``fcn_resnet50``."""
    return build_segmentation(
        _fcn_resnet,
        resnet101,
        weights,
        progress,
        backbone_options=_DILATED,
        num_classes=num_classes,
        aux_loss=aux_loss,
        weights_backbone=weights_backbone,
        **kwargs,
    )
