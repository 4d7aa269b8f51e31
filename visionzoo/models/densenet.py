"""DenseNet-BC.

Huang et al., "Densely Connected Convolutional Networks" (2016), https://arxiv.org/abs/1608.06993. Every layer
of a dense block sees the concatenation of all earlier outputs of the block; ``memory_efficient`` recomputes the
concatenation and bottleneck during backward (Pleiss et al., https://arxiv.org/abs/1707.06990) instead of storing it.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from ._api import WeightsEnum, register_model
from ._features import FeatureRecipe, sequential_stages
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch, set_or_check
from ._weights import imagenet_entry

__all__ = [
    "DenseNet",
    "DenseNet121_Weights",
    "DenseNet161_Weights",
    "DenseNet169_Weights",
    "DenseNet201_Weights",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
]


_LEGACY_LAYER_KEY = re.compile(r"^(norm|relu|conv)\.([12])\.")


class _DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv to ``bn_size * growth_rate`` channels, then BN-ReLU-3x3 conv to ``growth_rate`` channels."""

    def __init__(
        self, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float, memory_efficient: bool = False
    ) -> None:
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, growth_rate, kernel_size=3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # The published checkpoints name these layers "norm.1", "conv.2", ... (dots inside module names, no longer
        # allowed); BatchNorm itself adds the num_batches_tracked counters those old files lack.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            name = key[len(prefix) :]
            current = _LEGACY_LAYER_KEY.sub(r"\1\2.", name)
            if current != name:
                state_dict[prefix + current] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _bottleneck(self, *features: Tensor) -> Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def forward(self, features: list[Tensor] | Tensor) -> Tensor:
        """New ``growth_rate`` channels computed from the block input and every earlier layer's output."""
        features = [features] if isinstance(features, Tensor) else features
        # memory_efficient is tested first: a traced model (torch.fx) cannot branch on requires_grad.
        if self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in features):
            # The concatenation grows quadratically with depth; recompute it in backward instead of keeping it.
            bottleneck = torch.utils.checkpoint.checkpoint(self._bottleneck, *features, use_reentrant=False)
        else:
            bottleneck = self._bottleneck(*features)
        out = self.conv2(self.relu2(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class _DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; the output concatenates the input with every layer's new channels."""

    def __init__(
        self,
        num_layers: int,
        in_channels: int,
        bn_size: int,
        growth_rate: int,
        drop_rate: float,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for index in range(num_layers):
            layer = _DenseLayer(in_channels + index * growth_rate, growth_rate, bn_size, drop_rate, memory_efficient)
            self.add_module(f"denselayer{index + 1}", layer)
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """Between dense blocks: BN-ReLU-1x1 conv to ``out_channels``, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """A 7x7 stem, dense blocks joined by transitions that halve channels and resolution, and a linear head.

    Args:
        growth_rate: channels each dense layer adds (``k`` in the paper).
        block_config: number of layers in each dense block.
        num_init_features: channels of the stem convolution.
        bn_size: the bottleneck 1x1 convolution outputs ``bn_size * growth_rate`` channels.
        drop_rate: dropout probability on each dense layer's output (training only).
        num_classes: size of the classification head.
        memory_efficient: recompute concatenations in backward (gradient checkpointing): much less memory,
            somewhat slower, identical results.
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0,
        num_classes: int = 1000,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        block_config = tuple(block_config)
        sizes = {"growth_rate": growth_rate, "num_init_features": num_init_features, "bn_size": bn_size}
        for name, value in [*sizes.items(), ("num_classes", num_classes)]:
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if not block_config or min(block_config) < 1:
            raise ValueError(f"block_config must list at least one block of at least one layer, got {block_config}")
        if not 0 <= drop_rate <= 1:
            raise ValueError(f"drop_rate must be a probability in [0, 1], got {drop_rate}")
        # Working back from 1 pixel in the last block: each transition needs twice the size, each stride-2 layer of
        # the stem (7x7 conv, 3x3 max-pool, both padded) twice minus one.
        self._min_size = 2 ** (len(block_config) + 1) - 3

        # Plain layer names (conv0, denseblock1, transition1, norm5, ...) are the checkpoints' keys.
        self.features = nn.Sequential(
            OrderedDict(
                conv0=nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False),
                norm0=nn.BatchNorm2d(num_init_features),
                relu0=nn.ReLU(inplace=True),
                pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        )
        channels = num_init_features
        for index, num_layers in enumerate(block_config, start=1):
            block = _DenseBlock(num_layers, channels, bn_size, growth_rate, drop_rate, memory_efficient)
            self.features.add_module(f"denseblock{index}", block)
            channels += num_layers * growth_rate
            if index < len(block_config):
                self.features.add_module(f"transition{index}", _Transition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def _reset_classifier(self, num_classes: int) -> None:
        self.classifier = linear_head(head_width(self.classifier), num_classes, init=lambda fc: nn.init.zeros_(fc.bias))

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The stem's activation (stride 2), the dense blocks (4, 8, 16) and the final norm (32, before the
        classifier's ReLU): the maps ``features_only=True`` returns."""
        return sequential_stages(self, "features")

    def _feature_recipe(self) -> FeatureRecipe:
        return FeatureRecipe(min_size=(self._min_size, self._min_size))

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, type(self).__name__, min_size=(self._min_size, self._min_size))
        x = F.relu(self.features(x), inplace=True)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_entry = partial(
    imagenet_entry,
    min_size=(29, 29),
    recipe="https://github.com/pytorch/vision/pull/116",
    docs="Weights converted from the original Lua Torch release of the paper's authors.",
)


class DenseNet121_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}densenet121-a639ec97.pth", params=7978856, acc1=74.434, acc5=91.972, gflops=2.834, file_mb=30.845
    )
    DEFAULT = IMAGENET1K_V1


class DenseNet161_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}densenet161-8d451a50.pth", params=28681000, acc1=77.138, acc5=93.56, gflops=7.728, file_mb=110.369
    )
    DEFAULT = IMAGENET1K_V1


