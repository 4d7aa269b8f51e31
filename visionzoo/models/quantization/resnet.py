"""Quantizable ResNet and ResNeXt (the float family: ``visionzoo.models.resnet``).

Each residual block ends in a ``FloatFunctional.add_relu``: the int8 kernel adds the shortcut and applies the
ReLU in one step, with the sum's own scale and zero point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._api import WeightsEnum
from .._utils import check_image_batch, set_or_check
from ..resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNet18_Weights,
    ResNet50_Weights,
    ResNeXt101_32X8D_Weights,
    ResNeXt101_64X4D_Weights,
)
from .utils import FloatFunctional, build_quantizable, fuse, make_quantizable, quantized_entry, register_quantized

__all__ = [
    "QuantizableResNet",
    "ResNet18_QuantizedWeights",
    "ResNet50_QuantizedWeights",
    "ResNeXt101_32X8D_QuantizedWeights",
    "ResNeXt101_64X4D_QuantizedWeights",
    "resnet18",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
]


class QuantizableBasicBlock(BasicBlock):
    """``BasicBlock`` whose shortcut sum and final ReLU are one quantizable ``add_relu``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_relu = FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        # The shortcut after the main path, in the reference's order (torch.fx node names follow it).
        return self.add_relu.add_relu(out, x if self.downsample is None else self.downsample(x))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        fuse(self, [["conv1", "bn1", "relu"], ["conv2", "bn2"]], is_qat)
        if self.downsample is not None:
            fuse(self.downsample, [["0", "1"]], is_qat)


