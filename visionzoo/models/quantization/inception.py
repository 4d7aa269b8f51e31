"""Quantizable Inception v3 (the float family: ``visionzoo.models.inception``).

Every convolution block is a ``QuantizableBasicConv2d`` and every concatenation a ``FloatFunctional`` (three in
``InceptionE``, whose split branches concatenate twice before the block's own concatenation). The attribute
names ``myop``/``myop1-3`` are the int8 checkpoints' keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from .._api import WeightsEnum
from ..inception import (
    Inception3,
    Inception_V3_Weights,
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    InceptionOutputs,
)
from .googlenet import QuantizableBasicConv2d, pretrained_inception_kwargs
from .utils import FloatFunctional, build_quantizable, make_quantizable, quantized_entry, register_quantized

__all__ = ["QuantizableInception3", "Inception_V3_QuantizedWeights", "inception_v3"]


class _CatBranches:
    """Mixin for blocks A-D: quantizable convolution blocks, and branches joined by a quantizable ``myop``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=QuantizableBasicConv2d, **kwargs)  # type: ignore[call-arg]
        self.myop = FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        return self.myop.cat(self._forward(x), 1)  # type: ignore[attr-defined]


class QuantizableInceptionA(_CatBranches, InceptionA):
    pass


class QuantizableInceptionB(_CatBranches, InceptionB):
    pass


class QuantizableInceptionC(_CatBranches, InceptionC):
    pass


class QuantizableInceptionD(_CatBranches, InceptionD):
    pass


class QuantizableInceptionE(InceptionE):
    """``InceptionE`` with its two inner concatenations (``myop1``, ``myop2``) and the block's (``myop3``)
    quantizable."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=QuantizableBasicConv2d, **kwargs)
        self.myop1 = FloatFunctional()
        self.myop2 = FloatFunctional()
        self.myop3 = FloatFunctional()

    def _forward(self, x: Tensor) -> list[Tensor]:
        # Branch by branch, in the reference's order, as InceptionE does.
        one = self.branch1x1(x)
        single = self.branch3x3_1(x)
        single = self.myop1.cat([self.branch3x3_2a(single), self.branch3x3_2b(single)], 1)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = self.myop2.cat([self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], 1)
        return [one, single, double, self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))]

    def forward(self, x: Tensor) -> Tensor:
        return self.myop3.cat(self._forward(x), 1)


class QuantizableInceptionAux(InceptionAux):
    """The auxiliary classifier built from quantizable convolution blocks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=QuantizableBasicConv2d, **kwargs)


class QuantizableInception3(Inception3):
    """``Inception3`` with quantizable blocks between a ``quant`` and a ``dequant`` stub; same arguments except
    ``inception_blocks``. The input rescaling of ``transform_input`` happens in float, before ``quant``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        blocks = [
            QuantizableBasicConv2d,
            QuantizableInceptionA,
            QuantizableInceptionB,
            QuantizableInceptionC,
            QuantizableInceptionD,
            QuantizableInceptionE,
            QuantizableInceptionAux,
        ]
        super().__init__(*args, inception_blocks=blocks, **kwargs)
        make_quantizable(self)

    def forward(self, x: Tensor) -> InceptionOutputs | Tensor:
        self._check_input(x)
        logits, aux = self._forward(self.quant(self._transform_input(x)))
        return self.eager_outputs(self.dequant(logits), aux)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse every Conv-BN-ReLU in place; ``is_qat=None`` follows ``self.training``."""
        for module in self.modules():
            if isinstance(module, QuantizableBasicConv2d):
                module.fuse_model(is_qat)


class Inception_V3_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        "https://download.pytorch.org/models/quantized/inception_v3_google_fbgemm-a2837893.pth",
        Inception_V3_Weights.IMAGENET1K_V1,
        acc1=77.176,
        acc5=93.354,
        file_mb=23.146,
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


@register_quantized("quantized_inception_v3", Inception_V3_QuantizedWeights, Inception_V3_Weights)
def inception_v3(
    *,
    weights: Inception_V3_QuantizedWeights | Inception_V3_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableInception3:
    """Quantizable Inception v3 (299x299 inputs).

    Args:
        weights: with ``quantize=True``, an ``Inception_V3_QuantizedWeights`` member (or its name, or the path of
            an int8 checkpoint); with ``quantize=False``, a float ``Inception_V3_Weights`` member (or name or
            path). ``None``: random initialisation. With weights, ``transform_input`` defaults to True and the
            auxiliary head is left out unless ``aux_logits=True`` (float weights only: the int8 ones have none).
        progress: show a download progress bar.
        quantize: return the int8 model (CPU inference only) instead of the quantizable float model.
        **kwargs: ``backend`` (default: the weights' engine, else fbgemm) and ``Inception3`` arguments
            (num_classes, aux_logits, transform_input, init_weights, dropout).

    Raises:
        ValueError: ``aux_logits=True`` with int8 weights.
    """
    aux_keys = pretrained_inception_kwargs(kwargs, weights, ("AuxLogits.",))
    if quantize and isinstance(weights, WeightsEnum) and kwargs["aux_logits"]:
        raise ValueError(
            f"{weights!r} have no auxiliary head: omit aux_logits=True, or load the float weights "
            f"{weights.meta['unquantized']!r} with quantize=False"
        )
    return build_quantizable(
        QuantizableInception3,
        weights,
        progress,
        quantize,
        default_backend="fbgemm",
        calibration_size=75,
        ignore_unexpected=aux_keys,
        **kwargs,
    )
