"""Semantic segmentation models: FCN, DeepLabV3 and Lite R-ASPP on classification backbones.

Every model maps an ``(N, 3, H, W)`` batch to ``{"out": (N, num_classes, H, W)}`` class scores (plus ``"aux"``
when built with ``aux_loss``); the published weights score the 21 Pascal VOC labels (background first).
"""

from __future__ import annotations

from .deeplabv3 import *  # noqa: F403
from .fcn import *  # noqa: F403
from .lraspp import *  # noqa: F403
