"""SqueezeNet 1.0 and 1.1.

Iandola et al., "SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size" (2016).
The network is a stack of Fire modules (a 1x1 "squeeze" convolution feeding parallel 1x1 and 3x3 "expand"
convolutions) and has no fully connected layer: a 1x1 convolution to ``num_classes`` channels followed by global
average pooling is the head. Version 1.1, from the authors' repository, uses a 3x3 stem and pools earlier for
2.4x less computation at the same accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._api import WeightsEnum, register_model
from ._features import FeatureRecipe, sequential_stages
from ._heads import NoHead, head_width
from ._utils import build_model, check_image_batch, set_or_check
from ._weights import imagenet_entry

__all__ = ["SqueezeNet", "SqueezeNet1_0_Weights", "SqueezeNet1_1_Weights", "squeezenet1_0", "squeezenet1_1"]


class Fire(nn.Module):
    """Squeeze to ``squeeze_planes`` with a 1x1 convolution, then concatenate a 1x1 and a 3x3 expansion."""

    def __init__(self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.out_channels = expand1x1_planes + expand3x3_planes  # the two expand branches, concatenated
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1
        )


# Per version: stem channels, stem kernel, the smallest input that survives the pooling, and the body:
# "M" is a 3x3/2 max-pool (ceil mode), a pair (s, e) a Fire module squeezing to s and expanding to e + e channels.
_VERSIONS: dict[str, tuple[int, int, tuple[int, int], list[str | tuple[int, int]]]] = {
    "1_0": (
        96,
        7,
        (21, 21),
        [(16, 64), (16, 64), (32, 128), "M", (32, 128), (48, 192), (48, 192), (64, 256), "M", (64, 256)],
    ),
    "1_1": (
        64,
        3,
        (17, 17),
        [(16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192), (64, 256), (64, 256)],
    ),
}


class SqueezeNet(nn.Module):
    """A strided stem convolution, Fire modules with max-pools between them, and a convolutional head.

    Args:
        version: ``"1_0"`` or ``"1_1"``.
        num_classes: output channels of the final 1x1 convolution (the number of classes).
        dropout: dropout probability before the final convolution.

    Raises:
        ValueError: unknown ``version`` or non-positive ``num_classes``.
    """

    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        if version not in _VERSIONS:
            raise ValueError(f"Unsupported SqueezeNet version {version!r}: expected one of {', '.join(_VERSIONS)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = num_classes
        stem_channels, stem_kernel, self._min_size, body = _VERSIONS[version]

        layers: list[nn.Module] = [
            nn.Conv2d(3, stem_channels, kernel_size=stem_kernel, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
        ]
        channels = stem_channels
        for item in body:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            else:
                squeeze, expand = item
                layers.append(Fire(channels, squeeze, expand, expand))
                channels = 2 * expand
        self.features = nn.Sequential(*layers)

        final_conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1)
        )

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # The class-scoring convolution starts small so that initial logits are close to uniform.
                if module is final_conv:
                    nn.init.normal_(module.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def _reset_classifier(self, num_classes: int) -> None:
        width = head_width(self.classifier[1])
        self.classifier[1] = nn.Conv2d(width, num_classes, kernel_size=1) if num_classes else NoHead(width)
        if num_classes:
            nn.init.normal_(self.classifier[1].weight, mean=0.0, std=0.01)
            nn.init.zeros_(self.classifier[1].bias)
        self.num_classes = num_classes

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The last layer of ``features`` at each stride (2, 4, 8, 16): the maps ``features_only=True`` returns."""
        return sequential_stages(self, "features")

    def _feature_recipe(self) -> FeatureRecipe:
        return FeatureRecipe(min_size=self._min_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__, min_size=self._min_size)
        return torch.flatten(self.classifier(self.features(x)), 1)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPE = "https://github.com/pytorch/vision/pull/49#issuecomment-277560717"
_DOCS = "Trained with a simple recipe; close to the accuracy the paper reports."


class SqueezeNet1_0_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        f"{_URL}squeezenet1_0-b66bff10.pth",
        params=1248424,
        acc1=58.092,
        acc5=80.42,
        gflops=0.819,
        file_mb=4.778,
        min_size=_VERSIONS["1_0"][2],
        recipe=_RECIPE,
        docs=_DOCS,
    )
    DEFAULT = IMAGENET1K_V1


class SqueezeNet1_1_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        f"{_URL}squeezenet1_1-b8a52dc0.pth",
        params=1235496,
        acc1=58.178,
        acc5=80.624,
        gflops=0.349,
        file_mb=4.729,
        min_size=_VERSIONS["1_1"][2],
        recipe=_RECIPE,
        docs=_DOCS,
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _squeezenet(builder_version: str, weights: WeightsEnum | Path | None, progress: bool, **kwargs: Any) -> SqueezeNet:
    set_or_check(kwargs, "version", builder_version)
    return build_model(SqueezeNet, weights, progress, **kwargs)


@register_model(weights=SqueezeNet1_0_Weights)
def squeezenet1_0(
    *, weights: SqueezeNet1_0_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SqueezeNet:
    """SqueezeNet 1.0, as in the paper.

    Args:
        weights: a ``SqueezeNet1_0_Weights`` member, its name, ``None`` for random initialisation, or the path
            of a local checkpoint.
        progress: show a download progress bar.
        **kwargs: ``SqueezeNet`` arguments (num_classes, dropout).
    """
    return _squeezenet("1_0", weights, progress, **kwargs)


@register_model(weights=SqueezeNet1_1_Weights)
def squeezenet1_1(
    *, weights: SqueezeNet1_1_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SqueezeNet:
    """SqueezeNet 1.1: 2.4x less computation than 1.0 and slightly fewer parameters, at the same accuracy."""
    return _squeezenet("1_1", weights, progress, **kwargs)
