"""Quantizable ShuffleNet V2 (the float family: ``visionzoo.models.shufflenetv2``).

The concatenation of the two branches goes through a ``FloatFunctional``, so both halves share one scale; the
channel shuffle only moves values and works on int8 tensors as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from .._api import WeightsEnum
from .._utils import check_image_batch, set_or_check
from ..shufflenetv2 import (
    InvertedResidual,
    ShuffleNet_V2_X0_5_Weights,
    ShuffleNet_V2_X1_0_Weights,
    ShuffleNet_V2_X1_5_Weights,
    ShuffleNet_V2_X2_0_Weights,
    ShuffleNetV2,
    channel_shuffle,
)
from .utils import FloatFunctional, build_quantizable, fuse, make_quantizable, quantized_entry, register_quantized

__all__ = [
    "QuantizableShuffleNetV2",
    "ShuffleNet_V2_X0_5_QuantizedWeights",
    "ShuffleNet_V2_X1_0_QuantizedWeights",
    "ShuffleNet_V2_X1_5_QuantizedWeights",
    "ShuffleNet_V2_X2_0_QuantizedWeights",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]


class QuantizableInvertedResidual(InvertedResidual):
    """A ShuffleNet V2 unit whose concatenation is a quantizable ``cat``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cat = FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            kept, transformed = x.chunk(2, dim=1)
            out = self.cat.cat([kept, self.branch2(transformed)], dim=1)
        else:
            out = self.cat.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(out, 2)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        # Branch layouts (flat Sequentials): branch1 = dw conv, bn, pw conv, bn, relu;
        # branch2 = pw conv, bn, relu, dw conv, bn, pw conv, bn, relu.
        if len(self.branch1) > 0:
            fuse(self.branch1, [["0", "1"], ["2", "3", "4"]], is_qat)
        fuse(self.branch2, [["0", "1", "2"], ["3", "4"], ["5", "6", "7"]], is_qat)


class QuantizableShuffleNetV2(ShuffleNetV2):
    """``ShuffleNetV2`` with quantizable units between a ``quant`` and a ``dequant`` stub; same arguments
    (``inverted_residual`` defaults to ``QuantizableInvertedResidual``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("inverted_residual", QuantizableInvertedResidual)
        super().__init__(*args, **kwargs)
        make_quantizable(self)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, type(self).__name__)
        x = self.maxpool(self.conv1(self.quant(x)))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.dequant(self.fc(x.mean([2, 3])))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse every Conv-BN(-ReLU) in place; ``is_qat=None`` follows ``self.training``."""
        fuse(self.conv1, [["0", "1", "2"]], is_qat)
        fuse(self.conv5, [["0", "1", "2"]], is_qat)
        for module in self.modules():
            if isinstance(module, QuantizableInvertedResidual):
                module.fuse_model(is_qat)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/quantized/"
_RECIPE_NEW = "https://github.com/pytorch/vision/pull/5906"


class ShuffleNet_V2_X0_5_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        f"{_URL}shufflenetv2_x0.5_fbgemm-00845098.pth",
        ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1,
        acc1=57.972,
        acc5=79.78,
        file_mb=1.501,
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


class ShuffleNet_V2_X1_0_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        f"{_URL}shufflenetv2_x1_fbgemm-1e62bb32.pth",
        ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1,
        acc1=68.36,
        acc5=87.582,
        file_mb=2.334,
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


class ShuffleNet_V2_X1_5_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        f"{_URL}shufflenetv2_x1_5_fbgemm-d7401f05.pth",
        ShuffleNet_V2_X1_5_Weights.IMAGENET1K_V1,
        acc1=72.052,
        acc5=90.7,
        file_mb=3.672,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


class ShuffleNet_V2_X2_0_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        f"{_URL}shufflenetv2_x2_0_fbgemm-5cac526c.pth",
        ShuffleNet_V2_X2_0_Weights.IMAGENET1K_V1,
        acc1=75.354,
        acc5=92.488,
        file_mb=7.467,
        recipe=_RECIPE_NEW,
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _shufflenet_v2(
    channels: list[int], weights: WeightsEnum | Path | None, progress: bool, quantize: bool, **kwargs: Any
) -> QuantizableShuffleNetV2:
    set_or_check(kwargs, "stages_repeats", [4, 8, 4])
    set_or_check(kwargs, "stages_out_channels", channels)
    return build_quantizable(QuantizableShuffleNetV2, weights, progress, quantize, default_backend="fbgemm", **kwargs)


@register_quantized("quantized_shufflenet_v2_x0_5", ShuffleNet_V2_X0_5_QuantizedWeights, ShuffleNet_V2_X0_5_Weights)
def shufflenet_v2_x0_5(
    *,
    weights: ShuffleNet_V2_X0_5_QuantizedWeights | ShuffleNet_V2_X0_5_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableShuffleNetV2:
    """Quantizable ShuffleNet V2 with 0.5x channels.

    Args:
        weights: with ``quantize=True``, a ``ShuffleNet_V2_X0_5_QuantizedWeights`` member (or its name, or the
            path of an int8 checkpoint); with ``quantize=False``, a float ``ShuffleNet_V2_X0_5_Weights`` member
            (or name or path). ``None``: random initialisation.
        progress: show a download progress bar.
        quantize: return the int8 model (CPU inference only) instead of the quantizable float model.
        **kwargs: ``backend`` (default: the weights' engine, else fbgemm) and ``num_classes``.
    """
    return _shufflenet_v2([24, 48, 96, 192, 1024], weights, progress, quantize, **kwargs)


@register_quantized("quantized_shufflenet_v2_x1_0", ShuffleNet_V2_X1_0_QuantizedWeights, ShuffleNet_V2_X1_0_Weights)
def shufflenet_v2_x1_0(
    *,
    weights: ShuffleNet_V2_X1_0_QuantizedWeights | ShuffleNet_V2_X1_0_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableShuffleNetV2:
    """Quantizable ShuffleNet V2 with 1.0x channels; arguments as ``shufflenet_v2_x0_5``."""
    return _shufflenet_v2([24, 116, 232, 464, 1024], weights, progress, quantize, **kwargs)


@register_quantized("quantized_shufflenet_v2_x1_5", ShuffleNet_V2_X1_5_QuantizedWeights, ShuffleNet_V2_X1_5_Weights)
def shufflenet_v2_x1_5(
    *,
    weights: ShuffleNet_V2_X1_5_QuantizedWeights | ShuffleNet_V2_X1_5_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableShuffleNetV2:
    """Quantizable ShuffleNet V2 with 1.5x channels; arguments as ``shufflenet_v2_x0_5``."""
    return _shufflenet_v2([24, 176, 352, 704, 1024], weights, progress, quantize, **kwargs)


@register_quantized("quantized_shufflenet_v2_x2_0", ShuffleNet_V2_X2_0_QuantizedWeights, ShuffleNet_V2_X2_0_Weights)
def shufflenet_v2_x2_0(
    *,
    weights: ShuffleNet_V2_X2_0_QuantizedWeights | ShuffleNet_V2_X2_0_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableShuffleNetV2:
    """Quantizable ShuffleNet V2 with 2.0x channels; arguments as ``shufflenet_v2_x0_5``."""
    return _shufflenet_v2([24, 244, 488, 976, 2048], weights, progress, quantize, **kwargs)
