"""Operators and shared layers for the models, in pure PyTorch."""

from __future__ import annotations

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
]
