"""MobileNet V2.

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (2018), https://arxiv.org/abs/1801.04381.
Each block expands the channels with a 1x1 convolution, filters them depthwise, and projects back with a
*linear* 1x1 convolution (no activation, so the narrow bottleneck keeps its information); the shortcut joins
the narrow ends.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..ops.misc import Conv2dNormActivation
from ._api import WeightsEnum, register_model
from ._features import inverted_residual_stages
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch, init_conv_net, make_divisible
from ._weights import imagenet_entry

__all__ = ["MobileNetV2", "MobileNet_V2_Weights", "mobilenet_v2"]

NormLayer = Callable[..., nn.Module]

# Rows of (expansion t, output channels c, repeats n, stride of the first repeat s): Table 2 of the paper.
_DEFAULT_SETTING = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


class InvertedResidual(nn.Module):
    """Expand (1x1, skipped when ``expand_ratio`` is 1), depthwise 3x3, linear 1x1 projection.

    The projection is a bare convolution and norm in ``conv`` (not a ``Conv2dNormActivation``) because the
    checkpoints store them flat as ``conv.<i>``.

    Raises:
        ValueError: ``stride`` is not 1 or 2.
    """

    def __init__(
        self, inp: int, oup: int, stride: int, expand_ratio: float, norm_layer: NormLayer | None = None
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        norm_layer = norm_layer or nn.BatchNorm2d
        hidden = int(round(inp * expand_ratio))
        conv_bn_relu6 = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=nn.ReLU6)

        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(inp, hidden, kernel_size=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            norm_layer(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        self.out_channels = oup
        # "Is a convolution that reduces resolution": detection and segmentation backbones cut stages here.
        self._is_cn = stride > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """A 3x3 stem, stacks of inverted residual blocks, a 1x1 convolution to ``last_channel``, pooling and a
    linear classifier.

    Args:
        num_classes: size of the classification head.
        width_mult: multiplies every layer's channels (the last layer's only when above 1).
        inverted_residual_setting: rows of ``[t, c, n, s]`` (expansion, channels, repeats, first stride);
            default: the paper's Table 2.
        round_nearest: channels are rounded to a multiple of this (1 turns rounding off).
        block: block constructor, called as ``block(inp, oup, stride, expand_ratio=t, norm_layer=...)``.
        norm_layer: normalisation layer constructor (default ``nn.BatchNorm2d``).
        dropout: dropout probability before the classifier.

    Raises:
        ValueError: the setting is empty or a row does not have four entries.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        inverted_residual_setting: list[list[int]] | None = None,
        round_nearest: int = 8,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: NormLayer | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        setting = _DEFAULT_SETTING if inverted_residual_setting is None else inverted_residual_setting
        if len(setting) == 0 or any(len(row) != 4 for row in setting):
            raise ValueError(
                f"inverted_residual_setting must be a non-empty list of [t, c, n, s] rows, got {setting!r}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        block = block or InvertedResidual
        norm_layer = norm_layer or nn.BatchNorm2d
        conv_bn_relu6 = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=nn.ReLU6)

        channels = make_divisible(32 * width_mult, round_nearest)
        # Thinner networks keep the full 1280-channel last layer; only wider ones widen it.
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [conv_bn_relu6(3, channels, stride=2)]
        for t, c, n, s in setting:
            out_channels = make_divisible(c * width_mult, round_nearest)
            for index in range(n):
                stride = s if index == 0 else 1
                features.append(block(channels, out_channels, stride, expand_ratio=t, norm_layer=norm_layer))
                channels = out_channels
        features.append(conv_bn_relu6(channels, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))

        init_conv_net(self)

    def _reset_classifier(self, num_classes: int) -> None:
        self.classifier[1] = linear_head(head_width(self.classifier[1]), num_classes, init=init_conv_net)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The maps ``features_only=True`` returns (:func:`inverted_residual_stages`)."""
        return inverted_residual_stages(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"


class MobileNet_V2_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        f"{_URL}mobilenet_v2-b0353104.pth",
        params=3504872,
        acc1=71.878,
        acc5=90.286,
        gflops=0.301,
        file_mb=13.555,
        recipe="https://github.com/pytorch/vision/tree/main/references/classification#mobilenetv2",
        docs="Trained with a simple recipe; close to the accuracy the paper reports.",
    )
    IMAGENET1K_V2 = imagenet_entry(
        f"{_URL}mobilenet_v2-7ebf99e0.pth",
        params=3504872,
        acc1=72.154,
        acc5=90.822,
        gflops=0.301,
        file_mb=13.598,
        recipe="https://github.com/pytorch/vision/issues/3995#new-recipe-with-reg-tuning",
        resize=232,
        docs="Retrained with TorchVision's improved recipe, with regularisation tuned for this small model; "
        "slightly above the paper. Evaluated after resizing to 232 pixels.",
    )
    DEFAULT = IMAGENET1K_V2


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


@register_model(weights=MobileNet_V2_Weights)
def mobilenet_v2(
    *, weights: MobileNet_V2_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> MobileNetV2:
    """MobileNet V2.

    Args:
        weights: a ``MobileNet_V2_Weights`` member, its name, ``None`` for random initialisation, or the
            path of a local checkpoint.
        progress: show a download progress bar.
        **kwargs: ``MobileNetV2`` arguments (num_classes, width_mult, inverted_residual_setting,
            round_nearest, block, norm_layer, dropout).
    """
    return build_model(MobileNetV2, weights, progress, **kwargs)
