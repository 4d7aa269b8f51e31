"""RegNetX and RegNetY.

Radosavovic et al., "Designing Network Design Spaces" (2020), https://arxiv.org/abs/2003.13678. A RegNet is
a stem, four stages of residual bottleneck blocks with grouped 3x3 convolutions, and a linear classifier; the
stage widths and depths are not listed by hand but derived from six numbers (depth, w_0, w_a, w_m, group
width, bottleneck ratio) by a quantized linear rule. RegNetY adds Squeeze-and-Excitation to every block.
That rule (:class:`BlockParams`) lives in ``_regnet_design``, plain Python so that models build on ``meta``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..ops.misc import Conv2dNormActivation, SqueezeExcitation
from ..transforms.functional import InterpolationMode
from ._api import WeightsEnum, register_model
from ._heads import head_width, linear_head
from ._regnet_design import BlockParams
from ._utils import build_model, check_image_batch, init_conv_net, set_or_check
from ._weights import imagenet_entry

__all__ = [
    "RegNet",
    "RegNet_Y_400MF_Weights",
    "RegNet_Y_800MF_Weights",
    "RegNet_Y_1_6GF_Weights",
    "RegNet_Y_3_2GF_Weights",
    "RegNet_Y_8GF_Weights",
    "RegNet_Y_16GF_Weights",
    "RegNet_Y_32GF_Weights",
    "RegNet_Y_128GF_Weights",
    "RegNet_X_400MF_Weights",
    "RegNet_X_800MF_Weights",
    "RegNet_X_1_6GF_Weights",
    "RegNet_X_3_2GF_Weights",
    "RegNet_X_8GF_Weights",
    "RegNet_X_16GF_Weights",
    "RegNet_X_32GF_Weights",
    "regnet_y_400mf",
    "regnet_y_800mf",
    "regnet_y_1_6gf",
    "regnet_y_3_2gf",
    "regnet_y_8gf",
    "regnet_y_16gf",
    "regnet_y_32gf",
    "regnet_y_128gf",
    "regnet_x_400mf",
    "regnet_x_800mf",
    "regnet_x_1_6gf",
    "regnet_x_3_2gf",
    "regnet_x_8gf",
    "regnet_x_16gf",
    "regnet_x_32gf",
]

ModuleFactory = Callable[..., nn.Module]


# --------------------------------------------------------------------------------------------------
# Modules (class and attribute names are the checkpoints' keys and the reference's public API)
# --------------------------------------------------------------------------------------------------


class SimpleStemIN(Conv2dNormActivation):
    """The ImageNet stem: a stride-2 3x3 convolution, norm, activation."""

    def __init__(
        self, width_in: int, width_out: int, norm_layer: ModuleFactory, activation_layer: ModuleFactory
    ) -> None:
        super().__init__(
            width_in, width_out, kernel_size=3, stride=2, norm_layer=norm_layer, activation_layer=activation_layer
        )


class BottleneckTransform(nn.Sequential):
    """The residual branch: 1x1 (``a``), grouped 3x3 carrying the stride (``b``), optional SE, 1x1 (``c``)."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        norm_layer: ModuleFactory,
        activation_layer: ModuleFactory,
        group_width: int,
        bottleneck_multiplier: float,
        se_ratio: float | None,
    ) -> None:
        bottleneck = int(round(width_out * bottleneck_multiplier))
        conv = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=activation_layer)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["a"] = conv(width_in, bottleneck, kernel_size=1)
        layers["b"] = conv(bottleneck, bottleneck, kernel_size=3, stride=stride, groups=bottleneck // group_width)
        if se_ratio:
            # The SE width is measured against the block's input, not the bottleneck it gates.
            squeeze = int(round(se_ratio * width_in))
            layers["se"] = SqueezeExcitation(bottleneck, squeeze, activation=activation_layer)
        layers["c"] = conv(bottleneck, width_out, kernel_size=1, activation_layer=None)
        super().__init__(layers)


class ResBottleneckBlock(nn.Module):
    """``activation(shortcut(x) + f(x))``; the shortcut is a strided 1x1 projection when the shape changes."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        norm_layer: ModuleFactory,
        activation_layer: ModuleFactory,
        group_width: int = 1,
        bottleneck_multiplier: float = 1.0,
        se_ratio: float | None = None,
    ) -> None:
        super().__init__()
        self.proj = None
        if width_in != width_out or stride != 1:
            self.proj = Conv2dNormActivation(
                width_in, width_out, kernel_size=1, stride=stride, norm_layer=norm_layer, activation_layer=None
            )
        self.f = BottleneckTransform(
            width_in, width_out, stride, norm_layer, activation_layer, group_width, bottleneck_multiplier, se_ratio
        )
        self.activation = activation_layer(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))


class AnyStage(nn.Sequential):
    """``depth`` blocks of one output width; the first one strides and changes the width.

    ``block_constructor`` is called positionally like :class:`ResBottleneckBlock`.
    """

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        depth: int,
        block_constructor: ModuleFactory,
        norm_layer: ModuleFactory,
        activation_layer: ModuleFactory,
        group_width: int,
        bottleneck_multiplier: float,
        se_ratio: float | None = None,
        stage_index: int = 0,
    ) -> None:
        super().__init__()
        for i in range(depth):
            block = block_constructor(
                width_in if i == 0 else width_out,
                width_out,
                stride if i == 0 else 1,
                norm_layer,
                activation_layer,
                group_width,
                bottleneck_multiplier,
                se_ratio,
            )
            self.add_module(f"block{stage_index}-{i}", block)  # "block<stage>-<index>", as in the checkpoints


class RegNet(nn.Module):
    """A RegNet: stem, one :class:`AnyStage` per entry of ``block_params``, global pooling and a linear head.

    ``feature_info`` lists the stem and the stages (``trunk_output.block1`` ...) with their channels and strides.

    Args:
        block_params: the stages (see :meth:`BlockParams.from_init_params`).
        num_classes: outputs of the classifier.
        stem_width: channels produced by the stem.
        stem_type: ``stem_type(3, stem_width, norm_layer, activation)``; default :class:`SimpleStemIN`.
        block_type: called like :class:`ResBottleneckBlock` (the default) with positional arguments.
        norm_layer: default ``nn.BatchNorm2d``.
        activation: default ``nn.ReLU``; called with ``inplace=True`` and, inside SE, with no argument.

    Raises:
        TypeError: ``block_params`` is not a :class:`BlockParams`. ValueError: ``num_classes`` < 1.
    """

    def __init__(
        self,
        block_params: BlockParams,
        num_classes: int = 1000,
        stem_width: int = 32,
        stem_type: ModuleFactory | None = None,
        block_type: ModuleFactory | None = None,
        norm_layer: ModuleFactory | None = None,
        activation: ModuleFactory | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(block_params, BlockParams):
            raise TypeError(
                f"block_params must be a BlockParams (e.g. BlockParams.from_init_params(...)), "
                f"got {type(block_params).__name__}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        block_type = block_type or ResBottleneckBlock
        norm_layer = norm_layer or nn.BatchNorm2d
        activation = activation or nn.ReLU

        self.stem = (stem_type or SimpleStemIN)(3, stem_width, norm_layer, activation)
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        width, stride = stem_width, 2
        self.feature_info: list[dict[str, Any]] = [{"name": "stem", "channels": width, "stride": stride}]
        stage_settings = zip(
            block_params.widths,
            block_params.strides,
            block_params.depths,
            block_params.group_widths,
            block_params.bottleneck_multipliers,
        )
        for index, (width_out, stage_stride, depth, group_width, multiplier) in enumerate(stage_settings, start=1):
            stages[f"block{index}"] = AnyStage(
                width,
                width_out,
                stage_stride,
                depth,
                block_type,
                norm_layer,
                activation,
                group_width,
                multiplier,
                block_params.se_ratio,
                stage_index=index,
            )
            width, stride = width_out, stride * stage_stride
            self.feature_info.append({"name": f"trunk_output.block{index}", "channels": width, "stride": stride})
        self.trunk_output = nn.Sequential(stages)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width, num_classes)

        # He-normal convolutions (fan-out counts every output channel, groups or not), identity norms, a small
        # normal head. Unlike ``init_conv_net``, the SE convolutions keep PyTorch's default biases, as in the
        # reference, so a seed gives the reference's initial weights draw for draw.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                nn.init.zeros_(module.bias)

    def _reset_classifier(self, num_classes: int) -> None:
        self.fc = linear_head(head_width(self.fc), num_classes, init=init_conv_net)  # N(0, 0.01), zero bias

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, C, H/32, W/32 with the default strides)."""
        return self.trunk_output(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        x = self.avgpool(self.forward_features(x))
        return self.fc(torch.flatten(x, 1))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPE = "https://github.com/pytorch/vision/tree/main/references/classification"
_RECIPE_SMALL, _RECIPE_MEDIUM, _RECIPE_LARGE = (f"{_RECIPE}#{size}-models" for size in ("small", "medium", "large"))
_RECIPE_NEW = "https://github.com/pytorch/vision/issues/3995#new-recipe"
_RECIPE_NEW_FIXRES = f"{_RECIPE_NEW}-with-fixres"
_SWAG_LICENSE = "https://github.com/facebookresearch/SWAG/blob/main/LICENSE"

_v1 = partial(imagenet_entry, docs="Trained with a simple recipe; close to the accuracy the paper reports.")
_v2 = partial(
    imagenet_entry,
    resize=232,
    docs="Retrained with a variant of TorchVision's improved recipe (longer schedule, stronger augmentation and "
    "regularisation), above the paper's accuracy; evaluated after resizing to 232 pixels.",
)
_swag_e2e = partial(
    imagenet_entry,
    crop=384,
    resize=384,
    interpolation=InterpolationMode.BICUBIC,
    recipe="https://github.com/facebookresearch/SWAG",
    license=_SWAG_LICENSE,
    docs="SWAG weights (weakly supervised pre-training on Instagram hashtags, https://arxiv.org/abs/2201.08371) "
    "fine-tuned end to end on ImageNet-1K at 384 pixels.",
)
_swag_linear = partial(
    imagenet_entry,
    crop=224,
    resize=224,
    interpolation=InterpolationMode.BICUBIC,
    recipe="https://github.com/pytorch/vision/pull/5793",
    license=_SWAG_LICENSE,
    docs="The SWAG trunk (https://arxiv.org/abs/2201.08371) kept frozen, with only a linear classifier trained on "
    "ImageNet-1K on top of it.",
)


class RegNet_Y_400MF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_y_400mf-c65dace8.pth",
        params=4344144,
        acc1=74.046,
        acc5=91.716,
        gflops=0.402,
        file_mb=16.806,
        recipe=_RECIPE_SMALL,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_y_400mf-e6988f5f.pth",
        params=4344144,
        acc1=75.804,
        acc5=92.742,
        gflops=0.402,
        file_mb=16.806,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_Y_800MF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_y_800mf-1b27b58c.pth",
        params=6432512,
        acc1=76.42,
        acc5=93.136,
        gflops=0.834,
        file_mb=24.774,
        recipe=_RECIPE_SMALL,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_y_800mf-58fc7688.pth",
        params=6432512,
        acc1=78.828,
        acc5=94.502,
        gflops=0.834,
        file_mb=24.774,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_Y_1_6GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_y_1_6gf-b11a554e.pth",
        params=11202430,
        acc1=77.95,
        acc5=93.966,
        gflops=1.612,
        file_mb=43.152,
        recipe=_RECIPE_SMALL,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_y_1_6gf-0d7bc02a.pth",
        params=11202430,
        acc1=80.876,
        acc5=95.444,
        gflops=1.612,
        file_mb=43.152,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_Y_3_2GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_y_3_2gf-b5a9779c.pth",
        params=19436338,
        acc1=78.948,
        acc5=94.576,
        gflops=3.176,
        file_mb=74.567,
        recipe=_RECIPE_MEDIUM,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_y_3_2gf-9180c971.pth",
        params=19436338,
        acc1=81.982,
        acc5=95.972,
        gflops=3.176,
        file_mb=74.567,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_Y_8GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_y_8gf-d0d0e4a8.pth",
        params=39381472,
        acc1=80.032,
        acc5=95.048,
        gflops=8.473,
        file_mb=150.701,
        recipe=_RECIPE_MEDIUM,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_y_8gf-dc2b1b54.pth",
        params=39381472,
        acc1=82.828,
        acc5=96.33,
        gflops=8.473,
        file_mb=150.701,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_Y_16GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_y_16gf-9e6ed7dd.pth",
        params=83590140,
        acc1=80.424,
        acc5=95.24,
        gflops=15.912,
        file_mb=319.49,
        recipe=_RECIPE_LARGE,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_y_16gf-3e4a00f9.pth",
        params=83590140,
        acc1=82.886,
        acc5=96.328,
        gflops=15.912,
        file_mb=319.49,
        recipe=_RECIPE_NEW,
    )
    IMAGENET1K_SWAG_E2E_V1 = _swag_e2e(
        f"{_URL}regnet_y_16gf_swag-43afe44d.pth",
        params=83590140,
        acc1=86.012,
        acc5=98.054,
        gflops=46.735,
        file_mb=319.49,
    )
    IMAGENET1K_SWAG_LINEAR_V1 = _swag_linear(
        f"{_URL}regnet_y_16gf_lc_swag-f3ec0043.pth",
        params=83590140,
        acc1=83.976,
        acc5=97.244,
        gflops=15.912,
        file_mb=319.49,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_Y_32GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_y_32gf-4dee3f7a.pth",
        params=145046770,
        acc1=80.878,
        acc5=95.34,
        gflops=32.28,
        file_mb=554.076,
        recipe=_RECIPE_LARGE,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_y_32gf-8db6d4b5.pth",
        params=145046770,
        acc1=83.368,
        acc5=96.498,
        gflops=32.28,
        file_mb=554.076,
        recipe=_RECIPE_NEW,
    )
    IMAGENET1K_SWAG_E2E_V1 = _swag_e2e(
        f"{_URL}regnet_y_32gf_swag-04fdfa75.pth",
        params=145046770,
        acc1=86.838,
        acc5=98.362,
        gflops=94.826,
        file_mb=554.076,
    )
    IMAGENET1K_SWAG_LINEAR_V1 = _swag_linear(
        f"{_URL}regnet_y_32gf_lc_swag-e1583746.pth",
        params=145046770,
        acc1=84.622,
        acc5=97.48,
        gflops=32.28,
        file_mb=554.076,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_Y_128GF_Weights(WeightsEnum):
    IMAGENET1K_SWAG_E2E_V1 = _swag_e2e(
        f"{_URL}regnet_y_128gf_swag-c8ce3e52.pth",
        params=644812894,
        acc1=88.228,
        acc5=98.682,
        gflops=374.57,
        file_mb=2461.564,
    )
    IMAGENET1K_SWAG_LINEAR_V1 = _swag_linear(
        f"{_URL}regnet_y_128gf_lc_swag-cbe8ce12.pth",
        params=644812894,
        acc1=86.068,
        acc5=97.844,
        gflops=127.518,
        file_mb=2461.564,
    )
    DEFAULT = IMAGENET1K_SWAG_E2E_V1


class RegNet_X_400MF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_x_400mf-adf1edd5.pth",
        params=5495976,
        acc1=72.834,
        acc5=90.95,
        gflops=0.414,
        file_mb=21.258,
        recipe=_RECIPE_SMALL,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_x_400mf-62229a5f.pth",
        params=5495976,
        acc1=74.864,
        acc5=92.322,
        gflops=0.414,
        file_mb=21.257,
        recipe=_RECIPE_NEW_FIXRES,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_X_800MF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_x_800mf-ad17e45c.pth",
        params=7259656,
        acc1=75.212,
        acc5=92.348,
        gflops=0.8,
        file_mb=27.945,
        recipe=_RECIPE_SMALL,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_x_800mf-94a99ebd.pth",
        params=7259656,
        acc1=77.522,
        acc5=93.826,
        gflops=0.8,
        file_mb=27.945,
        recipe=_RECIPE_NEW_FIXRES,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_X_1_6GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_x_1_6gf-e3633e7f.pth",
        params=9190136,
        acc1=77.04,
        acc5=93.44,
        gflops=1.603,
        file_mb=35.339,
        recipe=_RECIPE_SMALL,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_x_1_6gf-a12f2b72.pth",
        params=9190136,
        acc1=79.668,
        acc5=94.922,
        gflops=1.603,
        file_mb=35.339,
        recipe=_RECIPE_NEW_FIXRES,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_X_3_2GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_x_3_2gf-f342aeae.pth",
        params=15296552,
        acc1=78.364,
        acc5=93.992,
        gflops=3.177,
        file_mb=58.756,
        recipe=_RECIPE_MEDIUM,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_x_3_2gf-7071aa85.pth",
        params=15296552,
        acc1=81.196,
        acc5=95.43,
        gflops=3.177,
        file_mb=58.756,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_X_8GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_x_8gf-03ceed89.pth",
        params=39572648,
        acc1=79.344,
        acc5=94.686,
        gflops=7.995,
        file_mb=151.456,
        recipe=_RECIPE_MEDIUM,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_x_8gf-2b70d774.pth",
        params=39572648,
        acc1=81.682,
        acc5=95.678,
        gflops=7.995,
        file_mb=151.456,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_X_16GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_x_16gf-2007eb11.pth",
        params=54278536,
        acc1=80.058,
        acc5=94.944,
        gflops=15.941,
        file_mb=207.627,
        recipe=_RECIPE_MEDIUM,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_x_16gf-ba3796d7.pth",
        params=54278536,
        acc1=82.716,
        acc5=96.196,
        gflops=15.941,
        file_mb=207.627,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class RegNet_X_32GF_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}regnet_x_32gf-9d47f8d0.pth",
        params=107811560,
        acc1=80.622,
        acc5=95.248,
        gflops=31.736,
        file_mb=412.039,
        recipe=_RECIPE_LARGE,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}regnet_x_32gf-6eb8fdc6.pth",
        params=107811560,
        acc1=83.014,
        acc5=96.288,
        gflops=31.736,
        file_mb=412.039,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

