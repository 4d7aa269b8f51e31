"""Quantizable classification models and their int8 weights.

Every builder takes ``quantize``: ``False`` gives the quantizable float model (load the family's float weights,
fine-tune, call ``fuse_model`` and quantize it yourself with ``quantize_model``), ``True`` an int8 model for the
CPU, loaded from the ``*_QuantizedWeights`` entries. The builders are registered as ``quantized_<name>``::

    from visionzoo.models.quantization import resnet50, ResNet50_QuantizedWeights

    model = resnet50(weights=ResNet50_QuantizedWeights.DEFAULT, quantize=True).eval()
"""

from __future__ import annotations

from . import googlenet as _googlenet
from . import inception as _inception
from . import mobilenet as _mobilenet
from . import resnet as _resnet
from . import shufflenetv2 as _shufflenetv2
from .googlenet import *  # noqa: F403
from .inception import *  # noqa: F403
from .mobilenet import *  # noqa: F403
from .resnet import *  # noqa: F403
from .shufflenetv2 import *  # noqa: F403
from .utils import BACKENDS, quantize_model

__all__ = [
    *(name for family in (_googlenet, _inception, _mobilenet, _resnet, _shufflenetv2) for name in family.__all__),
    "BACKENDS",
    "quantize_model",
]