class QuantizableBottleneck(Bottleneck):
    """``Bottleneck`` with one ReLU module per convolution (fusion needs them apart) and a quantizable
    ``add_relu`` at the end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_add_relu = FloatFunctional()
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.skip_add_relu.add_relu(out, x if self.downsample is None else self.downsample(x))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        fuse(self, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3"]], is_qat)
        if self.downsample is not None:
            fuse(self.downsample, [["0", "1"]], is_qat)


class QuantizableResNet(ResNet):
    """``ResNet`` built from quantizable blocks, between a ``quant`` and a ``dequant`` stub.

    Takes ``ResNet``'s arguments; ``block`` must be ``QuantizableBasicBlock`` or ``QuantizableBottleneck``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        make_quantizable(self)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, type(self).__name__)
        x = self.avgpool(self.forward_features(self.quant(x)))
        return self.dequant(self.fc(torch.flatten(x, 1)))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse every Conv-BN(-ReLU) in place (numerically a no-op in eval mode); run before quantizing.

        Args:
            is_qat: fuse for quantization-aware training; ``None`` follows ``self.training``.
        """
        fuse(self, [["conv1", "bn1", "relu"]], is_qat)
        for module in self.modules():
            if isinstance(module, (QuantizableBasicBlock, QuantizableBottleneck)):
                module.fuse_model(is_qat)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/quantized/"


class ResNet18_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        f"{_URL}resnet18_fbgemm_16fa66dd.pth", ResNet18_Weights.IMAGENET1K_V1, acc1=69.494, acc5=88.882, file_mb=11.238
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


class ResNet50_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        f"{_URL}resnet50_fbgemm_bf931d71.pth", ResNet50_Weights.IMAGENET1K_V1, acc1=75.92, acc5=92.814, file_mb=24.759
    )
    IMAGENET1K_FBGEMM_V2 = quantized_entry(
        f"{_URL}resnet50_fbgemm-23753f79.pth", ResNet50_Weights.IMAGENET1K_V2, acc1=80.282, acc5=94.976, file_mb=24.953
    )
    DEFAULT = IMAGENET1K_FBGEMM_V2


class ResNeXt101_32X8D_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        f"{_URL}resnext101_32x8_fbgemm_09835ccf.pth",
        ResNeXt101_32X8D_Weights.IMAGENET1K_V1,
        acc1=78.986,
        acc5=94.48,
        file_mb=86.034,
    )
    IMAGENET1K_FBGEMM_V2 = quantized_entry(
        f"{_URL}resnext101_32x8_fbgemm-ee16d00c.pth",
        ResNeXt101_32X8D_Weights.IMAGENET1K_V2,
        acc1=82.574,
        acc5=96.132,
        file_mb=86.645,
    )
    DEFAULT = IMAGENET1K_FBGEMM_V2


class ResNeXt101_64X4D_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        f"{_URL}resnext101_64x4d_fbgemm-605a1cb3.pth",
        ResNeXt101_64X4D_Weights.IMAGENET1K_V1,
        acc1=82.898,
        acc5=96.326,
        file_mb=81.556,
        recipe="https://github.com/pytorch/vision/pull/5935",
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _resnet(
    block: type[QuantizableBasicBlock | QuantizableBottleneck],
    layers: list[int],
    weights: WeightsEnum | Path | None,
    progress: bool,
    quantize: bool,
    **kwargs: Any,
) -> QuantizableResNet:
    return build_quantizable(
        QuantizableResNet, weights, progress, quantize, default_backend="fbgemm", block=block, layers=layers, **kwargs
    )


@register_quantized("quantized_resnet18", ResNet18_QuantizedWeights, ResNet18_Weights)
def resnet18(
    *,
    weights: ResNet18_QuantizedWeights | ResNet18_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableResNet:
    """Quantizable ResNet-18.

    Args:
        weights: with ``quantize=True``, a ``ResNet18_QuantizedWeights`` member (or its name, or the path of an
            int8 checkpoint); with ``quantize=False``, a float ``ResNet18_Weights`` member (or name or path).
            ``None``: random initialisation.
        progress: show a download progress bar.
        quantize: return the int8 model (CPU inference only) instead of the quantizable float model.
        **kwargs: ``backend`` (``"fbgemm"``, ``"x86"`` or ``"qnnpack"``; default: the weights' engine, else
            fbgemm) and ``ResNet`` arguments (num_classes, zero_init_residual, replace_stride_with_dilation, ...).
    """
    return _resnet(QuantizableBasicBlock, [2, 2, 2, 2], weights, progress, quantize, **kwargs)


@register_quantized("quantized_resnet50", ResNet50_QuantizedWeights, ResNet50_Weights)
def resnet50(
    *,
    weights: ResNet50_QuantizedWeights | ResNet50_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableResNet:
    """Quantizable ResNet-50; arguments as ``resnet18`` (int8 weights: ``ResNet50_QuantizedWeights``)."""
    return _resnet(QuantizableBottleneck, [3, 4, 6, 3], weights, progress, quantize, **kwargs)


@register_quantized("quantized_resnext101_32x8d", ResNeXt101_32X8D_QuantizedWeights, ResNeXt101_32X8D_Weights)
def resnext101_32x8d(
    *,
    weights: ResNeXt101_32X8D_QuantizedWeights | ResNeXt101_32X8D_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableResNet:
    """Quantizable ResNeXt-101 32x8d; arguments as ``resnet18``."""
    set_or_check(kwargs, "groups", 32)
    set_or_check(kwargs, "width_per_group", 8)
    return _resnet(QuantizableBottleneck, [3, 4, 23, 3], weights, progress, quantize, **kwargs)


@register_quantized("quantized_resnext101_64x4d", ResNeXt101_64X4D_QuantizedWeights, ResNeXt101_64X4D_Weights)
def resnext101_64x4d(
    *,
    weights: ResNeXt101_64X4D_QuantizedWeights | ResNeXt101_64X4D_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableResNet:
    """Quantizable ResNeXt-101 64x4d; arguments as ``resnet18``."""
    set_or_check(kwargs, "groups", 64)
    set_or_check(kwargs, "width_per_group", 4)
    return _resnet(QuantizableBottleneck, [3, 4, 23, 3], weights, progress, quantize, **kwargs)
