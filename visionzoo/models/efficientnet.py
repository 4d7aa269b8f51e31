"""EfficientNet (B0-B7) and EfficientNetV2 (S, M, L).

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks" (2019); Tan & Le,
"EfficientNetV2: Smaller Models and Faster Training" (2021). B1-B7 scale the B0 baseline's widths and depths
by the compound-scaling multipliers; V2 replaces the early MBConv stages by FusedMBConv (one full 3x3
convolution in place of expand + depthwise) and stops channel growth from depending on a multiplier.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..ops.misc import Conv2dNormActivation, SqueezeExcitation, StochasticDepth
from ..transforms import InterpolationMode
from ._api import WeightsEnum, register_model
from ._features import last_per_stride
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch, init_conv_net, make_divisible
from ._weights import imagenet_entry

__all__ = [
    "EfficientNet",
    "MBConv",
    "FusedMBConv",
    "MBConvConfig",
    "FusedMBConvConfig",
    "EfficientNet_B0_Weights",
    "EfficientNet_B1_Weights",
    "EfficientNet_B2_Weights",
    "EfficientNet_B3_Weights",
    "EfficientNet_B4_Weights",
    "EfficientNet_B5_Weights",
    "EfficientNet_B6_Weights",
    "EfficientNet_B7_Weights",
    "EfficientNet_V2_S_Weights",
    "EfficientNet_V2_M_Weights",
    "EfficientNet_V2_L_Weights",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_s",
    "efficientnet_v2_m",
    "efficientnet_v2_l",
]

NormLayer = Callable[..., nn.Module]


# --------------------------------------------------------------------------------------------------
# Stage configurations (one row of Table 1 of the EfficientNet paper / Table 4 of the V2 paper)
# --------------------------------------------------------------------------------------------------


@dataclass
class _StageConfig:
    """A stage of ``num_layers`` identical blocks; only the first one strides and changes the width."""

    expand_ratio: float
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int
    block: Callable[..., nn.Module]

    @staticmethod
    def adjust_channels(channels: int, width_mult: float, min_value: int | None = None) -> int:
        """``channels * width_mult`` rounded to a multiple of 8 (the rounding every width goes through)."""
        return make_divisible(channels * width_mult, 8, min_value)


class MBConvConfig(_StageConfig):
    """A stage of MBConv blocks; widths and depth are scaled by the compound-scaling multipliers.

    Args:
        expand_ratio: inner width of each block relative to its input width.
        kernel: depthwise kernel size.
        stride: stride of the stage's first block.
        input_channels, out_channels, num_layers: the B0 values, before scaling.
        width_mult, depth_mult: compound-scaling multipliers (channels rounded to multiples of 8, depth rounded up).
        block: the block class (default :class:`MBConv`).
    """

    def __init__(
        self,
        expand_ratio: float,
        kernel: int,
        stride: int,
        input_channels: int,
        out_channels: int,
        num_layers: int,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        block: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__(
            expand_ratio,
            kernel,
            stride,
            self.adjust_channels(input_channels, width_mult),
            self.adjust_channels(out_channels, width_mult),
            self.adjust_depth(num_layers, depth_mult),
            block or MBConv,
        )

    @staticmethod
    def adjust_depth(num_layers: int, depth_mult: float) -> int:
        return int(math.ceil(num_layers * depth_mult))


class FusedMBConvConfig(_StageConfig):
    """A stage of FusedMBConv blocks (EfficientNetV2's early stages); no scaling multipliers.

    Args:
        expand_ratio, kernel, stride, input_channels, out_channels, num_layers: as :class:`MBConvConfig`.
        block: the block class (default :class:`FusedMBConv`).
    """

    def __init__(
        self,
        expand_ratio: float,
        kernel: int,
        stride: int,
        input_channels: int,
        out_channels: int,
        num_layers: int,
        block: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__(expand_ratio, kernel, stride, input_channels, out_channels, num_layers, block or FusedMBConv)


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


class _ResidualBlock(nn.Module):
    """``block(x)``, plus ``x`` through stochastic depth when the block keeps the shape."""

    def __init__(self, cnf: _StageConfig, block: nn.Sequential, stochastic_depth_prob: float) -> None:
        super().__init__()
        if cnf.stride not in (1, 2):
            raise ValueError(f"{type(self).__name__} stride must be 1 or 2, got {cnf.stride}")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        self.block = block
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out)
            out += x  # in place: a fresh tensor either way
        return out


class MBConv(_ResidualBlock):
    """Mobile inverted bottleneck: 1x1 expand, depthwise kxk, squeeze-and-excitation, 1x1 project (linear).

    The expansion is left out when ``expand_ratio`` is 1. The SE bottleneck is a quarter of the block's
    *input* width (not of the expanded width), as in the paper's implementation.
    """

    def __init__(
        self,
        cnf: MBConvConfig,
        stochastic_depth_prob: float,
        norm_layer: NormLayer,
        se_layer: Callable[..., nn.Module] = SqueezeExcitation,
    ) -> None:
        conv = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=nn.SiLU)
        hidden = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        layers: list[nn.Module] = []
        if hidden != cnf.input_channels:
            layers.append(conv(cnf.input_channels, hidden, kernel_size=1))
        layers += [
            conv(hidden, hidden, kernel_size=cnf.kernel, stride=cnf.stride, groups=hidden),
            se_layer(hidden, max(1, cnf.input_channels // 4), activation=partial(nn.SiLU, inplace=True)),
            conv(hidden, cnf.out_channels, kernel_size=1, activation_layer=None),
        ]
        super().__init__(cnf, nn.Sequential(*layers), stochastic_depth_prob)


class FusedMBConv(_ResidualBlock):
    """EfficientNetV2's fused block: one kxk convolution expands (and strides), a 1x1 projects.

    With ``expand_ratio`` 1 the kxk convolution maps straight to the output width and there is no projection.
    """

    def __init__(self, cnf: FusedMBConvConfig, stochastic_depth_prob: float, norm_layer: NormLayer) -> None:
        conv = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=nn.SiLU)
        hidden = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        if hidden == cnf.input_channels:
            layers = [conv(cnf.input_channels, cnf.out_channels, kernel_size=cnf.kernel, stride=cnf.stride)]
        else:
            layers = [
                conv(cnf.input_channels, hidden, kernel_size=cnf.kernel, stride=cnf.stride),
                conv(hidden, cnf.out_channels, kernel_size=1, activation_layer=None),
            ]
        super().__init__(cnf, nn.Sequential(*layers), stochastic_depth_prob)


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def _uniform_by_fan_out(linear: nn.Linear) -> None:
    bound = 1.0 / math.sqrt(linear.out_features)
    nn.init.uniform_(linear.weight, -bound, bound)


class EfficientNet(nn.Module):
    """A strided 3x3 stem, stages of (Fused)MBConv blocks, a 1x1 head convolution, pooling and a linear head.

    Args:
        inverted_residual_setting: the stages, as :class:`MBConvConfig` / :class:`FusedMBConvConfig`.
        dropout: dropout probability before the classifier.
        stochastic_depth_prob: drop probability of the last block; block ``i`` of ``n`` uses ``p * i / n``.
        num_classes: size of the classification head.
        norm_layer: normalisation layer constructor (default ``nn.BatchNorm2d``).
        last_channel: width of the head convolution (default: four times the last stage's width).

    ``features`` holds the stem, one ``nn.Sequential`` per stage, and the head convolution;
    ``feature_info`` lists the last of them at each stride (its output channels and stride): the stages
    ``features_only=True`` returns.

    Raises:
        ValueError: an empty setting, stages whose widths do not chain, a stride other than 1 or 2, or
            ``num_classes`` < 1.
        TypeError: the setting holds something other than stage configurations.
    """

    def __init__(
        self,
        inverted_residual_setting: Sequence[MBConvConfig | FusedMBConvConfig],
        dropout: float,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
        norm_layer: NormLayer | None = None,
        last_channel: int | None = None,
    ) -> None:
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("inverted_residual_setting must list at least one stage, got an empty setting")
        if not isinstance(inverted_residual_setting, Sequence) or not all(
            isinstance(cnf, _StageConfig) for cnf in inverted_residual_setting
        ):
            raise TypeError("inverted_residual_setting must be a sequence of MBConvConfig / FusedMBConvConfig")
        for index, (prev, cnf) in enumerate(zip(inverted_residual_setting, inverted_residual_setting[1:]), start=1):
            if cnf.input_channels != prev.out_channels:
                raise ValueError(
                    f"stage {index} of inverted_residual_setting takes {cnf.input_channels} channels but stage "
                    f"{index - 1} produces {prev.out_channels} (after width scaling)"
                )
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        norm_layer = norm_layer or nn.BatchNorm2d

        stem_channels = inverted_residual_setting[0].input_channels
        conv = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=nn.SiLU)
        layers: list[nn.Module] = [conv(3, stem_channels, kernel_size=3, stride=2)]
        stride = 2
        self.feature_info: list[dict[str, Any]] = []
        self._add_feature_info(0, stem_channels, stride)

        total_blocks = sum(cnf.num_layers for cnf in inverted_residual_setting)
        block_id = 0
        for cnf in inverted_residual_setting:
            stage: list[nn.Module] = []
            for index in range(cnf.num_layers):
                block_cnf = cnf
                if index > 0:  # blocks after the first keep the stage's width and resolution
                    block_cnf = copy.copy(cnf)
                    block_cnf.input_channels, block_cnf.stride = cnf.out_channels, 1
                stage.append(cnf.block(block_cnf, stochastic_depth_prob * block_id / total_blocks, norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            stride *= cnf.stride
            self._add_feature_info(len(layers) - 1, cnf.out_channels, stride)

        head_in = inverted_residual_setting[-1].out_channels
        head_out = last_channel if last_channel is not None else 4 * head_in
        layers.append(conv(head_in, head_out, kernel_size=1))
        self._add_feature_info(len(layers) - 1, head_out, stride)
        self.feature_info = last_per_stride(self.feature_info)

        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(head_out, num_classes))

        init_conv_net(self, linear=_uniform_by_fan_out)

    def _reset_classifier(self, num_classes: int) -> None:
        init = partial(init_conv_net, linear=_uniform_by_fan_out)
        self.classifier[1] = linear_head(head_width(self.classifier[1]), num_classes, init=init)

    def _add_feature_info(self, index: int, channels: int, stride: int) -> None:
        self.feature_info.append({"name": f"features.{index}", "channels": channels, "stride": stride})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The head convolution's feature map (N, C, H/32, W/32)."""
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        x = self.avgpool(self.forward_features(x))
        return self.classifier(torch.flatten(x, 1))


def _v1_setting(width_mult: float, depth_mult: float) -> list[MBConvConfig]:
    """Table 1 of the EfficientNet paper (the B0 baseline), scaled by the variant's multipliers."""
    stage = partial(MBConvConfig, width_mult=width_mult, depth_mult=depth_mult)
    return [
        stage(1, 3, 1, 32, 16, 1),
        stage(6, 3, 2, 16, 24, 2),
        stage(6, 5, 2, 24, 40, 2),
        stage(6, 3, 2, 40, 80, 3),
        stage(6, 5, 1, 80, 112, 3),
        stage(6, 5, 2, 112, 192, 4),
        stage(6, 3, 1, 192, 320, 1),
    ]


def _v2_setting(size: str) -> list[MBConvConfig | FusedMBConvConfig]:
    """Table 4 of the EfficientNetV2 paper (S), and the M and L stages of its official implementation."""
    fused, mb = FusedMBConvConfig, MBConvConfig
    settings: dict[str, list[MBConvConfig | FusedMBConvConfig]] = {
        "s": [
            fused(1, 3, 1, 24, 24, 2),
            fused(4, 3, 2, 24, 48, 4),
            fused(4, 3, 2, 48, 64, 4),
            mb(4, 3, 2, 64, 128, 6),
            mb(6, 3, 1, 128, 160, 9),
            mb(6, 3, 2, 160, 256, 15),
        ],
        "m": [
            fused(1, 3, 1, 24, 24, 3),
            fused(4, 3, 2, 24, 48, 5),
            fused(4, 3, 2, 48, 80, 5),
            mb(4, 3, 2, 80, 160, 7),
            mb(6, 3, 1, 160, 176, 14),
            mb(6, 3, 2, 176, 304, 18),
            mb(6, 3, 1, 304, 512, 5),
        ],
        "l": [
            fused(1, 3, 1, 32, 32, 4),
            fused(4, 3, 2, 32, 64, 7),
            fused(4, 3, 2, 64, 96, 7),
            mb(4, 3, 2, 96, 192, 10),
            mb(6, 3, 1, 192, 224, 19),
            mb(6, 3, 2, 224, 384, 25),
            mb(6, 3, 1, 384, 640, 7),
        ],
    }
    return settings[size]


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPE = "https://github.com/pytorch/vision/tree/main/references/classification#efficientnet"
_DOCS_PORTED = "Converted from the checkpoints released with the paper."
_DOCS_RETRAINED = (
    "Trained by TorchVision with a tuned version of its improved recipe (longer schedule, stronger augmentation "
    "and regularisation), beating the accuracy the paper reports."
)
_ported_v1 = partial(imagenet_entry, recipe=f"{_RECIPE}-v1", docs=_DOCS_PORTED, interpolation=InterpolationMode.BICUBIC)
_v2 = partial(imagenet_entry, recipe=f"{_RECIPE}-v2", min_size=(33, 33))


class EfficientNet_B0_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported_v1(
        f"{_URL}efficientnet_b0_rwightman-7f5810bc.pth",
        params=5288548,
        acc1=77.692,
        acc5=93.532,
        gflops=0.386,
        file_mb=20.451,
        crop=224,
        resize=256,
    )
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B1_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported_v1(
        f"{_URL}efficientnet_b1_rwightman-bac287d4.pth",
        params=7794184,
        acc1=78.642,
        acc5=94.186,
        gflops=0.687,
        file_mb=30.134,
        crop=240,
        resize=256,
    )
    # Retrained, so unlike the ported entries it is evaluated with bilinear resizing, to 255 pixels.
    IMAGENET1K_V2 = imagenet_entry(
        f"{_URL}efficientnet_b1-c27df63c.pth",
        params=7794184,
        acc1=79.838,
        acc5=94.934,
        gflops=0.687,
        file_mb=30.136,
        recipe="https://github.com/pytorch/vision/issues/3995#new-recipe-with-lr-wd-crop-tuning",
        docs=_DOCS_RETRAINED,
        crop=240,
        resize=255,
    )
    DEFAULT = IMAGENET1K_V2


class EfficientNet_B2_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported_v1(
        f"{_URL}efficientnet_b2_rwightman-c35c1473.pth",
        params=9109994,
        acc1=80.608,
        acc5=95.31,
        gflops=1.088,
        file_mb=35.174,
        crop=288,
        resize=288,
    )
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B3_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported_v1(
        f"{_URL}efficientnet_b3_rwightman-b3899882.pth",
        params=12233232,
        acc1=82.008,
        acc5=96.054,
        gflops=1.827,
        file_mb=47.184,
        crop=300,
        resize=320,
    )
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B4_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported_v1(
        f"{_URL}efficientnet_b4_rwightman-23ab8bcd.pth",
        params=19341616,
        acc1=83.384,
        acc5=96.594,
        gflops=4.394,
        file_mb=74.489,
        crop=380,
        resize=384,
    )
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B5_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported_v1(
        f"{_URL}efficientnet_b5_lukemelas-1a07897c.pth",
        params=30389784,
        acc1=83.444,
        acc5=96.628,
        gflops=10.266,
        file_mb=116.864,
        crop=456,
        resize=456,
    )
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B6_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported_v1(
        f"{_URL}efficientnet_b6_lukemelas-24a108a5.pth",
        params=43040704,
        acc1=84.008,
        acc5=96.916,
        gflops=19.068,
        file_mb=165.362,
        crop=528,
        resize=528,
    )
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B7_Weights(WeightsEnum):
    IMAGENET1K_V1 = _ported_v1(
        f"{_URL}efficientnet_b7_lukemelas-c5b4e57e.pth",
        params=66347960,
        acc1=84.122,
        acc5=96.908,
        gflops=37.746,
        file_mb=254.675,
        crop=600,
        resize=600,
    )
    DEFAULT = IMAGENET1K_V1


class EfficientNet_V2_S_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v2(
        f"{_URL}efficientnet_v2_s-dd5fe13b.pth",
        params=21458488,
        acc1=84.228,
        acc5=96.878,
        gflops=8.366,
        file_mb=82.704,
        crop=384,
        resize=384,
        docs=_DOCS_RETRAINED,
    )
    DEFAULT = IMAGENET1K_V1


class EfficientNet_V2_M_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v2(
        f"{_URL}efficientnet_v2_m-dc08266a.pth",
        params=54139356,
        acc1=85.112,
        acc5=97.156,
        gflops=24.582,
        file_mb=208.01,
        crop=480,
        resize=480,
        docs=_DOCS_RETRAINED,
    )
    DEFAULT = IMAGENET1K_V1


class EfficientNet_V2_L_Weights(WeightsEnum):
    # Converted from the official TensorFlow release, which maps pixels to [-1, 1] (mean = std = 0.5).
    IMAGENET1K_V1 = _v2(
        f"{_URL}efficientnet_v2_l-59c71312.pth",
        params=118515272,
        acc1=85.808,
        acc5=97.788,
        gflops=56.08,
        file_mb=454.573,
        crop=480,
        resize=480,
        interpolation=InterpolationMode.BICUBIC,
        docs=_DOCS_PORTED,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

WeightsArg = WeightsEnum | Path | str | None

# B5-B7 were converted from TensorFlow checkpoints, whose BatchNorm uses eps=1e-3 and a running-average
# decay of 0.99 (momentum 0.01 here); B0-B4 come from timm and keep PyTorch's defaults. V2 keeps TF's eps.
_TF_BATCHNORM = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
_V2_BATCHNORM = partial(nn.BatchNorm2d, eps=1e-3)


def _efficientnet(
    setting: list[MBConvConfig | FusedMBConvConfig],
    default_dropout: float,
    weights: WeightsArg,
    progress: bool,
    **kwargs: Any,
) -> EfficientNet:
    """Build with the variant's defaults for dropout (and norm_layer, last_channel); the caller's kwargs win."""
    if "inverted_residual_setting" in kwargs:
        raise ValueError(
            "The efficientnet_* builders fix inverted_residual_setting; "
            "build EfficientNet(...) directly for custom stages"
        )
    kwargs.setdefault("dropout", default_dropout)
    return build_model(EfficientNet, weights, progress, inverted_residual_setting=setting, **kwargs)


def _efficientnet_v1(
    width_mult: float,
    depth_mult: float,
    default_dropout: float,
    weights: WeightsArg,
    progress: bool,
    *,
    tf_batchnorm: bool = False,
    **kwargs: Any,
) -> EfficientNet:
    if tf_batchnorm:
        kwargs.setdefault("norm_layer", _TF_BATCHNORM)
    return _efficientnet(_v1_setting(width_mult, depth_mult), default_dropout, weights, progress, **kwargs)


def _efficientnet_v2(
    size: str, default_dropout: float, weights: WeightsArg, progress: bool, **kwargs: Any
) -> EfficientNet:
    kwargs.setdefault("norm_layer", _V2_BATCHNORM)
    kwargs.setdefault("last_channel", 1280)
    return _efficientnet(_v2_setting(size), default_dropout, weights, progress, **kwargs)


@register_model(weights=EfficientNet_B0_Weights)
def efficientnet_b0(
    *, weights: EfficientNet_B0_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B0, the baseline found by architecture search.

    Args:
        weights: an ``EfficientNet_B0_Weights`` member, its name, ``None`` for random initialisation, or the
            path of a local ``.pth``/``.safetensors`` checkpoint.
        progress: show a download progress bar.
        **kwargs: ``EfficientNet`` arguments (dropout, stochastic_depth_prob, num_classes, norm_layer,
            last_channel). The other builders take the same.
    """
    return _efficientnet_v1(1.0, 1.0, 0.2, weights, progress, **kwargs)


@register_model(weights=EfficientNet_B1_Weights)
def efficientnet_b1(
    *, weights: EfficientNet_B1_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B1 (width x1.0, depth x1.1)."""
    return _efficientnet_v1(1.0, 1.1, 0.2, weights, progress, **kwargs)


@register_model(weights=EfficientNet_B2_Weights)
def efficientnet_b2(
    *, weights: EfficientNet_B2_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B2 (width x1.1, depth x1.2)."""
    return _efficientnet_v1(1.1, 1.2, 0.3, weights, progress, **kwargs)


@register_model(weights=EfficientNet_B3_Weights)
def efficientnet_b3(
    *, weights: EfficientNet_B3_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B3 (width x1.2, depth x1.4)."""
    return _efficientnet_v1(1.2, 1.4, 0.3, weights, progress, **kwargs)


@register_model(weights=EfficientNet_B4_Weights)
def efficientnet_b4(
    *, weights: EfficientNet_B4_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B4 (width x1.4, depth x1.8)."""
    return _efficientnet_v1(1.4, 1.8, 0.4, weights, progress, **kwargs)


@register_model(weights=EfficientNet_B5_Weights)
def efficientnet_b5(
    *, weights: EfficientNet_B5_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B5 (width x1.6, depth x2.2; TensorFlow BatchNorm settings)."""
    return _efficientnet_v1(1.6, 2.2, 0.4, weights, progress, tf_batchnorm=True, **kwargs)


@register_model(weights=EfficientNet_B6_Weights)
def efficientnet_b6(
    *, weights: EfficientNet_B6_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B6 (width x1.8, depth x2.6; TensorFlow BatchNorm settings)."""
    return _efficientnet_v1(1.8, 2.6, 0.5, weights, progress, tf_batchnorm=True, **kwargs)


@register_model(weights=EfficientNet_B7_Weights)
def efficientnet_b7(
    *, weights: EfficientNet_B7_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B7 (width x2.0, depth x3.1; TensorFlow BatchNorm settings)."""
    return _efficientnet_v1(2.0, 3.1, 0.5, weights, progress, tf_batchnorm=True, **kwargs)


@register_model(weights=EfficientNet_V2_S_Weights)
def efficientnet_v2_s(
    *, weights: EfficientNet_V2_S_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNetV2-S: FusedMBConv early stages, a 1280-channel head, BatchNorm eps 1e-3."""
    return _efficientnet_v2("s", 0.2, weights, progress, **kwargs)


@register_model(weights=EfficientNet_V2_M_Weights)
def efficientnet_v2_m(
    *, weights: EfficientNet_V2_M_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNetV2-M."""
    return _efficientnet_v2("m", 0.3, weights, progress, **kwargs)


@register_model(weights=EfficientNet_V2_L_Weights)
def efficientnet_v2_l(
    *, weights: EfficientNet_V2_L_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNetV2-L."""
    return _efficientnet_v2("l", 0.4, weights, progress, **kwargs)
