"""Operators and shared layers for the models, in pure PyTorch."""

from __future__ import annotations

from .feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7
from .misc import (
    MLP,
    Conv2dNormActivation,
    Conv3dNormActivation,
    FrozenBatchNorm2d,
    Permute,
    SqueezeExcitation,
    StochasticDepth,
    convert_frozen_batchnorm,
    stochastic_depth,
)
from .poolers import MultiScaleRoIAlign
from .roi_align import RoIAlign, RoIPool, roi_align, roi_pool

__all__ = [
    "Conv2dNormActivation",
    "Conv3dNormActivation",
    "SqueezeExcitation",
    "FrozenBatchNorm2d",
    "convert_frozen_batchnorm",
    "StochasticDepth",
    "stochastic_depth",
    "MLP",
    "Permute",
    # RoI pooling and the feature pyramid
    "roi_align",
    "RoIAlign",
    "roi_pool",
    "RoIPool",
    "MultiScaleRoIAlign",
    "FeaturePyramidNetwork",
    "ExtraFPNBlock",
    "LastLevelMaxPool",
    "LastLevelP6P7",
]
