"""ResNet, ResNeXt and Wide ResNet.

He et al., "Deep Residual Learning for Image Recognition" (2015); Xie et al., "Aggregated Residual
Transformations for Deep Neural Networks" (2016); Zagoruyko & Komodakis, "Wide Residual Networks" (2016).
Bottleneck blocks stride in their 3x3 convolution rather than the first 1x1 ("ResNet v1.5"), as the
official checkpoints do.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._api import WeightsEnum, register_model
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch, init_conv_net, set_or_check
from ._weights import imagenet_entry

__all__ = [
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "ResNet18_Weights",
    "ResNet34_Weights",
    "ResNet50_Weights",
    "ResNet101_Weights",
    "ResNet152_Weights",
    "ResNeXt50_32X4D_Weights",
    "ResNeXt101_32X8D_Weights",
    "ResNeXt101_64X4D_Weights",
    "Wide_ResNet50_2_Weights",
    "Wide_ResNet101_2_Weights",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]

NormLayer = Callable[[int], nn.Module]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride, padding=dilation, groups=groups, dilation=dilation, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projected) shortcut; used by ResNet-18/34."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock supports only groups=1 and width_per_group=64, got {groups} and {base_width}")
        if dilation > 1:
            raise ValueError("BasicBlock does not support dilation > 1 (replace_stride_with_dilation needs Bottleneck)")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)  # in place: one block-sized allocation less
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped, strided, dilated), 1x1 expand by 4; used by ResNet-50 and deeper."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        # ResNeXt/Wide ResNet widen the inner convolutions: width = planes * (base_width / 64) * groups.
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = _conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = _conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)  # in place: one block-sized allocation less
        return self.relu(out)


class ResNet(nn.Module):
    """A stem (7x7 conv, max-pool), four stages of residual blocks, global average pooling and a linear head.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks in each of the four stages.
        num_classes: size of the classification head.
        zero_init_residual: start each block's last BatchNorm at zero so blocks begin as identities.
        groups, width_per_group: ResNeXt cardinality and per-group width.
        replace_stride_with_dilation: for stages 2-4, dilate instead of striding (dense prediction).
        norm_layer: normalisation layer constructor (default ``nn.BatchNorm2d``).

    ``feature_info`` lists the stem's and each stage's name, output channels and stride, for feature extraction
    (``features_only=True``).
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: list[bool] | None = None,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"layers must give the block count of 4 stages, got {layers}")
        dilate = replace_stride_with_dilation or [False, False, False]
        if len(dilate) != 3:
            raise ValueError(f"replace_stride_with_dilation must have 3 entries (stages 2-4), got {dilate}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = 64
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group

        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=dilate[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        stride = 4
        self.feature_info = [{"name": "relu", "channels": self.conv1.out_channels, "stride": 2}]  # the stem
        for index, dilated in enumerate([False, *dilate]):
            stride *= 1 if (index == 0 or dilated) else 2
            channels = 64 * 2**index * block.expansion
            self.feature_info.append({"name": f"layer{index + 1}", "channels": channels, "stride": stride})

        init_conv_net(self, linear=None)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    last_norm = module.bn3 if isinstance(module, Bottleneck) else module.bn2
                    if isinstance(getattr(last_norm, "weight", None), torch.Tensor):
                        nn.init.zeros_(last_norm.weight)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1, dilate: bool = False
    ) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                self._norm_layer(planes * block.expansion),
            )
        common = {"groups": self.groups, "base_width": self.base_width, "norm_layer": self._norm_layer}
        stage = [block(self.inplanes, planes, stride, downsample, dilation=previous_dilation, **common)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes, dilation=self.dilation, **common) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _reset_classifier(self, num_classes: int) -> None:
        self.fc = linear_head(head_width(self.fc), num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, C, H/32, W/32)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        x = self.avgpool(self.forward_features(x))
        return self.fc(torch.flatten(x, 1))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPE_V1 = "https://github.com/pytorch/vision/tree/main/references/classification#resnet"
