"""ConvNeXt.

Liu et al., "A ConvNet for the 2020s" (2022). A ResNet modernised step by step towards a Swin Transformer:
a 4x4 patchify stem, stages of depthwise 7x7 blocks with an inverted MLP in channels-last layout, LayerNorm,
GELU, per-channel layer scale, and separate 2x2 strided downsampling layers between stages.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..ops.misc import Conv2dNormActivation, Permute, StochasticDepth
from ._api import WeightsEnum, register_model
from ._features import FeatureRecipe
from ._heads import head_width, linear_head, truncated_normal
from ._utils import build_model, check_image_batch
from ._weights import imagenet_entry

__all__ = [
    "ConvNeXt",
    "CNBlock",
    "CNBlockConfig",
    "ConvNeXt_Tiny_Weights",
    "ConvNeXt_Small_Weights",
    "ConvNeXt_Base_Weights",
    "ConvNeXt_Large_Weights",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
]

NormLayer = Callable[..., nn.Module]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor (each pixel normalised on its own)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm, Linear 4x, GELU, Linear back, layer scale, residual.

    The norm and the two Linear layers run channels-last (hence the ``Permute`` layers), which is what the
    checkpoints' ``block.2``/``block.3``/``block.5`` keys and Linear weight shapes describe.

    Args:
        dim: channels of the input and output.
        layer_scale: initial value of the learned per-channel scale of the residual branch.
        stochastic_depth_prob: probability of dropping the residual branch while training.
        norm_layer: channels-last norm constructor (default ``nn.LayerNorm(eps=1e-6)``).
    """

    def __init__(
        self, dim: int, layer_scale: float, stochastic_depth_prob: float, norm_layer: NormLayer | None = None
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim),
            Permute([0, 2, 3, 1]),
            norm_layer(dim),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), float(layer_scale)))
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stochastic_depth(self.layer_scale * self.block(x))
        out += x  # in place: a fresh tensor either way
        return out


@dataclass
class CNBlockConfig:
    """One stage: ``num_layers`` blocks of width ``input_channels``, then (unless ``out_channels`` is None) a
    downsampling layer to ``out_channels``."""

    input_channels: int
    out_channels: int | None
    num_layers: int


