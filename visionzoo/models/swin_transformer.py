"""Swin Transformer (V1 and V2).

Liu et al., "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows" (2021); Liu et al.,
"Swin Transformer V2: Scaling Up Capacity and Resolution" (2022). Self-attention runs inside non-overlapping
windows whose grid is shifted by half a window every other block, so information crosses window borders;
patch merging halves the resolution between stages. V2 moves the norms after the residual branches, replaces
dot-product attention by cosine attention with a learned per-head temperature, and computes the relative
position bias with a small MLP of log-spaced coordinates instead of a lookup table.

The building blocks live in :mod:`visionzoo.models._swin_blocks` and are importable from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..ops.misc import Permute
from ..transforms import InterpolationMode
from ._api import WeightsEnum, register_model
from ._features import FeatureRecipe
from ._heads import head_width, linear_head, truncated_normal

# The blocks are importable from here (e.g. ``block=SwinTransformerBlockV2``) but stay out of ``__all__``, so
# that ``from visionzoo.models import *`` brings in what the reference's does.
from ._swin_blocks import (  # noqa: F401
    NormLayer,
    PatchMerging,
    PatchMergingV2,
    ShiftedWindowAttention,
    ShiftedWindowAttentionV2,
    SwinTransformerBlock,
    SwinTransformerBlockV2,
    _pair,
)
from ._utils import build_model, check_image_batch, set_or_check
from ._weights import imagenet_entry

__all__ = [
    "SwinTransformer",
    "Swin_T_Weights",
    "Swin_S_Weights",
    "Swin_B_Weights",
    "Swin_V2_T_Weights",
    "Swin_V2_S_Weights",
    "Swin_V2_B_Weights",
    "swin_t",
    "swin_s",
    "swin_b",
    "swin_v2_t",
    "swin_v2_s",
    "swin_v2_b",
]

# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


class SwinTransformer(nn.Module):
    """Patch embedding, stages of Swin blocks (alternately plain and shifted windows) separated by patch
    merging, a final norm, global average pooling and a linear head.

    Args:
        patch_size: (height, width) of the non-overlapping patches of the stem.
        embed_dim: width of the first stage; each later stage doubles it.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: attention window (height, width) in tokens; the shifted blocks shift by half of it.
        mlp_ratio: MLP hidden width relative to the stage width.
        dropout: dropout of the MLPs and attention outputs.
        attention_dropout: dropout of the attention weights.
        stochastic_depth_prob: drop probability of the last block; block ``i`` of ``n`` uses ``p * i / (n - 1)``.
        num_classes: size of the classification head.
        norm_layer: norm constructor for every norm (default ``nn.LayerNorm(eps=1e-5)``).
        block: block constructor (default :class:`SwinTransformerBlock`; V2 uses :class:`SwinTransformerBlockV2`).
        downsample_layer: called as ``downsample_layer(dim, norm_layer)`` between stages (default
            :class:`PatchMerging`; V2 uses :class:`PatchMergingV2`).

    Any input of at least one patch works: maps not divisible by the window are padded, odd maps are padded
    before merging. ``feature_info`` lists the stages (``features.1``, ``.3``, ...) with their channels and
    strides (a (height, width) pair for non-square patches); their outputs are channels-last (N, H, W, C).

    Raises:
        ValueError: inconsistent or non-positive sizes, or a stage width not divisible by its heads.
    """

    def __init__(
        self,
        patch_size: Sequence[int],
        embed_dim: int,
        depths: Sequence[int],
        num_heads: Sequence[int],
        window_size: Sequence[int],
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        stochastic_depth_prob: float = 0.1,
        num_classes: int = 1000,
        norm_layer: NormLayer | None = None,
        block: Callable[..., nn.Module] | None = None,
        downsample_layer: Callable[..., nn.Module] = PatchMerging,
    ) -> None:
        super().__init__()
        patch = _pair(patch_size, "patch_size")
        depths, num_heads = list(depths), list(num_heads)
        if min(patch) < 1 or embed_dim < 1:
            raise ValueError(f"patch_size and embed_dim must be positive, got {patch} and {embed_dim}")
        if not depths or len(depths) != len(num_heads) or min(depths) < 1 or min(num_heads) < 1:
            raise ValueError(
                f"depths and num_heads must list the same positive number of stages, got {depths} and {num_heads}"
            )
        for stage, heads in enumerate(num_heads):
            if (embed_dim * 2**stage) % heads:
                raise ValueError(f"stage {stage} has width {embed_dim * 2**stage}, not divisible by {heads} heads")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        block = block or SwinTransformerBlock
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-5)
        window = _pair(window_size, "window_size")
        self.num_classes = num_classes
        self._patch_size = patch

        # Keys features.0.0 / features.0.2: the conv and the norm around a (parameter-free) permute.
        stem = nn.Sequential(
            nn.Conv2d(3, embed_dim, kernel_size=patch, stride=patch), Permute([0, 2, 3, 1]), norm_layer(embed_dim)
        )
        layers: list[nn.Module] = [stem]
        self.feature_info: list[dict[str, Any]] = []
        total_blocks, block_id = sum(depths), 0
        for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2**stage
            blocks = []
            for index in range(depth):
                blocks.append(
                    block(
                        dim,
                        heads,
                        window_size=list(window),
                        shift_size=[0, 0] if index % 2 == 0 else [w // 2 for w in window],
                        mlp_ratio=mlp_ratio,
                        dropout=dropout,
                        attention_dropout=attention_dropout,
                        stochastic_depth_prob=stochastic_depth_prob * block_id / max(total_blocks - 1, 1),
                        norm_layer=norm_layer,
                    )
                )
                block_id += 1
            layers.append(nn.Sequential(*blocks))
            stride = (patch[0] * 2**stage, patch[1] * 2**stage)
            info_stride = stride[0] if stride[0] == stride[1] else stride
            self.feature_info.append({"name": f"features.{len(layers) - 1}", "channels": dim, "stride": info_stride})
            if stage < len(depths) - 1:
                layers.append(downsample_layer(dim, norm_layer))
        self.features = nn.Sequential(*layers)

        num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = norm_layer(num_features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(num_features, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _reset_classifier(self, num_classes: int) -> None:
        self.head = linear_head(head_width(self.head), num_classes, init=truncated_normal(0.02))
        self.num_classes = num_classes

    def _feature_recipe(self) -> FeatureRecipe:
        return FeatureRecipe(min_size=self._patch_size, readout=_channels_first)  # the stages run channels last

    def forward_features(self, x: Tensor) -> Tensor:
        """The normalised last-stage map, (N, C, H/32, W/32) for the default patch size."""
        return self.norm(self.features(x)).permute(0, 3, 1, 2)

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, type(self).__name__, min_size=self._patch_size)
        return self.head(torch.flatten(self.avgpool(self.forward_features(x)), 1))


def _channels_first(x: Tensor) -> Tensor:
    return x.permute(0, 3, 1, 2)


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPE = "https://github.com/pytorch/vision/tree/main/references/classification#swintransformer"
_DOCS = "Trained by TorchVision with a recipe close to the paper's; the accuracy closely reproduces the paper's."
_v1 = partial(imagenet_entry, recipe=_RECIPE, docs=_DOCS, interpolation=InterpolationMode.BICUBIC, min_size=(224, 224))
_v2 = partial(
    imagenet_entry,
    recipe=f"{_RECIPE}-v2",
    docs=_DOCS,
    interpolation=InterpolationMode.BICUBIC,
    crop=256,
    resize=260,
    min_size=(256, 256),
)


class Swin_T_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}swin_t-704ceda3.pth",
        params=28288354,
        acc1=81.474,
        acc5=95.776,
        gflops=4.491,
        file_mb=108.19,
        resize=232,
    )
    DEFAULT = IMAGENET1K_V1


class Swin_S_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}swin_s-5e29d889.pth",
        params=49606258,
        acc1=83.196,
        acc5=96.36,
        gflops=8.741,
        file_mb=189.786,
        resize=246,
    )
    DEFAULT = IMAGENET1K_V1


class Swin_B_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v1(
        f"{_URL}swin_b-68c6b09e.pth",
        params=87768224,
        acc1=83.582,
        acc5=96.64,
        gflops=15.431,
        file_mb=335.364,
        resize=238,
    )
    DEFAULT = IMAGENET1K_V1


class Swin_V2_T_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v2(
        f"{_URL}swin_v2_t-b137f0e2.pth", params=28351570, acc1=82.072, acc5=96.132, gflops=5.94, file_mb=108.626
    )
    DEFAULT = IMAGENET1K_V1


class Swin_V2_S_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v2(
        f"{_URL}swin_v2_s-637d8ceb.pth", params=49737442, acc1=83.712, acc5=96.816, gflops=11.546, file_mb=190.675
    )
    DEFAULT = IMAGENET1K_V1


class Swin_V2_B_Weights(WeightsEnum):
    IMAGENET1K_V1 = _v2(
        f"{_URL}swin_v2_b-781e5279.pth",
        params=87930848,
        acc1=84.112,
        acc5=96.864,
        gflops=20.325,
        file_mb=336.372,
        resize=272,
    )
    DEFAULT = IMAGENET1K_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

WeightsArg = WeightsEnum | Path | str | None


def _swin(
    embed_dim: int,
    depths: list[int],
    num_heads: list[int],
    window: int,
    default_sd_prob: float,
    v2: bool,
    weights: WeightsArg,
    progress: bool,
    /,
    **kwargs: Any,
) -> SwinTransformer:
    """4x4 patches and the given widths, depths, heads and square window; V2 blocks and merging if ``v2``."""
    for name, value in (
        ("patch_size", [4, 4]),
        ("embed_dim", embed_dim),
        ("depths", depths),
        ("num_heads", num_heads),
        ("window_size", [window, window]),
    ):
        set_or_check(kwargs, name, value)
    kwargs.setdefault("stochastic_depth_prob", default_sd_prob)
    if v2:
        kwargs.setdefault("block", SwinTransformerBlockV2)
        kwargs.setdefault("downsample_layer", PatchMergingV2)
    return build_model(SwinTransformer, weights, progress, **kwargs)


@register_model(weights=Swin_T_Weights)
def swin_t(
    *, weights: Swin_T_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-T (Liu et al., 2021).

    Args:
        weights: a ``Swin_T_Weights`` member, its name, ``None`` for random initialisation, or the path of a
            local ``.pth``/``.safetensors`` checkpoint.
        progress: show a download progress bar.
        **kwargs: ``SwinTransformer`` arguments (mlp_ratio, dropout, attention_dropout, stochastic_depth_prob,
            num_classes, norm_layer, block, downsample_layer). The other builders take the same; the
            architecture arguments they fix (patch_size, embed_dim, depths, num_heads, window_size) may only
            be repeated with the same value.
    """
    return _swin(96, [2, 2, 6, 2], [3, 6, 12, 24], 7, 0.2, False, weights, progress, **kwargs)