_RECIPE_RESNEXT = "https://github.com/pytorch/vision/tree/main/references/classification#resnext"
_RECIPE_WIDE = "https://github.com/pytorch/vision/pull/912#issue-445437439"
_RECIPE_NEW = "https://github.com/pytorch/vision/issues/3995#new-recipe"
_DOCS_V1 = "Trained with the simple recipe of the paper; close to the accuracy it reports."
_DOCS_V2 = (
    "Retrained with TorchVision's improved recipe (longer schedule, stronger augmentation and regularisation), "
    "well above the paper's accuracy; evaluated after resizing to 232 pixels."
)
_v1 = partial(imagenet_entry, docs=_DOCS_V1)
_v2 = partial(imagenet_entry, docs=_DOCS_V2, resize=232)


class ResNet18_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}resnet18-f37072fd.pth",
        params=11689512,
        acc1=69.758,
        acc5=89.078,
        gflops=1.814,
        file_mb=44.661,
        recipe=_RECIPE_V1,
    )
    DEFAULT = IMAGENET1K_V1


class ResNet34_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}resnet34-b627a593.pth",
        params=21797672,
        acc1=73.314,
        acc5=91.42,
        gflops=3.664,
        file_mb=83.275,
        recipe=_RECIPE_V1,
    )
    DEFAULT = IMAGENET1K_V1


class ResNet50_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}resnet50-0676ba61.pth",
        params=25557032,
        acc1=76.13,
        acc5=92.862,
        gflops=4.089,
        file_mb=97.781,
        recipe=_RECIPE_V1,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}resnet50-11ad3fa6.pth",
        params=25557032,
        acc1=80.858,
        acc5=95.434,
        gflops=4.089,
        file_mb=97.79,
        recipe="https://github.com/pytorch/vision/issues/3995#issuecomment-1013906621",
    )
    DEFAULT = IMAGENET1K_V2


class ResNet101_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}resnet101-63fe2227.pth",
        params=44549160,
        acc1=77.374,
        acc5=93.546,
        gflops=7.801,
        file_mb=170.511,
        recipe=_RECIPE_V1,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}resnet101-cd907fc2.pth",
        params=44549160,
        acc1=81.886,
        acc5=95.78,
        gflops=7.801,
        file_mb=170.53,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class ResNet152_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}resnet152-394f9c45.pth",
        params=60192808,
        acc1=78.312,
        acc5=94.046,
        gflops=11.514,
        file_mb=230.434,
        recipe=_RECIPE_V1,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}resnet152-f82ba261.pth",
        params=60192808,
        acc1=82.284,
        acc5=96.002,
        gflops=11.514,
        file_mb=230.474,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class ResNeXt50_32X4D_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}resnext50_32x4d-7cdf4587.pth",
        params=25028904,
        acc1=77.618,
        acc5=93.698,
        gflops=4.23,
        file_mb=95.789,
        recipe=_RECIPE_RESNEXT,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}resnext50_32x4d-1a0047aa.pth",
        params=25028904,
        acc1=81.198,
        acc5=95.34,
        gflops=4.23,
        file_mb=95.833,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


class ResNeXt101_32X8D_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}resnext101_32x8d-8ba56ff5.pth",
        params=88791336,
        acc1=79.312,
        acc5=94.526,
        gflops=16.414,
        file_mb=339.586,
        recipe=_RECIPE_RESNEXT,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}resnext101_32x8d-110c445d.pth",
        params=88791336,
        acc1=82.834,
        acc5=96.228,
        gflops=16.414,
        file_mb=339.673,
        recipe=f"{_RECIPE_NEW}-with-fixres",
    )
    DEFAULT = IMAGENET1K_V2


class ResNeXt101_64X4D_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        f"{_URL}resnext101_64x4d-173b62eb.pth",
        params=83455272,
        acc1=83.246,
        acc5=96.454,
        gflops=15.46,
        file_mb=319.318,
        recipe="https://github.com/pytorch/vision/pull/5935",
        resize=232,
        docs="Trained from scratch with TorchVision's improved recipe; evaluated after resizing to 232 pixels.",
    )
    DEFAULT = IMAGENET1K_V1


class Wide_ResNet50_2_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}wide_resnet50_2-95faca4d.pth",
        params=68883240,
        acc1=78.468,
        acc5=94.086,
        gflops=11.398,
        file_mb=131.82,
        recipe=_RECIPE_WIDE,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}wide_resnet50_2-9ba9bcbe.pth",
        params=68883240,
        acc1=81.602,
        acc5=95.758,
        gflops=11.398,
        file_mb=263.124,
        recipe=f"{_RECIPE_NEW}-with-fixres",
    )
    DEFAULT = IMAGENET1K_V2


