"""S3D: separable 3D Inception.

Xie et al., "Rethinking Spatiotemporal Feature Learning: Speed-Accuracy Trade-offs in Video Classification"
(2018). An Inception-v1 (GoogLeNet) layout in which every 3x3 convolution after the 1x1 reductions is a spatial
1xkxk convolution followed by a temporal kx1x1 one, each with BatchNorm and ReLU. The head averages a fixed
2x7x7 window at stride 1, then the class scores over what remains, so clips must be large enough to fill it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...ops.misc import Conv3dNormActivation
from .._api import WeightsEnum, register_model
from .._heads import NoHead, head_width
from .._utils import build_model
from .._weights import kinetics_entry
from ._common import check_clip_batch

__all__ = ["S3D", "S3D_Weights", "s3d"]

NormLayer = Callable[..., nn.Module]


class TemporalSeparableConv(nn.Sequential):
    """A kxkxk convolution factored as 1xkxk (strided in space) then kx1x1 (strided in time), each followed by
    the norm and a ReLU."""

    def __init__(
        self, in_planes: int, out_planes: int, kernel_size: int, stride: int, padding: int, norm_layer: NormLayer
    ) -> None:
        k, s, p = kernel_size, stride, padding
        super().__init__(
            Conv3dNormActivation(
                in_planes, out_planes, (1, k, k), (1, s, s), (0, p, p), bias=False, norm_layer=norm_layer
            ),
            Conv3dNormActivation(
                out_planes, out_planes, (k, 1, 1), (s, 1, 1), (p, 0, 0), bias=False, norm_layer=norm_layer
            ),
        )


class SepInceptionBlock3D(nn.Module):
    """Four parallel branches concatenated along the channels: a 1x1x1 convolution; 1x1x1 then separable 3x3x3
    (two of these, of different widths); 3x3x3 max pooling then 1x1x1.

    Args:
        in_planes: input channels.
        b0_out: width of the 1x1x1 branch.
        b1_mid, b1_out, b2_mid, b2_out: reduction and output widths of the two separable branches.
        b3_out: width of the pooling branch.
        norm_layer: norm constructor.
    """

    def __init__(
        self,
        in_planes: int,
        b0_out: int,
        b1_mid: int,
        b1_out: int,
        b2_mid: int,
        b2_out: int,
        b3_out: int,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        pointwise = partial(Conv3dNormActivation, kernel_size=1, stride=1, norm_layer=norm_layer)
        separable = partial(TemporalSeparableConv, kernel_size=3, stride=1, padding=1, norm_layer=norm_layer)
        self.branch0 = pointwise(in_planes, b0_out)
        self.branch1 = nn.Sequential(pointwise(in_planes, b1_mid), separable(b1_mid, b1_out))
        self.branch2 = nn.Sequential(pointwise(in_planes, b2_mid), separable(b2_mid, b2_out))
        self.branch3 = nn.Sequential(nn.MaxPool3d(kernel_size=3, stride=1, padding=1), pointwise(in_planes, b3_out))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


# The Inception blocks' widths (in, b0_out, b1_mid, b1_out, b2_mid, b2_out, b3_out), Inception-v1's, with the
# max poolings between them.
_InceptionStep = tuple[int, int, int, int, int, int, int] | Callable[[], nn.Module]
_INCEPTION_LAYOUT: list[_InceptionStep] = [
    (192, 64, 96, 128, 16, 32, 32),
    (256, 128, 128, 192, 32, 96, 64),
    partial(nn.MaxPool3d, kernel_size=3, stride=2, padding=1),
    (480, 192, 96, 208, 16, 48, 64),
    (512, 160, 112, 224, 24, 64, 64),
    (512, 128, 128, 256, 24, 64, 64),
    (512, 112, 144, 288, 32, 64, 64),
    (528, 256, 160, 320, 32, 128, 128),
    partial(nn.MaxPool3d, kernel_size=2, stride=2),
    (832, 256, 160, 320, 32, 128, 128),
    (832, 384, 192, 384, 48, 128, 128),
]

_POOL_WINDOW = (2, 7, 7)  # the head's averaging window, in (T, H, W) cells of stride (8, 32, 32)


class S3D(nn.Module):
    """S3D: separable stem, Inception stages, 2x7x7 average pooling, dropout, a 1x1x1 convolution as the head,
    and the mean of the scores over the remaining positions.

    Takes ``(N, 3, T, H, W)`` clips whose final feature map covers the pooling window: in practice at least
    14 frames of 224x224 (the published weights' ``min_temporal_size`` and ``min_size``).

    Args:
        num_classes: size of the head.
        dropout: dropout before the head.
        norm_layer: norm constructor (default ``BatchNorm3d(eps=0.001, momentum=0.001)``).

    Raises:
        ValueError: a non-positive ``num_classes`` or a dropout outside [0, 1].
    """

    def __init__(self, num_classes: int = 400, dropout: float = 0.2, norm_layer: NormLayer | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"dropout must be in [0, 1], got {dropout!r}")
        norm_layer = norm_layer or partial(nn.BatchNorm3d, eps=0.001, momentum=0.001)
        spatial_pool = partial(nn.MaxPool3d, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        layers: list[nn.Module] = [
            TemporalSeparableConv(3, 64, 7, 2, 3, norm_layer),
            spatial_pool(),
            Conv3dNormActivation(64, 64, kernel_size=1, stride=1, norm_layer=norm_layer),
            TemporalSeparableConv(64, 192, 3, 1, 1, norm_layer),
            spatial_pool(),
        ]
        for step in _INCEPTION_LAYOUT:
            layers.append(SepInceptionBlock3D(*step, norm_layer=norm_layer) if isinstance(step, tuple) else step())
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AvgPool3d(kernel_size=_POOL_WINDOW, stride=1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Conv3d(1024, num_classes, kernel_size=1))

    def _reset_classifier(self, num_classes: int) -> None:
        width = head_width(self.classifier[1])
        self.classifier[1] = nn.Conv3d(width, num_classes, kernel_size=1) if num_classes else NoHead(width)

    def forward(self, x: Tensor) -> Tensor:
        check_clip_batch(x, type(self).__name__)
        x = self.features(x)
        if isinstance(x, Tensor) and any(size < window for size, window in zip(x.shape[2:], _POOL_WINDOW)):
            raise ValueError(
                f"S3D needs clips of at least 14 frames of 224x224 pixels: a {tuple(x.shape[2:])} (T, H, W) feature map "
                f"is smaller than the {_POOL_WINDOW} pooling window of the head"
            )
        return self.classifier(self.avgpool(x)).mean(dim=(2, 3, 4))


class S3D_Weights(WeightsEnum):
    KINETICS400_V1 = kinetics_entry(
        "https://download.pytorch.org/models/s3d-d76dad2f.pth",
        params=8320048,
        acc1=68.368,
        acc5=88.05,
        gflops=17.979,
        file_mb=31.972,
        recipe="https://github.com/pytorch/vision/tree/main/references/video_classification#s3d",
        docs=(
            "The weights aim to approximate the accuracy of the paper. The accuracies are estimated on clip-level "
            "with parameters `frame_rate=15`, `clips_per_video=1`, and `clip_len=128`."
        ),
        crop=(224, 224),
        resize=(256, 256),
        min_size=(224, 224),
        min_temporal_size=14,
    )
    DEFAULT = KINETICS400_V1


@register_model(task="video", weights=S3D_Weights)
def s3d(*, weights: S3D_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> S3D:
    """S3D (Kinetics-400 weights take clips of at least 14 frames of 224x224 pixels)."""
    return build_model(S3D, weights, progress, **kwargs)
