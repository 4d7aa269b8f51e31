"""VGG-11, -13, -16 and -19, with and without batch normalisation.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition" (2014).
Stacks of 3x3 convolutions separated by 2x2 max-pools, then three fully connected layers. The ``_bn``
variants (not in the paper) put a BatchNorm after every convolution.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._api import WeightsEnum, register_model
from ._features import FeatureRecipe, sequential_stages
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch, init_conv_net
from ._weights import imagenet_entry

__all__ = [
    "VGG",
    "VGG11_Weights",
    "VGG11_BN_Weights",
    "VGG13_Weights",
    "VGG13_BN_Weights",
    "VGG16_Weights",
    "VGG16_BN_Weights",
    "VGG19_Weights",
    "VGG19_BN_Weights",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

# The paper's configurations A (11 layers), B (13), D (16) and E (19): output channels of each 3x3
# convolution, "M" for a 2x2 max-pool. Named ``cfgs`` like the reference, for code that imports it.
cfgs: dict[str, list[str | int]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}

# Five 2x2 max-pools halve the input five times.
_MIN_SIZE = (32, 32)


def make_layers(cfg: list[str | int], batch_norm: bool = False) -> nn.Sequential:
    """The convolutional part of a VGG configuration, as one flat ``nn.Sequential``.

    Flat on purpose: the checkpoints index convolutions and norms by position (``features.0``, ``features.1``, ...),
    so the shared Conv-Norm-Activation block, which would nest them, cannot be used here.
    """
    layers: list[nn.Module] = []
    channels = 3
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ValueError(f"VGG configuration entries must be positive channel counts or 'M', got {item!r}")
        layers.append(nn.Conv2d(channels, item, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(item))
        layers.append(nn.ReLU(inplace=True))
        channels = item
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A convolutional ``features`` module, 7x7 adaptive average pooling and a three-layer MLP head.

    Args:
        features: the convolutional body, e.g. ``make_layers(cfgs["D"])``; it must end with 512 channels.
        num_classes: size of the classification head.
        init_weights: apply the reference initialisation (Kaiming-normal convolutions, N(0, 0.01) linear
            layers, zero biases); otherwise layers keep PyTorch's defaults.
        dropout: dropout probability after each of the two hidden fully connected layers.
    """

    def __init__(
        self, features: nn.Module, num_classes: int = 1000, init_weights: bool = True, dropout: float = 0.5
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            init_conv_net(self)

    def _reset_classifier(self, num_classes: int) -> None:
        self.classifier[6] = linear_head(head_width(self.classifier[6]), num_classes, init=init_conv_net)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The activation before each max-pool (strides 1 to 16) and the last max-pool (32): the maps
        ``features_only=True`` returns."""
        return sequential_stages(self, "features")

    def _feature_recipe(self) -> FeatureRecipe:
        return FeatureRecipe(min_size=_MIN_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__, min_size=_MIN_SIZE)
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_entry = partial(
    imagenet_entry,
    min_size=_MIN_SIZE,
    recipe="https://github.com/pytorch/vision/tree/main/references/classification#alexnet-and-vgg",
    docs="Trained from scratch with a simplified recipe.",
)


class VGG11_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}vgg11-8a719046.pth", params=132863336, acc1=69.02, acc5=88.628, gflops=7.609, file_mb=506.84
    )
    DEFAULT = IMAGENET1K_V1


class VGG11_BN_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}vgg11_bn-6002323d.pth", params=132868840, acc1=70.37, acc5=89.81, gflops=7.609, file_mb=506.881
    )
    DEFAULT = IMAGENET1K_V1


class VGG13_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}vgg13-19584684.pth", params=133047848, acc1=69.928, acc5=89.246, gflops=11.308, file_mb=507.545
    )
    DEFAULT = IMAGENET1K_V1


class VGG13_BN_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}vgg13_bn-abd245e5.pth", params=133053736, acc1=71.586, acc5=90.374, gflops=11.308, file_mb=507.59
    )
    DEFAULT = IMAGENET1K_V1


class VGG16_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}vgg16-397923af.pth", params=138357544, acc1=71.592, acc5=90.382, gflops=15.47, file_mb=527.796
    )
    # The SSD authors' port of the original Caffe VGG-16 (github.com/amdegroot/ssd.pytorch). Only `features`
    # holds trained values (the classifier is absent, so it has no ImageNet accuracy and no categories), and it
    # expects Caffe-style input: 0-255 pixel values minus the mean pixel, hence std = 1/255.
    IMAGENET1K_FEATURES = _entry(
        f"{_URL}vgg16_features-amdegroot-88682ab5.pth",
        params=138357544,
        acc1=math.nan,
        acc5=math.nan,
        gflops=15.47,
        file_mb=527.802,
        categories=None,
        recipe="https://github.com/amdegroot/ssd.pytorch#training-ssd",
        mean=(0.48235, 0.45882, 0.40784),
        std=(1 / 255,) * 3,
        docs="Ported from the SSD authors' VGG-16 for feature extraction: only the `features` module holds "
        "trained values, the `classifier` does not, so these weights cannot classify. Inputs are standardised "
        "as in the original paper (mean pixel subtracted from 0-255 values).",
    )
    DEFAULT = IMAGENET1K_V1


class VGG16_BN_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}vgg16_bn-6c64b313.pth", params=138365992, acc1=73.36, acc5=91.516, gflops=15.47, file_mb=527.866
    )
    DEFAULT = IMAGENET1K_V1


class VGG19_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}vgg19-dcbb9e9d.pth", params=143667240, acc1=72.376, acc5=90.876, gflops=19.632, file_mb=548.051
    )
    DEFAULT = IMAGENET1K_V1


class VGG19_BN_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}vgg19_bn-c79401a0.pth", params=143678248, acc1=74.218, acc5=91.842, gflops=19.632, file_mb=548.143
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _make_vgg(cfg: str, batch_norm: bool, **kwargs: Any) -> VGG:
    return VGG(make_layers(cfgs[cfg], batch_norm=batch_norm), **kwargs)


def _vgg(cfg: str, batch_norm: bool, weights: WeightsEnum | Path | None, progress: bool, **kwargs: Any) -> VGG:
    # ``features`` is built inside ``make`` so that build_model can create it on the meta device too.
    return build_model(partial(_make_vgg, cfg, batch_norm), weights, progress, **kwargs)


@register_model(weights=VGG11_Weights)
def vgg11(*, weights: VGG11_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-11 (configuration A).

    Args:
        weights: a ``VGG11_Weights`` member, its name, ``None`` for random initialisation, or the path of a
            local checkpoint.
        progress: show a download progress bar.
        **kwargs: ``VGG`` arguments (num_classes, init_weights, dropout).
    """
    return _vgg("A", False, weights, progress, **kwargs)


@register_model(weights=VGG11_BN_Weights)
def vgg11_bn(*, weights: VGG11_BN_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-11 with batch normalisation."""
    return _vgg("A", True, weights, progress, **kwargs)


@register_model(weights=VGG13_Weights)
def vgg13(*, weights: VGG13_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-13 (configuration B)."""
    return _vgg("B", False, weights, progress, **kwargs)


@register_model(weights=VGG13_BN_Weights)
def vgg13_bn(*, weights: VGG13_BN_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-13 with batch normalisation."""
    return _vgg("B", True, weights, progress, **kwargs)


@register_model(weights=VGG16_Weights)
def vgg16(*, weights: VGG16_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-16 (configuration D). ``VGG16_Weights.IMAGENET1K_FEATURES`` is for feature extraction only."""
    return _vgg("D", False, weights, progress, **kwargs)


@register_model(weights=VGG16_BN_Weights)
def vgg16_bn(*, weights: VGG16_BN_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-16 with batch normalisation."""
    return _vgg("D", True, weights, progress, **kwargs)


@register_model(weights=VGG19_Weights)
def vgg19(*, weights: VGG19_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-19 (configuration E)."""
    return _vgg("E", False, weights, progress, **kwargs)


@register_model(weights=VGG19_BN_Weights)
def vgg19_bn(*, weights: VGG19_BN_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> VGG:
    """VGG-19 with batch normalisation."""
    return _vgg("E", True, weights, progress, **kwargs)
