"""MNASNet (the B1 variant).

Tan et al., "MnasNet: Platform-Aware Neural Architecture Search for Mobile" (2018), https://arxiv.org/abs/1807.11626.
A network of inverted residual (MBConv) stacks found by latency-aware architecture search, scaled in width by
a depth multiplier ``alpha``.

Checkpoints carry a format version in their state_dict metadata. Version 1 (e.g. the official
``mnasnet0_5`` and ``mnasnet1_0`` files) kept the stem at 32 and 16 channels whatever ``alpha``; version 2
scales the stem too. A model loading a version-1 checkpoint rebuilds its stem the old way, with a warning.
"""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._api import WeightsEnum, caller_stacklevel, register_model
from ._features import sequential_stages
from ._heads import head_width, linear_head
from ._utils import (
    build_model,
    check_image_batch,
    conv_bn_layers,
    init_conv_net,
    make_divisible,
    set_or_check,
)
from ._weights import imagenet_entry

__all__ = [
    "MNASNet",
    "MNASNet0_5_Weights",
    "MNASNet0_75_Weights",
    "MNASNet1_0_Weights",
    "MNASNet1_3_Weights",
    "mnasnet0_5",
    "mnasnet0_75",
    "mnasnet1_0",
    "mnasnet1_3",
]

# The paper trains with TensorFlow's BatchNorm decay 0.9997; PyTorch's momentum is one minus the decay.
_BN_MOMENTUM = 1 - 0.9997

# Channels at alpha = 1: the stem's two convolutions, then the output of each stack in _STACKS.
_DEPTHS = [32, 16, 24, 40, 80, 96, 192, 320]
# Kernel size, stride of the first block, expansion factor and number of blocks of each MBConv stack.
_STACKS = [(3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1)]
_HEAD_CHANNELS = 1280
_CHECKPOINT_VERSIONS = (1, 2)


def _conv_bn(*args: Any, **kwargs: Any) -> list[nn.Module]:
    return conv_bn_layers(*args, bn_momentum=_BN_MOMENTUM, **kwargs)


def _stem(first: int, second: int) -> list[nn.Module]:
    """A strided 3x3 convolution and a depthwise-separable convolution without shortcut: eight flat layers."""
    return [
        *_conv_bn(3, first, 3, stride=2),
        *_conv_bn(first, first, 3, groups=first),
        *_conv_bn(first, second, 1, relu=False),
    ]


class _InvertedResidual(nn.Module):
    """MBConv: 1x1 expansion, depthwise ``kernel_size`` convolution, linear 1x1 projection; a shortcut when the
    shape is kept.

    Raises:
        ValueError: ``stride`` is not 1 or 2, or ``kernel_size`` is not 3 or 5.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion_factor: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MNASNet blocks take stride 1 or 2, got {stride}")
        if kernel_size not in (3, 5):
            raise ValueError(f"MNASNet blocks take kernel_size 3 or 5, got {kernel_size}")
        mid = in_ch * expansion_factor
        self.apply_residual = in_ch == out_ch and stride == 1
        self.layers = nn.Sequential(
            *_conv_bn(in_ch, mid, 1),
            *_conv_bn(mid, mid, kernel_size, stride, groups=mid),
            *_conv_bn(mid, out_ch, 1, relu=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + x if self.apply_residual else self.layers(x)


def _stack(in_ch: int, out_ch: int, kernel_size: int, stride: int, expansion: int, repeats: int) -> nn.Sequential:
    """``repeats`` MBConv blocks; only the first changes the width and strides."""
    return nn.Sequential(
        _InvertedResidual(in_ch, out_ch, kernel_size, stride, expansion),
        *(_InvertedResidual(out_ch, out_ch, kernel_size, 1, expansion) for _ in range(repeats - 1)),
    )


def _depths(alpha: float) -> list[int]:
    return [make_divisible(depth * alpha, 8) for depth in _DEPTHS]


def _check_version(version: Any) -> None:
    # None: a plain dict without metadata (e.g. from safetensors), taken to match the model as built.
    if version is not None and version not in _CHECKPOINT_VERSIONS:
        raise ValueError(f"MNASNet checkpoints have format version 1 or 2, got version {version!r}")


def _init_head_weight(linear: nn.Linear) -> None:
    nn.init.kaiming_uniform_(linear.weight, mode="fan_out", nonlinearity="sigmoid")


class MNASNet(nn.Module):
    """The stem, six MBConv stacks, a 1x1 convolution to 1280 channels, average pooling and a linear classifier.

    Args:
        alpha: depth multiplier of every layer before the 1280-channel head (rounded to multiples of 8).
        num_classes: size of the classification head.
        dropout: dropout probability before the classifier.

    Raises:
        ValueError: ``alpha`` is not positive; at loading, a checkpoint of an unknown format version.
    """

    # Format version written into state_dict metadata (see the module docstring).
    _version = 2

    def __init__(self, alpha: float, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        if alpha <= 0.0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.alpha = alpha
        self.num_classes = num_classes
        depths = _depths(alpha)
        stacks = [_stack(in_ch, out_ch, *stack) for in_ch, out_ch, stack in zip(depths[1:], depths[2:], _STACKS)]
        self.layers = nn.Sequential(*_stem(depths[0], depths[1]), *stacks, *_conv_bn(depths[-1], _HEAD_CHANNELS, 1))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(_HEAD_CHANNELS, num_classes))

        init_conv_net(self, linear=_init_head_weight)

    def _reset_classifier(self, num_classes: int) -> None:
        init = partial(init_conv_net, linear=_init_head_weight)
        self.classifier[1] = linear_head(head_width(self.classifier[1]), num_classes, init=init)
        self.num_classes = num_classes

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The last layer of ``layers`` at each stride (2 to 32): the maps ``features_only=True`` returns."""
        return sequential_stages(self, "layers")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        x = self.layers(x).mean([2, 3])
        return self.classifier(x)

    def _needs_version_1_stem(self, version: Any) -> bool:
        # At alpha 1 both versions have the same stem, so nothing changes.
        _check_version(version)
        return version == 1 and self.alpha != 1.0 and self._version != 1

    def _use_version_1_stem(self) -> None:
        """Rebuild the stem (the first nine layers) as version 1 had it and mark the model as version 1, so
        that it also saves checkpoints in that format."""
        like = self.layers[0].weight
        with torch.device(like.device):
            old = [*_stem(_DEPTHS[0], _DEPTHS[1]), _stack(_DEPTHS[1], _depths(self.alpha)[2], *_STACKS[0])]
        for index, layer in enumerate(old):
            self.layers[index] = layer.to(dtype=like.dtype)
        self._version = 1
        warnings.warn(
            f"This checkpoint was saved by version 1 of MNASNet, whose stem has 32 and 16 channels for every "
            f"alpha; the stem of this alpha={self.alpha} model was rebuilt to match, so the checkpoint loads and "
            "computes as before (and the model saves as version 1). Fine-tune or use a version-2 checkpoint to "
            "get the current architecture.",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any], *args: Any
    ) -> None:
        # Runs before the children load, so a rebuilt stem receives the checkpoint's tensors.
        if self._needs_version_1_stem(local_metadata.get("version")):
            self._use_version_1_stem()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPE_PAPER = "https://github.com/1e100/mnasnet_trainer"
