"""Video classification: R3D / MC3 / R(2+1)D ResNets, S3D, MViT and Video Swin Transformers.

Every model maps a batch of clips ``(N, 3, T, H, W)`` (what the ``VideoClassification`` preset makes of
``(N, T, 3, H, W)`` frames) to ``(N, num_classes)`` logits; the published weights score the 400 Kinetics-400
actions.
"""

from __future__ import annotations

from .mvit import *  # noqa: F403
from .resnet import *  # noqa: F403
from .s3d import *  # noqa: F403
from .swin_transformer import *  # noqa: F403
