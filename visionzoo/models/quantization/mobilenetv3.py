"""Quantizable MobileNet V3 Large (the float family: ``visionzoo.models.mobilenetv3``).

The shortcut sum and the squeeze-and-excitation product go through ``FloatFunctional`` modules. The published
int8 weights are a quantization-aware-training state, so ``quantize=True`` prepares the model for QAT, loads
that state and only then converts to int8: quantizing first and loading int8 tensors afterwards loses much of
the accuracy for this model (pytorch/vision#5890).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ...ops.misc import SqueezeExcitation
from .._api import WeightsEnum
from .._utils import check_image_batch
from ..mobilenetv3 import InvertedResidual, MobileNet_V3_Large_Weights, MobileNetV3, _mobilenet_v3_conf
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

__all__ = ["QuantizableMobileNetV3", "MobileNet_V3_Large_QuantizedWeights", "mobilenet_v3_large"]


class QuantizableSqueezeExcitation(SqueezeExcitation):
    """Squeeze-and-excitation with a hard-sigmoid gate applied by a quantizable ``skip_mul``."""

    # Recorded in state_dict metadata: version 2 QAT states hold the gate's fake-quant buffers; older ones get
    # them in ``_load_from_state_dict``.
    _version = 2

    def __init__(self, input_channels: int, squeeze_channels: int, activation: type[nn.Module] = nn.ReLU) -> None:
        super().__init__(input_channels, squeeze_channels, activation=activation, scale_activation=nn.Hardsigmoid)
        self.skip_mul = FloatFunctional()

    def forward(self, input: Tensor) -> Tensor:
        return self.skip_mul.mul(self._scale(input), input)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        fuse(self, [["fc1", "activation"]], is_qat)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any], *args: Any
    ) -> None:
        # QAT states written before the hard-sigmoid gate had fixed quantization parameters lack its fake-quant
        # buffers; their values are constants of the gate, so this model's own are the right ones to fill in.
        version = local_metadata.get("version")
        if version is None or version < 2:
            gate = "scale_activation.activation_post_process."
            for name, value in self.state_dict(prefix=prefix, keep_vars=True).items():
                if name.startswith(prefix + gate):
                    state_dict.setdefault(name, value.detach())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)


class QuantizableInvertedResidual(InvertedResidual):
    """``InvertedResidual`` with quantizable squeeze-and-excitation and a quantizable ``skip_add`` shortcut."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, se_layer=QuantizableSqueezeExcitation, **kwargs)
        self.skip_add = FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip_add.add(x, self.block(x)) if self.use_res_connect else self.block(x)


class QuantizableMobileNetV3(MobileNetV3):
    """``MobileNetV3`` with quantizable blocks between a ``quant`` and a ``dequant`` stub; same arguments
    (``block`` defaults to ``QuantizableInvertedResidual``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("block", QuantizableInvertedResidual)
        super().__init__(*args, **kwargs)
        make_quantizable(self)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, type(self).__name__)
        x = self.avgpool(self.features(self.quant(x)))
        return self.dequant(self.classifier(torch.flatten(x, 1)))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse Conv-BN, Conv-BN-ReLU and the SE blocks' Conv-ReLU in place (hard-swish stays unfused);
        ``is_qat=None`` follows ``self.training``."""
        fuse_conv_blocks(self, is_qat, QuantizableSqueezeExcitation)


class MobileNet_V3_Large_QuantizedWeights(WeightsEnum):
    IMAGENET1K_QNNPACK_V1 = quantized_entry(
        "https://download.pytorch.org/models/quantized/mobilenet_v3_large_qnnpack-5bcacf28.pth",
        MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        acc1=73.004,
        acc5=90.858,
        file_mb=21.554,
        backend="qnnpack",
        recipe="https://github.com/pytorch/vision/tree/main/references/classification#qat-mobilenetv3",
        docs=QAT_DOCS,
    )
    DEFAULT = IMAGENET1K_QNNPACK_V1


@register_quantized("quantized_mobilenet_v3_large", MobileNet_V3_Large_QuantizedWeights, MobileNet_V3_Large_Weights)
def mobilenet_v3_large(
    *,
    weights: MobileNet_V3_Large_QuantizedWeights | MobileNet_V3_Large_Weights | str | Path | None = None,
    progress: bool = True,
    quantize: bool = False,
    **kwargs: Any,
) -> QuantizableMobileNetV3:
    """Quantizable MobileNet V3 Large.

    Args:
        weights: with ``quantize=True``, a ``MobileNet_V3_Large_QuantizedWeights`` member (or its name, or the
            path of a QAT checkpoint); with ``quantize=False``, a float ``MobileNet_V3_Large_Weights`` member (or
            name or path). ``None``: random initialisation (with ``quantize=True``, untrained quantization
            parameters too: only useful for testing).
        progress: show a download progress bar.
        quantize: return the int8 model (CPU inference only) instead of the quantizable float model.
        **kwargs: ``backend`` (default: the weights' engine, else qnnpack), ``width_mult``, ``reduced_tail``,
            ``dilated`` and ``MobileNetV3`` arguments (num_classes, norm_layer, dropout).
    """
    for fixed in ("inverted_residual_setting", "last_channel"):
        if fixed in kwargs:
            raise ValueError(f"mobilenet_v3_large derives {fixed} from width_mult, reduced_tail and dilated")
    setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_large", **kwargs)
    for option in ("width_mult", "reduced_tail", "dilated"):
        kwargs.pop(option, None)
    return build_quantizable(
        QuantizableMobileNetV3,
        weights,
        progress,
        quantize,
        default_backend="qnnpack",
        qat=True,
        inverted_residual_setting=setting,
        last_channel=last_channel,
        **kwargs,
    )
