"""Quantizable GoogLeNet (the float family: ``visionzoo.models.googlenet``).

Every convolution block gets its own ReLU module (fused with its convolution and BatchNorm), and every
Inception block concatenates its branches through a ``FloatFunctional``. ``QuantizableBasicConv2d`` is shared
with the quantizable Inception v3.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._api import WeightsEnum, caller_stacklevel
from .._utils import check_image_batch
from ..googlenet import BasicConv2d, GoogLeNet, GoogLeNet_Weights, GoogLeNetOutputs, Inception, InceptionAux
from .utils import FloatFunctional, build_quantizable, fuse, make_quantizable, quantized_entry, register_quantized

__all__ = ["QuantizableGoogLeNet", "GoogLeNet_QuantizedWeights", "googlenet"]


class QuantizableBasicConv2d(BasicConv2d):
    """Convolution, BatchNorm and a ReLU module of its own, fusable into one int8 convolution."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        fuse(self, [["conv", "bn", "relu"]], is_qat)


class QuantizableInception(Inception):
    """An Inception block whose branch outputs are joined by a quantizable ``cat``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=QuantizableBasicConv2d, **kwargs)
        self.cat = FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        return self.cat.cat(self._forward(x), 1)


class QuantizableInceptionAux(InceptionAux):
    """The auxiliary classifier with a ReLU module (instead of a functional in-place ReLU) after ``fc1``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, conv_block=QuantizableBasicConv2d, **kwargs)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))


class QuantizableGoogLeNet(GoogLeNet):
    """``GoogLeNet`` with quantizable blocks between a ``quant`` and a ``dequant`` stub; same arguments except
    ``blocks``. The input rescaling of ``transform_input`` happens in float, before ``quant``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(
            *args, blocks=[QuantizableBasicConv2d, QuantizableInception, QuantizableInceptionAux], **kwargs
        )
        make_quantizable(self)

    def forward(self, x: Tensor) -> GoogLeNetOutputs | Tensor:
        check_image_batch(x, type(self).__name__, min_size=(15, 15))
        logits, aux2, aux1 = self._forward(self.quant(self._transform_input(x)))
        return self.eager_outputs(self.dequant(logits), aux2, aux1)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse every Conv-BN-ReLU in place; ``is_qat=None`` follows ``self.training``."""
        for module in self.modules():
            if isinstance(module, QuantizableBasicConv2d):
                module.fuse_model(is_qat)


class GoogLeNet_QuantizedWeights(WeightsEnum):
    IMAGENET1K_FBGEMM_V1 = quantized_entry(
        "https://download.pytorch.org/models/quantized/googlenet_fbgemm-c81f6644.pth",
        GoogLeNet_Weights.IMAGENET1K_V1,
        acc1=69.826,
        acc5=89.404,
        file_mb=12.618,
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


def pretrained_inception_kwargs(
    kwargs: dict[str, Any], weights: WeightsEnum | Path | None, aux_prefixes: tuple[str, ...]
) -> tuple[str, ...]:
    """The Inception family's defaults when loading a checkpoint; returns the key prefixes of unwanted heads.

    The checkpoints expect [-1, 1] inputs (``transform_input`` defaults to True) and replace every tensor (no
    ``init_weights``). The auxiliary heads are left out unless ``aux_logits=True`` is asked for.
    """
    if weights is None:
        return ()
    if kwargs.get("init_weights"):
        raise ValueError("init_weights=True asks for a random initialisation, but weights=... overwrites it; omit it")
    kwargs["init_weights"] = False
    kwargs.setdefault("transform_input", True)
    return () if kwargs.setdefault("aux_logits", False) else aux_prefixes


@register_quantized("quantized_googlenet", GoogLeNet_QuantizedWeights, GoogLeNet_Weights)
def googlenet(
    *,
    weights: GoogLeNet_QuantizedWeights | GoogLeNet_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableGoogLeNet:
    """Quantizable GoogLeNet.

    Args:
        weights: with ``quantize=True``, a ``GoogLeNet_QuantizedWeights`` member (or its name, or the path of an
            int8 checkpoint); with ``quantize=False``, a float ``GoogLeNet_Weights`` member (or name or path).
            ``None``: random initialisation. With weights, ``transform_input`` defaults to True and the
            auxiliary heads (never trained) are left out unless ``aux_logits=True``.
        progress: show a download progress bar.
        quantize: return the int8 model (CPU inference only) instead of the quantizable float model.
        **kwargs: ``backend`` (default: the weights' engine, else fbgemm) and ``GoogLeNet`` arguments
            (num_classes, aux_logits, transform_input, init_weights, dropout, dropout_aux).
    """
    aux_keys = pretrained_inception_kwargs(kwargs, weights, ("aux1.", "aux2."))
    if isinstance(weights, WeightsEnum) and kwargs["aux_logits"]:
        warnings.warn(
            f"The auxiliary heads of {weights!r} were never trained; train them before relying on them",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
    return build_quantizable(
        QuantizableGoogLeNet,
        weights,
        progress,
        quantize,
        default_backend="fbgemm",
        ignore_unexpected=aux_keys,
        **kwargs,
    )
