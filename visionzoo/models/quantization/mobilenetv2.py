"""Quantizable MobileNet V2 (the float family: ``visionzoo.models.mobilenetv2``).

The shortcut sum goes through a ``FloatFunctional``; the ReLU6 activations become ReLU (see ``make_quantizable``).
The published int8 weights come from quantization-aware training for the qnnpack engine, but load into the
post-training-quantized model: both convert to the same int8 modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._api import WeightsEnum
from .._utils import check_image_batch
from ..mobilenetv2 import InvertedResidual, MobileNet_V2_Weights, MobileNetV2
from .utils import (
    QAT_DOCS,
    FloatFunctional,
    build_quantizable,
    fuse,
    fuse_conv_blocks,
    make_quantizable,
    quantized_entry,
    register_quantized,
)

__all__ = ["QuantizableMobileNetV2", "MobileNet_V2_QuantizedWeights", "mobilenet_v2"]


class QuantizableInvertedResidual(InvertedResidual):
    """``InvertedResidual`` whose shortcut sum is a quantizable ``skip_add``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_add = FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip_add.add(x, self.conv(x)) if self.use_res_connect else self.conv(x)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        # The linear projection: a bare Conv2d followed by its BatchNorm in ``conv`` (the other stages are
        # Conv2dNormActivation blocks, fused by the model).
        pairs = [[str(i), str(i + 1)] for i, layer in enumerate(self.conv) if type(layer) is nn.Conv2d]
        fuse(self.conv, pairs, is_qat)


class QuantizableMobileNetV2(MobileNetV2):
    """``MobileNetV2`` with quantizable blocks between a ``quant`` and a ``dequant`` stub; same arguments
    (``block`` defaults to ``QuantizableInvertedResidual``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("block", QuantizableInvertedResidual)
        super().__init__(*args, **kwargs)
        make_quantizable(self)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, type(self).__name__)
        x = nn.functional.adaptive_avg_pool2d(self.features(self.quant(x)), 1)
        return self.dequant(self.classifier(torch.flatten(x, 1)))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse every Conv-BN(-ReLU) in place; ``is_qat=None`` follows ``self.training``."""
        fuse_conv_blocks(self, is_qat, QuantizableInvertedResidual)


class MobileNet_V2_QuantizedWeights(WeightsEnum):
    IMAGENET1K_QNNPACK_V1 = quantized_entry(
        "https://download.pytorch.org/models/quantized/mobilenet_v2_qnnpack_37f702c5.pth",
        MobileNet_V2_Weights.IMAGENET1K_V1,
        acc1=71.658,
        acc5=90.15,
        file_mb=3.423,
        backend="qnnpack",
        recipe="https://github.com/pytorch/vision/tree/main/references/classification#qat-mobilenetv2",
        docs=QAT_DOCS,
    )
    DEFAULT = IMAGENET1K_QNNPACK_V1


@register_quantized("quantized_mobilenet_v2", MobileNet_V2_QuantizedWeights, MobileNet_V2_Weights)
def mobilenet_v2(
    *,
    weights: MobileNet_V2_QuantizedWeights | MobileNet_V2_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableMobileNetV2:
    """Quantizable MobileNet V2.

    Args:
        weights: with ``quantize=True``, a ``MobileNet_V2_QuantizedWeights`` member (or its name, or the path of
            an int8 checkpoint); with ``quantize=False``, a float ``MobileNet_V2_Weights`` member (or name or
            path). ``None``: random initialisation.
        progress: show a download progress bar.
        quantize: return the int8 model (CPU inference only) instead of the quantizable float model.
        **kwargs: ``backend`` (default: the weights' engine, else qnnpack) and ``MobileNetV2`` arguments
            (num_classes, width_mult, inverted_residual_setting, round_nearest, norm_layer, dropout).
    """
    return build_quantizable(QuantizableMobileNetV2, weights, progress, quantize, default_backend="qnnpack", **kwargs)