_RECIPE_NEW = "https://github.com/pytorch/vision/pull/6019"
_paper = partial(imagenet_entry, recipe=_RECIPE_PAPER, docs="Trained to reproduce the paper; close to its accuracy.")
_new = partial(
    imagenet_entry,
    recipe=_RECIPE_NEW,
    resize=232,
    docs="Trained from scratch with TorchVision's improved recipe; evaluated after resizing to 232 pixels.",
)


class MNASNet0_5_Weights(WeightsEnum):
    IMAGENET1K_V1 = _paper(
        f"{_URL}mnasnet0.5_top1_67.823-3ffadce67e.pth",
        params=2218512,
        acc1=67.734,
        acc5=87.49,
        gflops=0.104,
        file_mb=8.591,
    )
    DEFAULT = IMAGENET1K_V1


class MNASNet0_75_Weights(WeightsEnum):
    IMAGENET1K_V1 = _new(
        f"{_URL}mnasnet0_75-7090bc5f.pth", params=3170208, acc1=71.18, acc5=90.496, gflops=0.215, file_mb=12.303
    )
    DEFAULT = IMAGENET1K_V1


class MNASNet1_0_Weights(WeightsEnum):
    IMAGENET1K_V1 = _paper(
        f"{_URL}mnasnet1.0_top1_73.512-f206786ef8.pth",
        params=4383312,
        acc1=73.456,
        acc5=91.51,
        gflops=0.314,
        file_mb=16.915,
    )
    DEFAULT = IMAGENET1K_V1


class MNASNet1_3_Weights(WeightsEnum):
    IMAGENET1K_V1 = _new(
        f"{_URL}mnasnet1_3-a4c69d6f.pth", params=6282256, acc1=76.506, acc5=93.522, gflops=0.526, file_mb=24.246
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _mnasnet(alpha: float, weights: WeightsEnum | Path | None, progress: bool, /, **kwargs: Any) -> MNASNet:
    set_or_check(kwargs, "alpha", alpha)
    return build_model(MNASNet, weights, progress, **kwargs)


@register_model(weights=MNASNet0_5_Weights)
def mnasnet0_5(
    *, weights: MNASNet0_5_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> MNASNet:
    """MNASNet with depth multiplier 0.5.

    Args:
        weights: a ``MNASNet0_5_Weights`` member, its name, ``None`` for random initialisation, or the path
            of a local checkpoint (version-1 checkpoints load with the stem they were trained with).
        progress: show a download progress bar.
        **kwargs: ``MNASNet`` arguments (num_classes, dropout).
    """
    return _mnasnet(0.5, weights, progress, **kwargs)


@register_model(weights=MNASNet0_75_Weights)
def mnasnet0_75(
    *, weights: MNASNet0_75_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> MNASNet:
    """MNASNet with depth multiplier 0.75."""
    return _mnasnet(0.75, weights, progress, **kwargs)


@register_model(weights=MNASNet1_0_Weights)
def mnasnet1_0(
    *, weights: MNASNet1_0_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> MNASNet:
    """MNASNet with depth multiplier 1.0."""
    return _mnasnet(1.0, weights, progress, **kwargs)


@register_model(weights=MNASNet1_3_Weights)
def mnasnet1_3(
    *, weights: MNASNet1_3_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> MNASNet:
    """MNASNet with depth multiplier 1.3."""
    return _mnasnet(1.3, weights, progress, **kwargs)
