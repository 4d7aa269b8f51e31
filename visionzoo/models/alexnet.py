"""AlexNet.

Krizhevsky, "One weird trick for parallelizing convolutional neural networks" (2014), the single-tower
re-design of Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural Networks" (2012):
narrower early convolutions (64 and 192 channels) and no local response normalisation. The official
checkpoint follows this variant, not the 2012 paper's two-GPU layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._api import WeightsEnum, register_model
from ._features import FeatureRecipe, sequential_stages
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch
from ._weights import imagenet_entry

__all__ = ["AlexNet", "AlexNet_Weights", "alexnet"]

# Three un-padded 3x3/2 max-pools after a 11x11/4 convolution: anything smaller collapses to nothing.
_MIN_SIZE = (63, 63)


class AlexNet(nn.Module):
    """Five convolutions with three max-pools, pooled to 6x6, then a three-layer MLP with dropout.

    Args:
        num_classes: size of the classification head.
        dropout: dropout probability before each of the two hidden fully connected layers.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        # Flat Sequentials: their indices are the checkpoint's keys (features.0, features.3, ..., classifier.6).
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def _reset_classifier(self, num_classes: int) -> None:
        self.classifier[6] = linear_head(head_width(self.classifier[6]), num_classes)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The last layer of ``features`` at each stride (4, 8, 16, 32): the maps ``features_only=True`` returns."""
        return sequential_stages(self, "features")

    def _feature_recipe(self) -> FeatureRecipe:
        return FeatureRecipe(min_size=_MIN_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__, min_size=_MIN_SIZE)
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class AlexNet_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        params=61100840,
        acc1=56.522,
        acc5=79.066,
        gflops=0.714,
        file_mb=233.087,
        min_size=_MIN_SIZE,
        recipe="https://github.com/pytorch/vision/tree/main/references/classification#alexnet-and-vgg",
        docs="Trained with a simplified recipe; close to the accuracy the paper reports.",
    )
    DEFAULT = IMAGENET1K_V1


@register_model(weights=AlexNet_Weights)
def alexnet(*, weights: AlexNet_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> AlexNet:
    """AlexNet in its "one weird trick" form.

    Args:
        weights: an ``AlexNet_Weights`` member, its name, ``None`` for random initialisation, or the path of a
            local checkpoint.
        progress: show a download progress bar.
        **kwargs: ``AlexNet`` arguments (num_classes, dropout).
    """
    return build_model(AlexNet, weights, progress, **kwargs)
