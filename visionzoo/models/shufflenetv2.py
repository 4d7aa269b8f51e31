"""ShuffleNet V2.

Ma et al., "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design" (2018),
https://arxiv.org/abs/1807.11164. Each unit splits its channels in two, transforms one half (the other is
kept, or downsampled when the unit strides), concatenates, and shuffles the channels so that information
crosses between the halves in the next unit.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._api import WeightsEnum, register_model
from ._features import sequential_stages
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch, conv_bn_layers, set_or_check
from ._weights import imagenet_entry

__all__ = [
    "ShuffleNetV2",
    "ShuffleNet_V2_X0_5_Weights",
    "ShuffleNet_V2_X1_0_Weights",
    "ShuffleNet_V2_X1_5_Weights",
    "ShuffleNet_V2_X2_0_Weights",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Reorder the channels of ``x`` (N, C, H, W) from ``groups`` blocks of ``C / groups`` to interleaved.

    Only shape operations, so it runs on any device (``meta`` included); written with the reference's operations
    so that ``torch.fx`` node names (``stage2.0.view``, ``stage2.0.transpose``, ...) are the same.
    """
    batch, channels, height, width = x.size()
    x = x.view(batch, groups, channels // groups, height, width)
    return x.transpose(1, 2).contiguous().view(batch, -1, height, width)


class InvertedResidual(nn.Module):
    """A ShuffleNet V2 unit (Fig. 3 (c) and (d) of the paper).

    With stride 1, half the channels pass through and ``branch2`` transforms the other half; with a larger
    stride, ``branch1`` (depthwise then pointwise) and ``branch2`` both read the whole input and each produce
    half of ``oup`` channels.

    Raises:
        ValueError: ``stride`` is outside 1-3, or a stride-1 unit would not keep its width (``inp`` must equal
            ``oup`` rounded down to an even number).
    """

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError(f"ShuffleNetV2 units take stride 1, 2 or 3, got {stride}")
        branch_channels = oup // 2
        if stride == 1 and inp != 2 * branch_channels:
            raise ValueError(
                f"A stride-1 ShuffleNetV2 unit keeps its width: inp ({inp}) must equal 2 * (oup // 2) "
                f"({2 * branch_channels})"
            )
        self.stride = stride
        self.out_channels = 2 * branch_channels
        if stride > 1:
            self.branch1 = nn.Sequential(
                *conv_bn_layers(inp, inp, 3, stride, groups=inp, relu=False),
                *conv_bn_layers(inp, branch_channels, 1),
            )
        else:
            # The pass-through half; an empty Sequential keeps the attribute on every unit.
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            *conv_bn_layers(inp if stride > 1 else branch_channels, branch_channels, 1),
            *conv_bn_layers(branch_channels, branch_channels, 3, stride, groups=branch_channels, relu=False),
            *conv_bn_layers(branch_channels, branch_channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, transformed = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(transformed)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """A strided 3x3 convolution and max-pool, three stages of units, a 1x1 convolution, pooling and a linear
    classifier.

    Args:
        stages_repeats: number of units in each of the three stages (the first of each strides by 2).
        stages_out_channels: five widths: the stem, the three stages and the final 1x1 convolution.
        num_classes: size of the classification head.
        inverted_residual: unit constructor, called as ``inverted_residual(inp, oup, stride)``.

    Raises:
        ValueError: ``stages_repeats`` does not hold 3 positive ints or ``stages_out_channels`` not 5.
    """

    def __init__(
        self,
        stages_repeats: list[int],
        stages_out_channels: list[int],
        num_classes: int = 1000,
        inverted_residual: Callable[..., nn.Module] = InvertedResidual,
    ) -> None:
        super().__init__()
        if len(stages_repeats) != 3 or any(not isinstance(r, int) or r < 1 for r in stages_repeats):
            raise ValueError(f"stages_repeats must be 3 positive ints, got {stages_repeats!r}")
        if len(stages_out_channels) != 5:
            raise ValueError(
                f"stages_out_channels must be 5 ints (stem, 3 stages, last conv), got {stages_out_channels!r}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        widths, last = stages_out_channels[:4], stages_out_channels[4]

        def stage(index: int) -> nn.Sequential:
            inp, oup, repeats = widths[index], widths[index + 1], stages_repeats[index]
            rest = (inverted_residual(oup, oup, 1) for _ in range(repeats - 1))
            return nn.Sequential(inverted_residual(inp, oup, 2), *rest)

        # Plain Sequentials, not Conv2dNormActivation: torch.fx feature extraction keeps that layer as one node,
        # and the reference's stem and last convolution expose conv, BN and ReLU as three.
        self.conv1 = nn.Sequential(*conv_bn_layers(3, widths[0], 3, stride=2))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage2, self.stage3, self.stage4 = stage(0), stage(1), stage(2)
        self.conv5 = nn.Sequential(*conv_bn_layers(widths[3], last, 1))
        self.fc = nn.Linear(last, num_classes)

    def _reset_classifier(self, num_classes: int) -> None:
        self.fc = linear_head(head_width(self.fc), num_classes)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """``conv1`` (stride 2), ``maxpool`` (4), ``stage2``, ``stage3`` (8, 16) and ``conv5`` (32): the maps
        ``features_only=True`` returns."""
        return sequential_stages(self, exclude=("fc",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_ported = partial(
    imagenet_entry,
    recipe="https://github.com/ericsun99/Shufflenet-v2-Pytorch",
    docs="Ported from ericsun99/Shufflenet-v2-Pytorch, trained from scratch to reproduce the paper closely.",
)
_new = partial(
    imagenet_entry,
    recipe="https://github.com/pytorch/vision/pull/5906",
    resize=232,
    docs="Trained from scratch with TorchVision's improved recipe; evaluated after resizing to 232 pixels.",
)


class ShuffleNet_V2_X0_5_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported(
        f"{_URL}shufflenetv2_x0.5-f707e7126e.pth", params=1366792, acc1=60.552, acc5=81.746, gflops=0.04, file_mb=5.282
    )
    DEFAULT = IMAGENET1K_V1


class ShuffleNet_V2_X1_0_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported(
        f"{_URL}shufflenetv2_x1-5666bf0f80.pth", params=2278604, acc1=69.362, acc5=88.316, gflops=0.145, file_mb=8.791
    )
    DEFAULT = IMAGENET1K_V1


class ShuffleNet_V2_X1_5_Weights(WeightsEnum):
    IMAGENET1K_V1 = _new(
        f"{_URL}shufflenetv2_x1_5-3c479a10.pth", params=3503624, acc1=72.996, acc5=91.086, gflops=0.296, file_mb=13.557
    )
    DEFAULT = IMAGENET1K_V1


class ShuffleNet_V2_X2_0_Weights(WeightsEnum):
    IMAGENET1K_V1 = _new(
        f"{_URL}shufflenetv2_x2_0-8be3c8ee.pth", params=7393996, acc1=76.23, acc5=93.006, gflops=0.583, file_mb=28.433
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _shufflenet_v2(
    channels: list[int], weights: WeightsEnum | Path | None, progress: bool, **kwargs: Any
) -> ShuffleNetV2:
    set_or_check(kwargs, "stages_repeats", [4, 8, 4])
    set_or_check(kwargs, "stages_out_channels", channels)
    return build_model(ShuffleNetV2, weights, progress, **kwargs)


@register_model(weights=ShuffleNet_V2_X0_5_Weights)
def shufflenet_v2_x0_5(
    *, weights: ShuffleNet_V2_X0_5_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ShuffleNetV2:
    """ShuffleNet V2 with 0.5x channels.

    Args:
        weights: a ``ShuffleNet_V2_X0_5_Weights`` member, its name, ``None`` for random initialisation, or
            the path of a local checkpoint.
        progress: show a download progress bar.
        **kwargs: ``ShuffleNetV2`` arguments (num_classes, inverted_residual).
    """
    return _shufflenet_v2([24, 48, 96, 192, 1024], weights, progress, **kwargs)


@register_model(weights=ShuffleNet_V2_X1_0_Weights)
def shufflenet_v2_x1_0(
    *, weights: ShuffleNet_V2_X1_0_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ShuffleNetV2:
    """ShuffleNet V2 with 1.0x channels."""
    return _shufflenet_v2([24, 116, 232, 464, 1024], weights, progress, **kwargs)


@register_model(weights=ShuffleNet_V2_X1_5_Weights)
def shufflenet_v2_x1_5(
    *, weights: ShuffleNet_V2_X1_5_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ShuffleNetV2:
    """ShuffleNet V2 with 1.5x channels."""
    return _shufflenet_v2([24, 176, 352, 704, 1024], weights, progress, **kwargs)


@register_model(weights=ShuffleNet_V2_X2_0_Weights)
def shufflenet_v2_x2_0(
    *, weights: ShuffleNet_V2_X2_0_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ShuffleNetV2:
    """ShuffleNet V2 with 2.0x channels."""
    return _shufflenet_v2([24, 244, 488, 976, 2048], weights, progress, **kwargs)
