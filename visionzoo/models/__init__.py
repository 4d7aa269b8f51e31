"""Classification models, their weights, and the registry API.

The quantized classification models live in ``visionzoo.models.quantization``, the semantic segmentation
models in ``visionzoo.models.segmentation``, the detectors in ``visionzoo.models.detection``, the video
classifiers in ``visionzoo.models.video`` and the flow models in ``visionzoo.models.optical_flow``, each imported
on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..inference import InferenceModel, optimize_for_inference
from ._api import (
    Weights,
    WeightsEnum,
    get_model,
    get_model_builder,
    get_model_info,
    get_model_weights,
    get_transforms,
    get_weight,
    list_models,
    list_tasks,
)
from ._heads import reset_classifier
from .alexnet import *  # noqa: F403
from .convnext import *  # noqa: F403
from .densenet import *  # noqa: F403
from .efficientnet import *  # noqa: F403
from .feature_extraction import create_feature_extractor, get_graph_node_names
from .googlenet import *  # noqa: F403
from .inception import *  # noqa: F403
from .maxvit import *  # noqa: F403
from .mnasnet import *  # noqa: F403
from .mobilenet import *  # noqa: F403
from .regnet import *  # noqa: F403
from .resnet import *  # noqa: F403
from .shufflenetv2 import *  # noqa: F403
from .squeezenet import *  # noqa: F403
from .swin_transformer import *  # noqa: F403
from .vgg import *  # noqa: F403
from .vision_transformer import *  # noqa: F403

# Sub-packages that exist; one joins this list when its code lands.
_SUBPACKAGES = ("quantization", "segmentation", "detection", "video", "optical_flow")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