class Wide_ResNet101_2_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}wide_resnet101_2-32ee1156.pth",
        params=126886696,
        acc1=78.848,
        acc5=94.284,
        gflops=22.753,
        file_mb=242.896,
        recipe=_RECIPE_WIDE,
    )
    IMAGENET1K_V2 = _v2(
        f"{_URL}wide_resnet101_2-d733dc28.pth",
        params=126886696,
        acc1=82.51,
        acc5=96.02,
        gflops=22.753,
        file_mb=484.747,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_V2


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

WeightsArg = WeightsEnum | Path | str | None


def _resnet(
    block: type[BasicBlock | Bottleneck], layers: list[int], weights: WeightsArg, progress: bool, **kwargs: Any
) -> ResNet:
    return build_model(ResNet, weights, progress, block=block, layers=layers, **kwargs)


def _resnext(
    layers: list[int], cardinality: int, group_width: int, weights: WeightsArg, progress: bool, **kwargs: Any
) -> ResNet:
    set_or_check(kwargs, "groups", cardinality)
    set_or_check(kwargs, "width_per_group", group_width)
    return _resnet(Bottleneck, layers, weights, progress, **kwargs)


@register_model(weights=ResNet18_Weights)
def resnet18(*, weights: ResNet18_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-18."""
    return _resnet(BasicBlock, [2, 2, 2, 2], weights, progress, **kwargs)


@register_model(weights=ResNet34_Weights)
def resnet34(*, weights: ResNet34_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-34."""
    return _resnet(BasicBlock, [3, 4, 6, 3], weights, progress, **kwargs)


@register_model(weights=ResNet50_Weights)
def resnet50(*, weights: ResNet50_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-50 (v1.5: the stride sits in the 3x3 convolution of each bottleneck).

    Args:
        weights: a ``ResNet50_Weights`` member, its name, ``None`` for random initialisation, or the path
            of a local ``.pth``/``.safetensors`` checkpoint.
        progress: show a download progress bar.
        **kwargs: ``ResNet`` arguments (num_classes, zero_init_residual, groups, width_per_group,
            replace_stride_with_dilation, norm_layer).
    """
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, progress, **kwargs)


@register_model(weights=ResNet101_Weights)
def resnet101(*, weights: ResNet101_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-101."""
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, progress, **kwargs)


@register_model(weights=ResNet152_Weights)
def resnet152(*, weights: ResNet152_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-152."""
    return _resnet(Bottleneck, [3, 8, 36, 3], weights, progress, **kwargs)


@register_model(weights=ResNeXt50_32X4D_Weights)
def resnext50_32x4d(
    *, weights: ResNeXt50_32X4D_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNeXt-50 with 32 groups of width 4."""
    return _resnext([3, 4, 6, 3], 32, 4, weights, progress, **kwargs)


@register_model(weights=ResNeXt101_32X8D_Weights)
def resnext101_32x8d(
    *, weights: ResNeXt101_32X8D_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNeXt-101 with 32 groups of width 8."""
    return _resnext([3, 4, 23, 3], 32, 8, weights, progress, **kwargs)


@register_model(weights=ResNeXt101_64X4D_Weights)
def resnext101_64x4d(
    *, weights: ResNeXt101_64X4D_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNeXt-101 with 64 groups of width 4."""
    return _resnext([3, 4, 23, 3], 64, 4, weights, progress, **kwargs)


@register_model(weights=Wide_ResNet50_2_Weights)
def wide_resnet50_2(
    *, weights: Wide_ResNet50_2_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """Wide ResNet-50-2: the bottlenecks' inner width doubled (the outer width is unchanged)."""
    set_or_check(kwargs, "width_per_group", 128)
    return _resnet(Bottleneck, [3, 4, 6, 3], weights, progress, **kwargs)


@register_model(weights=Wide_ResNet101_2_Weights)
def wide_resnet101_2(
    *, weights: Wide_ResNet101_2_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """Wide ResNet-101-2: the bottlenecks' inner width doubled."""
    set_or_check(kwargs, "width_per_group", 128)
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, progress, **kwargs)
