"""Inception v3.

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (2015), https://arxiv.org/abs/1512.00567.
Factorised convolutions (n x n as 1 x n then n x 1) and grid reductions that pool and convolve in parallel. Built
for 299x299 inputs; the weights were ported from TensorFlow and expect [-1, 1] inputs (``transform_input``).
Module names (``Conv2d_1a_3x3``, ``Mixed_5b``, ``AuxLogits``) follow the TensorFlow graph, as the checkpoints do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._api import WeightsEnum, register_model
from ._features import FeatureRecipe
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch
from ._weights import imagenet_entry
from .googlenet import BasicConv2d, _apply_pretrained_rules, _imagenet_to_unit_range, _unit_range_step, _unpack_blocks

__all__ = ["Inception3", "InceptionOutputs", "Inception_V3_Weights", "inception_v3"]

ConvBlock = Callable[..., nn.Module]


class InceptionOutputs(NamedTuple):
    """What Inception v3 returns in training mode with ``aux_logits=True``."""

    logits: Tensor
    aux_logits: Tensor | None


_InceptionOutputs = InceptionOutputs  # older name kept by the reference for backward compatibility


class InceptionA(nn.Module):
    """35x35 grid block: 1x1, 1x1-5x5, 1x1-3x3-3x3 and avg-pool-1x1 branches."""

    def __init__(self, in_channels: int, pool_features: int, conv_block: ConvBlock | None = None) -> None:
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.branch1x1 = conv_block(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = conv_block(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = conv_block(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = conv_block(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv_block(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_block(96, 96, kernel_size=3, padding=1)
        self.branch_pool = conv_block(in_channels, pool_features, kernel_size=1)

    def _forward(self, x: Tensor) -> list[Tensor]:
        return [
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)),
        ]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(self._forward(x), 1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17: strided 3x3, 1x1-3x3-strided 3x3 and max-pool branches."""

    def __init__(self, in_channels: int, conv_block: ConvBlock | None = None) -> None:
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.branch3x3 = conv_block(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = conv_block(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv_block(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv_block(96, 96, kernel_size=3, stride=2)

    def _forward(self, x: Tensor) -> list[Tensor]:
        return [
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(self._forward(x), 1)


class InceptionC(nn.Module):
    """17x17 grid block with 7x7 convolutions factorised into 1x7 and 7x1 (``channels_7x7`` inner width)."""

    def __init__(self, in_channels: int, channels_7x7: int, conv_block: ConvBlock | None = None) -> None:
        super().__init__()
        conv_block = conv_block or BasicConv2d
        c7 = channels_7x7
        row, column = {"kernel_size": (1, 7), "padding": (0, 3)}, {"kernel_size": (7, 1), "padding": (3, 0)}
        self.branch1x1 = conv_block(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = conv_block(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = conv_block(c7, c7, **row)
        self.branch7x7_3 = conv_block(c7, 192, **column)
        self.branch7x7dbl_1 = conv_block(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = conv_block(c7, c7, **column)
        self.branch7x7dbl_3 = conv_block(c7, c7, **row)
        self.branch7x7dbl_4 = conv_block(c7, c7, **column)
        self.branch7x7dbl_5 = conv_block(c7, 192, **row)
        self.branch_pool = conv_block(in_channels, 192, kernel_size=1)

    def _forward(self, x: Tensor) -> list[Tensor]:
        return [
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(self.branch7x7dbl_2(self.branch7x7dbl_1(x))))),
            self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)),
        ]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(self._forward(x), 1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8: 1x1-strided 3x3, 1x1-1x7-7x1-strided 3x3 and max-pool branches."""

    def __init__(self, in_channels: int, conv_block: ConvBlock | None = None) -> None:
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.branch3x3_1 = conv_block(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = conv_block(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = conv_block(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = conv_block(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv_block(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv_block(192, 192, kernel_size=3, stride=2)

    def _forward(self, x: Tensor) -> list[Tensor]:
        return [
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(self._forward(x), 1)


class InceptionE(nn.Module):
    """8x8 grid block whose 3x3 branches split into parallel 1x3 and 3x1 convolutions (wider, not deeper)."""

    def __init__(self, in_channels: int, conv_block: ConvBlock | None = None) -> None:
        super().__init__()
        conv_block = conv_block or BasicConv2d
        row, column = {"kernel_size": (1, 3), "padding": (0, 1)}, {"kernel_size": (3, 1), "padding": (1, 0)}
        self.branch1x1 = conv_block(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = conv_block(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = conv_block(384, 384, **row)
        self.branch3x3_2b = conv_block(384, 384, **column)
        self.branch3x3dbl_1 = conv_block(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = conv_block(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = conv_block(384, 384, **row)
        self.branch3x3dbl_3b = conv_block(384, 384, **column)
        self.branch_pool = conv_block(in_channels, 192, kernel_size=1)

    def _forward(self, x: Tensor) -> list[Tensor]:
        # Branch by branch, in the order of the reference (torch.fx node names follow execution order).
        one = self.branch1x1(x)
        single = self.branch3x3_1(x)
        single = torch.cat([self.branch3x3_2a(single), self.branch3x3_2b(single)], 1)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = torch.cat([self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double)], 1)
        return [one, single, double, self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))]

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat(self._forward(x), 1)


def _truncated_normal_weight(layer: nn.Conv2d | nn.Linear) -> None:
    """TensorFlow's initialisation: std 0.1, except layers tagged with their own ``init_std`` (the auxiliary head)."""
    nn.init.trunc_normal_(layer.weight, mean=0.0, std=getattr(layer, "init_std", 0.1), a=-2, b=2)


def _aux_fc(in_features: int, num_classes: int) -> nn.Module:
    fc = linear_head(in_features, num_classes)
    fc.init_std = 0.001  # read by Inception3's initialisation
    return fc


class InceptionAux(nn.Module):
    """Auxiliary classifier on the 17x17 grid: 5x5/3 average pool, 1x1 and 5x5 convolutions, linear head."""

    def __init__(self, in_channels: int, num_classes: int, conv_block: ConvBlock | None = None) -> None:
        super().__init__()
        conv_block = conv_block or BasicConv2d
        self.conv0 = conv_block(in_channels, 128, kernel_size=1)
        self.conv1 = conv_block(128, 768, kernel_size=5)
        self.fc = _aux_fc(768, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


# The last layer at each stride, with its output channels: the stages of features_only=True.
_STAGES = [
    ("Conv2d_2b_3x3", 64, 2),
    ("Conv2d_4a_3x3", 192, 4),
    ("Mixed_5d", 288, 8),
    ("Mixed_6e", 768, 16),
    ("Mixed_7c", 2048, 32),
]


class Inception3(nn.Module):
    """Inception v3: a convolutional stem, 3 + 1 + 4 + 1 + 2 Inception blocks, average pooling and a linear head.

    Args:
        num_classes: size of the classification head (and of the auxiliary head).
        aux_logits: build the auxiliary classifier; in training mode ``forward`` then returns
            ``InceptionOutputs(logits, aux_logits)`` and needs inputs of at least 299x299; in eval mode it returns
            the logits alone and accepts 75x75 and up.
        transform_input: re-scale ImageNet-normalised inputs to [-1, 1], as the ported weights expect.
        inception_blocks: the classes used for ``[BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD,
            InceptionE, InceptionAux]`` (quantizable variants swap them).
        init_weights: truncated-normal initialisation (std 0.1, 0.001 for the auxiliary head's linear layer) of
            convolutions and linear layers; ``None`` means ``True``. ``False`` keeps PyTorch's default initialisation.
        dropout: dropout probability before the main head.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        transform_input: bool = False,
        inception_blocks: list[ConvBlock] | None = None,
        init_weights: bool | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        defaults = [BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, InceptionAux]
        conv_block, block_a, block_b, block_c, block_d, block_e, aux_block = _unpack_blocks(inception_blocks, defaults)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.aux_logits = aux_logits
        self.transform_input = transform_input

        self.Conv2d_1a_3x3 = conv_block(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = conv_block(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = conv_block(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = conv_block(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = conv_block(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = block_a(192, pool_features=32)
        self.Mixed_5c = block_a(256, pool_features=64)
        self.Mixed_5d = block_a(288, pool_features=64)
        self.Mixed_6a = block_b(288)
        self.Mixed_6b = block_c(768, channels_7x7=128)
        self.Mixed_6c = block_c(768, channels_7x7=160)
        self.Mixed_6d = block_c(768, channels_7x7=160)
        self.Mixed_6e = block_c(768, channels_7x7=192)
        self.AuxLogits: nn.Module | None = aux_block(768, num_classes) if aux_logits else None
        self.Mixed_7a = block_d(768)
        self.Mixed_7b = block_e(1280)
        self.Mixed_7c = block_e(2048)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)

        if init_weights is None or init_weights:
            # TensorFlow's std is 0.1 except for the auxiliary head (the reference also tags the auxiliary 5x5
            # convolution with 0.01, but on its wrapper module, so that convolution effectively gets 0.1 too).
            for module in self.modules():
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    _truncated_normal_weight(module)
                elif isinstance(module, nn.BatchNorm2d):
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)

    def _reset_classifier(self, num_classes: int) -> None:
        self.fc = linear_head(head_width(self.fc), num_classes, init=_truncated_normal_weight)
        if self.AuxLogits is not None:
            self.AuxLogits.fc = _aux_fc(head_width(self.AuxLogits.fc), num_classes)
            if num_classes:
                _truncated_normal_weight(self.AuxLogits.fc)

    def _transform_input(self, x: Tensor) -> Tensor:
        return _imagenet_to_unit_range(x) if self.transform_input else x

    def _forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Logits and, in training mode with the auxiliary head, the auxiliary logits."""
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        x = self.Mixed_6a(self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x))))
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        x = torch.flatten(self.dropout(self.avgpool(x)), 1)
        return self.fc(x), aux

    def eager_outputs(self, x: Tensor, aux: Tensor | None) -> InceptionOutputs | Tensor:
        """The named tuple in training mode with the auxiliary head, else the logits alone."""
        return InceptionOutputs(x, aux) if self.training and self.aux_logits else x

    def _check_input(self, x: Tensor) -> None:
        check_image_batch(x, type(self).__name__, min_size=(75, 75))
        if not (isinstance(x, Tensor) and self.training and self.AuxLogits is not None):
            return
        height, width = x.shape[-2:]
        if height < 299 or width < 299:
            # The auxiliary head's 5x5/3 pooling and 5x5 convolution need the 17x17 grid of a 299x299 input.
            raise ValueError(
                f"{type(self).__name__} needs images of at least 299x299 pixels in training mode with "
                f"aux_logits=True, got {height}x{width} (eval mode and aux_logits=False accept 75x75)"
            )

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The last layer at each stride: ``Conv2d_2b_3x3``, ``Conv2d_4a_3x3``, ``Mixed_5d``, ``Mixed_6e`` and
        ``Mixed_7c`` (strides 2 to 32), the maps ``features_only=True`` returns."""
        return [{"name": n, "channels": c, "stride": s} for n, c, s in _STAGES]

    def _feature_recipe(self) -> FeatureRecipe:
        prepare = {"Conv2d_1a_3x3": _unit_range_step} if self.transform_input else {}
        return FeatureRecipe(min_size=(75, 75), prepare=prepare, skip=("AuxLogits",))

    def forward(self, x: Tensor) -> InceptionOutputs | Tensor:
        self._check_input(x)
        return self.eager_outputs(*self._forward(self._transform_input(x)))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


class Inception_V3_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        params=27161264,
        acc1=77.294,
        acc5=93.45,
        gflops=5.713,
        file_mb=103.903,
        crop=299,
        resize=342,
        min_size=(75, 75),
        recipe="https://github.com/pytorch/vision/tree/main/references/classification#inception-v3",
        docs="Weights ported from TensorFlow's release for the paper, auxiliary head included.",
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


@register_model(weights=Inception_V3_Weights)
def inception_v3(
    *, weights: Inception_V3_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> Inception3:
    """Inception v3. Expects 299x299 inputs (the weights' preset resizes to 342 and crops 299).

    Args:
        weights: an ``Inception_V3_Weights`` member, its name, ``None`` for random initialisation, or the path of a
            local checkpoint. With weights, ``transform_input`` defaults to True; the (pretrained) auxiliary head is
            kept unless ``aux_logits=False`` is passed.
        progress: show a download progress bar.
        **kwargs: ``Inception3`` arguments (num_classes, aux_logits, transform_input, inception_blocks,
            init_weights, dropout).

    Raises:
        ValueError: ``init_weights=True`` together with weights.
    """
    aux_keys: tuple[str, ...] = ()
    if weights is not None:
        aux_keys = _apply_pretrained_rules(kwargs, weights, ("AuxLogits.",), keep_aux_by_default=True)
    return build_model(Inception3, weights, progress, ignore_unexpected=aux_keys, **kwargs)