class DenseNet169_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}densenet169-b2777c0a.pth", params=14149480, acc1=75.6, acc5=92.806, gflops=3.36, file_mb=54.708
    )
    DEFAULT = IMAGENET1K_V1


class DenseNet201_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}densenet201-c1103571.pth", params=20013928, acc1=76.896, acc5=93.37, gflops=4.291, file_mb=77.373
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

WeightsArg = WeightsEnum | Path | str | None


def _densenet(
    growth: int, blocks: tuple[int, ...], stem: int, weights: WeightsArg, progress: bool, /, **kwargs: Any
) -> DenseNet:
    if "block_config" in kwargs:
        kwargs["block_config"] = tuple(kwargs["block_config"])
    set_or_check(kwargs, "growth_rate", growth)
    set_or_check(kwargs, "block_config", blocks)
    set_or_check(kwargs, "num_init_features", stem)
    return build_model(DenseNet, weights, progress, **kwargs)


@register_model(weights=DenseNet121_Weights)
def densenet121(
    *, weights: DenseNet121_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-121 (growth rate 32, blocks of 6, 12, 24, 16 layers).

    Args:
        weights: a ``DenseNet121_Weights`` member, its name, ``None`` for random initialisation, or the path of a
            local checkpoint (the official files' old key layout is converted on load).
        progress: show a download progress bar.
        **kwargs: ``DenseNet`` arguments (bn_size, drop_rate, num_classes, memory_efficient).
    """
    return _densenet(32, (6, 12, 24, 16), 64, weights, progress, **kwargs)


@register_model(weights=DenseNet161_Weights)
def densenet161(
    *, weights: DenseNet161_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-161 (growth rate 48, 96 stem channels, blocks of 6, 12, 36, 24 layers)."""
    return _densenet(48, (6, 12, 36, 24), 96, weights, progress, **kwargs)


@register_model(weights=DenseNet169_Weights)
def densenet169(
    *, weights: DenseNet169_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-169 (growth rate 32, blocks of 6, 12, 32, 32 layers)."""
    return _densenet(32, (6, 12, 32, 32), 64, weights, progress, **kwargs)


@register_model(weights=DenseNet201_Weights)
def densenet201(
    *, weights: DenseNet201_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-201 (growth rate 32, blocks of 6, 12, 48, 32 layers)."""
    return _densenet(32, (6, 12, 48, 32), 64, weights, progress, **kwargs)
