"""Lite R-ASPP: MobileNetV3's light segmentation head.

Howard et al., "Searching for MobileNetV3" (2019), https://arxiv.org/abs/1905.02244, section 6.4. The last
feature map is gated by a squeeze-and-excitation-like global branch (a sigmoid of its pooled projection),
upsampled to the stride-8 map, and the class scores of both maps are summed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._api import WeightsEnum, register_model
from .._heads import head_width, require_classes
from .._utils import check_image_batch
from .._weights import segmentation_entry
from ..mobilenetv3 import MobileNet_V3_Large_Weights, mobilenet_v3_large
from ._base import build_segmentation, mobilenet_v3_features, upsample_to

__all__ = ["LRASPP", "LRASPPHead", "LRASPP_MobileNet_V3_Large_Weights", "lraspp_mobilenet_v3_large"]


class LRASPPHead(nn.Module):
    """Scores from the stride-8 (``"low"``) and the last (``"high"``) feature maps.

    The high map goes through a 1x1 convolution, BatchNorm and ReLU, is multiplied by a per-channel gate (global
    average, 1x1 convolution, sigmoid), upsampled to the low map's size and classified; the low map is classified
    directly, and the two scores are added.
    """

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(inplace=True),
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low, high = features["low"], features["high"]
        gated = upsample_to(self.cbr(high) * self.scale(high), low.shape[-2:])
        return self.low_classifier(low) + self.high_classifier(gated)


class LRASPP(nn.Module):
    """Lite R-ASPP: a backbone returning ``{"low": ..., "high": ...}`` and an :class:`LRASPPHead`.

    Args:
        backbone: returns the stride-8 map as ``"low"`` and the last map as ``"high"``.
        low_channels, high_channels: their channels.
        num_classes: number of classes, the background included.
        inter_channels: width of the head's gated branch.

    The forward returns ``{"out": scores}``, ``(N, num_classes, H, W)`` for an input ``(N, 3, H, W)``.
    """

    def __init__(
        self, backbone: nn.Module, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = 128
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = LRASPPHead(low_channels, high_channels, num_classes, inter_channels)

    def _reset_classifier(self, num_classes: int) -> None:
        require_classes(num_classes, type(self).__name__)
        head = self.classifier
        head.low_classifier = nn.Conv2d(head_width(head.low_classifier), num_classes, 1)
        head.high_classifier = nn.Conv2d(head_width(head.high_classifier), num_classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_image_batch(x, type(self).__name__)
        return {"out": upsample_to(self.classifier(self.backbone(x)), x.shape[-2:])}


def _lraspp_mobilenet_v3(network: nn.Module, num_classes: int, aux: bool) -> LRASPP:
    backbone, channels = mobilenet_v3_features(network, last="high", stride8="low")
    return LRASPP(backbone, channels["low"], channels["high"], num_classes)


class LRASPP_MobileNet_V3_Large_Weights(WeightsEnum):
    COCO_WITH_VOC_LABELS_V1 = segmentation_entry(
        "https://download.pytorch.org/models/lraspp_mobilenet_v3_large-d234d4ea.pth",
        params=3221538,
        miou=57.9,
        pixel_acc=91.2,
        gflops=2.086,
        file_mb=12.49,
        recipe="https://github.com/pytorch/vision/tree/main/references/segmentation#lraspp_mobilenet_v3_large",
    )
    DEFAULT = COCO_WITH_VOC_LABELS_V1


@register_model(task="segmentation", weights=LRASPP_MobileNet_V3_Large_Weights)
def lraspp_mobilenet_v3_large(
    *,
    weights: LRASPP_MobileNet_V3_Large_Weights | str | Path | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: MobileNet_V3_Large_Weights | str | None = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> LRASPP:
    """Lite R-ASPP with a MobileNetV3-Large backbone whose last stage is dilated (output stride 16).

    Args:
        weights: an ``LRASPP_MobileNet_V3_Large_Weights`` member, its name, None, or a local checkpoint's path.
        progress: show a download progress bar.
        num_classes: default: the weights' 21 VOC labels. With published weights, another value re-initialises
            both classifiers (with a warning) and loads everything else.
        aux_loss: accepted for a uniform interface; this model has no auxiliary classifier, so only False/None.
        weights_backbone: the ImageNet weights of the backbone, used when ``weights`` is None.
        **kwargs: the deprecated ``pretrained_backbone``.

    Raises:
        ValueError: ``aux_loss=True``.
    """
    if aux_loss:
        raise ValueError("lraspp_mobilenet_v3_large has no auxiliary classifier: aux_loss must be False or None")
    return build_segmentation(
        _lraspp_mobilenet_v3,
        mobilenet_v3_large,
        weights,
        progress,
        backbone_options={"dilated": True},
        num_classes=num_classes,
        aux_loss=False,
        weights_backbone=weights_backbone,
        **kwargs,
    )