WeightsArg = WeightsEnum | Path | str | None

# The design parameters of each published model (RegNetY-128GF comes from the SWAG paper).
_DESIGNS: dict[str, dict[str, Any]] = {
    "regnet_y_400mf": dict(depth=16, w_0=48, w_a=27.89, w_m=2.09, group_width=8, se_ratio=0.25),
    "regnet_y_800mf": dict(depth=14, w_0=56, w_a=38.84, w_m=2.4, group_width=16, se_ratio=0.25),
    "regnet_y_1_6gf": dict(depth=27, w_0=48, w_a=20.71, w_m=2.65, group_width=24, se_ratio=0.25),
    "regnet_y_3_2gf": dict(depth=21, w_0=80, w_a=42.63, w_m=2.66, group_width=24, se_ratio=0.25),
    "regnet_y_8gf": dict(depth=17, w_0=192, w_a=76.82, w_m=2.19, group_width=56, se_ratio=0.25),
    "regnet_y_16gf": dict(depth=18, w_0=200, w_a=106.23, w_m=2.48, group_width=112, se_ratio=0.25),
    "regnet_y_32gf": dict(depth=20, w_0=232, w_a=115.89, w_m=2.53, group_width=232, se_ratio=0.25),
    "regnet_y_128gf": dict(depth=27, w_0=456, w_a=160.83, w_m=2.52, group_width=264, se_ratio=0.25),
    "regnet_x_400mf": dict(depth=22, w_0=24, w_a=24.48, w_m=2.54, group_width=16),
    "regnet_x_800mf": dict(depth=16, w_0=56, w_a=35.73, w_m=2.28, group_width=16),
    "regnet_x_1_6gf": dict(depth=18, w_0=80, w_a=34.01, w_m=2.25, group_width=24),
    "regnet_x_3_2gf": dict(depth=25, w_0=88, w_a=26.31, w_m=2.25, group_width=48),
    "regnet_x_8gf": dict(depth=23, w_0=80, w_a=49.56, w_m=2.88, group_width=120),
    "regnet_x_16gf": dict(depth=22, w_0=216, w_a=55.59, w_m=2.1, group_width=128),
    "regnet_x_32gf": dict(depth=23, w_0=320, w_a=69.86, w_m=2.0, group_width=168),
}