class ConvNeXt(nn.Module):
    """A 4x4 stride-4 stem, stages of ConvNeXt blocks separated by 2x2 stride-2 downsampling layers, global
    average pooling, a LayerNorm and a linear head.

    Args:
        block_setting: the stages.
        stochastic_depth_prob: drop probability of the last block; block ``i`` of ``n`` uses ``p * i / (n - 1)``.
        layer_scale: initial value of every block's layer scale.
        num_classes: size of the classification head.
        block: block constructor, called as ``block(dim, layer_scale, stochastic_depth_prob)`` (default
            :class:`CNBlock`).
        norm_layer: channels-first norm of the stem, the downsampling layers and the head (default
            ``LayerNorm2d(eps=1e-6)``). The blocks keep their own channels-last LayerNorm.

    ``feature_info`` lists each stage (``features.1``, ``.3``, ...) with its output channels and stride.

    Raises:
        ValueError: an empty ``block_setting``, stages whose widths do not chain, or ``num_classes`` < 1.
        TypeError: ``block_setting`` holds something other than :class:`CNBlockConfig`.
    """

    def __init__(
        self,
        block_setting: Sequence[CNBlockConfig],
        stochastic_depth_prob: float = 0.0,
        layer_scale: float = 1e-6,
        num_classes: int = 1000,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if not block_setting:
            raise ValueError("block_setting must list at least one stage, got an empty setting")
        if not isinstance(block_setting, Sequence) or not all(isinstance(cnf, CNBlockConfig) for cnf in block_setting):
            raise TypeError("block_setting must be a sequence of CNBlockConfig")
        for index, (prev, cnf) in enumerate(zip(block_setting, block_setting[1:]), start=1):
            produced = prev.out_channels if prev.out_channels is not None else prev.input_channels
            if cnf.input_channels != produced:
                raise ValueError(
                    f"stage {index} of block_setting takes {cnf.input_channels} channels but stage {index - 1} "
                    f"produces {produced}"
                )
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        block = block or CNBlock
        norm_layer = norm_layer or partial(LayerNorm2d, eps=1e-6)

        stem = Conv2dNormActivation(
            3,
            block_setting[0].input_channels,
            kernel_size=4,
            stride=4,
            padding=0,
            norm_layer=norm_layer,
            activation_layer=None,
            bias=True,
        )
        layers: list[nn.Module] = [stem]
        self.feature_info: list[dict[str, Any]] = []
        stride = 4
        total_blocks = sum(cnf.num_layers for cnf in block_setting)
        block_id = 0
        for cnf in block_setting:
            stage = []
            for _ in range(cnf.num_layers):
                # Linear from 0 at the first block to stochastic_depth_prob at the last.
                sd_prob = stochastic_depth_prob * block_id / max(total_blocks - 1, 1)
                stage.append(block(cnf.input_channels, layer_scale, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            stage_info = {"name": f"features.{len(layers) - 1}", "channels": cnf.input_channels, "stride": stride}
            self.feature_info.append(stage_info)
            if cnf.out_channels is not None:
                downsample = nn.Conv2d(cnf.input_channels, cnf.out_channels, kernel_size=2, stride=2)
                layers.append(nn.Sequential(norm_layer(cnf.input_channels), downsample))
                stride *= 2
        # Every stride is a kernel-sized, unpadded convolution: smaller inputs would shrink to nothing.
        self._min_size = stride

        last = block_setting[-1]
        head_channels = last.out_channels if last.out_channels is not None else last.input_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(norm_layer(head_channels), nn.Flatten(1), nn.Linear(head_channels, num_classes))

        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _reset_classifier(self, num_classes: int) -> None:
        self.classifier[2] = linear_head(head_width(self.classifier[2]), num_classes, init=truncated_normal(0.02))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, C, H/32, W/32)."""
        return self.features(x)

    def _feature_recipe(self) -> FeatureRecipe:
        return FeatureRecipe(min_size=(self._min_size, self._min_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__, min_size=(self._min_size, self._min_size))
        return self.classifier(self.avgpool(self.forward_features(x)))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_entry = partial(
    imagenet_entry,
    min_size=(32, 32),
    recipe="https://github.com/pytorch/vision/tree/main/references/classification#convnext",
    docs=(
        "Trained by TorchVision with a variant of its improved recipe (longer schedule, stronger augmentation "
        "and regularisation), slightly above the accuracy the paper reports."
    ),
)


class ConvNeXt_Tiny_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}convnext_tiny-983f1562.pth",
        params=28589128,
        acc1=82.52,
        acc5=96.146,
        gflops=4.456,
        file_mb=109.119,
        resize=236,
    )
    DEFAULT = IMAGENET1K_V1


class ConvNeXt_Small_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}convnext_small-0c510722.pth",
        params=50223688,
        acc1=83.616,
        acc5=96.65,
        gflops=8.684,
        file_mb=191.703,
        resize=230,
    )
    DEFAULT = IMAGENET1K_V1


class ConvNeXt_Base_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}convnext_base-6075fbad.pth",
        params=88591464,
        acc1=84.062,
        acc5=96.87,
        gflops=15.355,
        file_mb=338.064,
        resize=232,
    )
    DEFAULT = IMAGENET1K_V1


class ConvNeXt_Large_Weights(WeightsEnum):
    IMAGENET1K_V1 = _entry(
        f"{_URL}convnext_large-ea097f82.pth",
        params=197767336,
        acc1=84.414,
        acc5=96.976,
        gflops=34.361,
        file_mb=754.537,
        resize=232,
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

WeightsArg = WeightsEnum | Path | str | None


def _convnext(
    widths: tuple[int, int, int, int],
    depths: tuple[int, int, int, int],
    default_sd_prob: float,
    weights: WeightsArg,
    progress: bool,
    **kwargs: Any,
) -> ConvNeXt:
    """Four stages of the given widths and depths, each but the last followed by downsampling."""
    if "block_setting" in kwargs:
        raise ValueError("The convnext_* builders fix block_setting; build ConvNeXt(...) directly for custom stages")
    setting = [CNBlockConfig(w, w_next, d) for w, w_next, d in zip(widths, (*widths[1:], None), depths)]
    kwargs.setdefault("stochastic_depth_prob", default_sd_prob)
    return build_model(ConvNeXt, weights, progress, block_setting=setting, **kwargs)


@register_model(weights=ConvNeXt_Tiny_Weights)
def convnext_tiny(
    *, weights: ConvNeXt_Tiny_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ConvNeXt:
    """ConvNeXt-T.

    Args:
        weights: a ``ConvNeXt_Tiny_Weights`` member, its name, ``None`` for random initialisation, or the
            path of a local ``.pth``/``.safetensors`` checkpoint.
        progress: show a download progress bar.
        **kwargs: ``ConvNeXt`` arguments (stochastic_depth_prob, layer_scale, num_classes, block,
            norm_layer). The other builders take the same.
    """
    return _convnext((96, 192, 384, 768), (3, 3, 9, 3), 0.1, weights, progress, **kwargs)


@register_model(weights=ConvNeXt_Small_Weights)
def convnext_small(
    *, weights: ConvNeXt_Small_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ConvNeXt:
    """ConvNeXt-S."""
    return _convnext((96, 192, 384, 768), (3, 3, 27, 3), 0.4, weights, progress, **kwargs)


@register_model(weights=ConvNeXt_Base_Weights)
def convnext_base(
    *, weights: ConvNeXt_Base_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ConvNeXt:
    """ConvNeXt-B."""
    return _convnext((128, 256, 512, 1024), (3, 3, 27, 3), 0.5, weights, progress, **kwargs)


@register_model(weights=ConvNeXt_Large_Weights)
def convnext_large(
    *, weights: ConvNeXt_Large_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> ConvNeXt:
    """ConvNeXt-L."""
    return _convnext((192, 384, 768, 1536), (3, 3, 27, 3), 0.5, weights, progress, **kwargs)