@register_model(weights=Swin_S_Weights)
def swin_s(
    *, weights: Swin_S_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-S (Liu et al., 2021)."""
    return _swin(96, [2, 2, 18, 2], [3, 6, 12, 24], 7, 0.3, False, weights, progress, **kwargs)


@register_model(weights=Swin_B_Weights)
def swin_b(
    *, weights: Swin_B_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-B (Liu et al., 2021)."""
    return _swin(128, [2, 2, 18, 2], [4, 8, 16, 32], 7, 0.5, False, weights, progress, **kwargs)


@register_model(weights=Swin_V2_T_Weights)
def swin_v2_t(
    *, weights: Swin_V2_T_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-V2-T (Liu et al., 2022), with 8x8 windows."""
    return _swin(96, [2, 2, 6, 2], [3, 6, 12, 24], 8, 0.2, True, weights, progress, **kwargs)


@register_model(weights=Swin_V2_S_Weights)
def swin_v2_s(
    *, weights: Swin_V2_S_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-V2-S (Liu et al., 2022), with 8x8 windows."""
    return _swin(96, [2, 2, 18, 2], [3, 6, 12, 24], 8, 0.3, True, weights, progress, **kwargs)


@register_model(weights=Swin_V2_B_Weights)
def swin_v2_b(
    *, weights: Swin_V2_B_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-V2-B (Liu et al., 2022), with 8x8 windows."""
    return _swin(128, [2, 2, 18, 2], [4, 8, 16, 32], 8, 0.5, True, weights, progress, **kwargs)