_DESIGN_ARGUMENTS = ("depth", "w_0", "w_a", "w_m", "group_width", "bottleneck_multiplier", "se_ratio")


def _regnet(name: str, weights: WeightsArg, progress: bool, **kwargs: Any) -> RegNet:
    fixed = [key for key in _DESIGN_ARGUMENTS if key in kwargs]
    if fixed:
        raise ValueError(
            f"{name} fixes its design, so {', '.join(fixed)} cannot be passed; for another design build "
            "RegNet(BlockParams.from_init_params(...)) from visionzoo.models.regnet"
        )
    set_or_check(kwargs, "block_params", BlockParams.from_init_params(**_DESIGNS[name]))
    return build_model(RegNet, weights, progress, **kwargs)


def _no_legacy_weights(kwargs: dict[str, Any]) -> WeightsEnum:
    # RegNetY-128GF only has SWAG weights, which never existed under the old pretrained=True interface.
    raise ValueError(
        "regnet_y_128gf has no weights for the legacy pretrained=True; "
        "use weights=RegNet_Y_128GF_Weights.IMAGENET1K_SWAG_E2E_V1 (or .DEFAULT)"
    )


@register_model(weights=RegNet_Y_400MF_Weights)
def regnet_y_400mf(
    *, weights: RegNet_Y_400MF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetY-400MF.

    Args:
        weights: a ``RegNet_Y_400MF_Weights`` member, its name, ``None`` for random initialisation, or the
            path of a local ``.pth``/``.safetensors`` checkpoint.
        progress: show a download progress bar.
        **kwargs: ``RegNet`` arguments (num_classes, stem_width, stem_type, block_type, norm_layer,
            activation). The design parameters are fixed by the builder.
    """
    return _regnet("regnet_y_400mf", weights, progress, **kwargs)


@register_model(weights=RegNet_Y_800MF_Weights)
def regnet_y_800mf(
    *, weights: RegNet_Y_800MF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetY-800MF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_y_800mf", weights, progress, **kwargs)


@register_model(weights=RegNet_Y_1_6GF_Weights)
def regnet_y_1_6gf(
    *, weights: RegNet_Y_1_6GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetY-1.6GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_y_1_6gf", weights, progress, **kwargs)


@register_model(weights=RegNet_Y_3_2GF_Weights)
def regnet_y_3_2gf(
    *, weights: RegNet_Y_3_2GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetY-3.2GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_y_3_2gf", weights, progress, **kwargs)


@register_model(weights=RegNet_Y_8GF_Weights)
def regnet_y_8gf(
    *, weights: RegNet_Y_8GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetY-8GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_y_8gf", weights, progress, **kwargs)


@register_model(weights=RegNet_Y_16GF_Weights)
def regnet_y_16gf(
    *, weights: RegNet_Y_16GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetY-16GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_y_16gf", weights, progress, **kwargs)


@register_model(weights=RegNet_Y_32GF_Weights)
def regnet_y_32gf(
    *, weights: RegNet_Y_32GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetY-32GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_y_32gf", weights, progress, **kwargs)


@register_model(weights=RegNet_Y_128GF_Weights, legacy_weights=_no_legacy_weights)
def regnet_y_128gf(
    *, weights: RegNet_Y_128GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetY-128GF (about 645M parameters; only SWAG weights exist); arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_y_128gf", weights, progress, **kwargs)


@register_model(weights=RegNet_X_400MF_Weights)
def regnet_x_400mf(
    *, weights: RegNet_X_400MF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetX-400MF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_x_400mf", weights, progress, **kwargs)


@register_model(weights=RegNet_X_800MF_Weights)
def regnet_x_800mf(
    *, weights: RegNet_X_800MF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetX-800MF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_x_800mf", weights, progress, **kwargs)


@register_model(weights=RegNet_X_1_6GF_Weights)
def regnet_x_1_6gf(
    *, weights: RegNet_X_1_6GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetX-1.6GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_x_1_6gf", weights, progress, **kwargs)


@register_model(weights=RegNet_X_3_2GF_Weights)
def regnet_x_3_2gf(
    *, weights: RegNet_X_3_2GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetX-3.2GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_x_3_2gf", weights, progress, **kwargs)


@register_model(weights=RegNet_X_8GF_Weights)
def regnet_x_8gf(
    *, weights: RegNet_X_8GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetX-8GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_x_8gf", weights, progress, **kwargs)


@register_model(weights=RegNet_X_16GF_Weights)
def regnet_x_16gf(
    *, weights: RegNet_X_16GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetX-16GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_x_16gf", weights, progress, **kwargs)


@register_model(weights=RegNet_X_32GF_Weights)
def regnet_x_32gf(
    *, weights: RegNet_X_32GF_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> RegNet:
    """RegNetX-32GF; arguments as :func:`regnet_y_400mf`."""
    return _regnet("regnet_x_32gf", weights, progress, **kwargs)
