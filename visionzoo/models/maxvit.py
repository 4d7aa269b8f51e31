"""MaxViT.

Tu et al., "MaxViT: Multi-Axis Vision Transformer" (2022). Each block is an MBConv followed by two attention
layers of linear cost: *window* attention within non-overlapping P x P windows (local), then *grid* attention
among the pixels of a sparse P x P grid spread over the whole feature map (global, dilated). Both use a
relative position bias over the P x P tokens they attend among.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.fx
from torch import nn

from ..ops.misc import Conv2dNormActivation, SqueezeExcitation, StochasticDepth
from ..transforms import InterpolationMode
from ._api import WeightsEnum, register_model
from ._features import FeatureRecipe, static_stages
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch
from ._weights import imagenet_entry

__all__ = ["MaxVit", "MaxVit_T_Weights", "maxvit_t"]

LayerFactory = Callable[..., nn.Module]


def _halve(size: tuple[int, int]) -> tuple[int, int]:
    """Output size of a 3x3 convolution (or pooling) with stride 2 and padding 1."""
    return ((size[0] - 1) // 2 + 1, (size[1] - 1) // 2 + 1)


def _stage_sizes(input_size: tuple[int, int], num_stages: int) -> list[tuple[int, int]]:
    """Feature-map size inside each stage: the stem and the first block of every stage halve it."""
    size = _halve(input_size)
    sizes = []
    for _ in range(num_stages):
        size = _halve(size)
        sizes.append(size)
    return sizes


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


class PreNormMBConv(nn.Module):
    """MBConv with a norm layer in front (pre-activation), as MaxViT uses it.

    norm, 1x1 expand, depthwise 3x3 (strided in a stage's first block), squeeze-and-excitation, 1x1 project;
    the shortcut is average-pooled and projected with a 1x1 convolution when the shape changes.

    Args:
        expansion_ratio: inner width relative to ``out_channels``.
        squeeze_ratio: SE bottleneck width relative to ``out_channels``.
        stride: 1 or 2.
        p_stochastic_dropout: stochastic depth probability of the residual branch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expansion_ratio: float,
        squeeze_ratio: float,
        stride: int,
        activation_layer: LayerFactory,
        norm_layer: LayerFactory,
        p_stochastic_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MBConv stride must be 1 or 2, got {stride}")
        self.proj: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            shortcut: list[nn.Module] = [nn.AvgPool2d(3, stride=2, padding=1)] if stride == 2 else []
            self.proj = nn.Sequential(*shortcut, nn.Conv2d(in_channels, out_channels, kernel_size=1))
        self.stochastic_depth = StochasticDepth(p_stochastic_dropout, "row")

        mid = int(out_channels * expansion_ratio)
        conv = partial(Conv2dNormActivation, norm_layer=norm_layer, activation_layer=activation_layer, inplace=None)
        self.layers = nn.Sequential(
            OrderedDict(
                pre_norm=norm_layer(in_channels),
                conv_a=conv(in_channels, mid, kernel_size=1, padding=0),
                conv_b=conv(mid, mid, kernel_size=3, stride=stride, padding=1, groups=mid),
                squeeze_excitation=SqueezeExcitation(mid, int(out_channels * squeeze_ratio), activation=nn.SiLU),
                conv_c=nn.Conv2d(mid, out_channels, kernel_size=1),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) + self.stochastic_depth(self.layers(x))


class RelativePositionSelfAttention(nn.Module):
    """Multi-head self-attention among the P x P tokens of each window (or grid), plus a learned bias per head
    for every relative offset.

    Args:
        feat_dim: token width.
        head_dim: width of each head; must divide ``feat_dim``.
        max_seq_len: tokens per window, P * P.
    """

    relative_position_index: torch.Tensor

    def __init__(self, feat_dim: int, head_dim: int, max_seq_len: int) -> None:
        super().__init__()
        if feat_dim % head_dim != 0:
            raise ValueError(f"the block width {feat_dim} must be divisible by head_dim={head_dim}")
        side = int(round(max_seq_len**0.5))
        if side * side != max_seq_len:
            raise ValueError(f"max_seq_len must be the square of the partition size, got {max_seq_len}")
        self.n_heads = feat_dim // head_dim
        self.head_dim = head_dim
        self.size = side
        self.max_seq_len = max_seq_len
        # The published weights were trained with the *block* width in the softmax temperature, not the head width.
        self.scale_factor = feat_dim**-0.5

        self.to_qkv = nn.Linear(feat_dim, 3 * feat_dim)
        self.merge = nn.Linear(feat_dim, feat_dim)
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * side - 1) ** 2, self.n_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # Row of the bias table for each (query, key) pair: their offset (dy, dx), each shifted to be >= 0.
        ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        coords = torch.stack([ys.flatten(), xs.flatten()])
        offsets = coords[:, :, None] - coords[:, None, :] + (side - 1)
        self.register_buffer("relative_position_index", offsets[0] * (2 * side - 1) + offsets[1])

    def relative_position_bias(self) -> torch.Tensor:
        """The (heads, P*P, P*P) bias added to the attention logits."""
        return self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, groups, P*P, C) tokens to (B, groups, P*P, C); each group attends within itself."""
        b, g, p, c = x.shape
        qkv = self.to_qkv(x).view(b * g, p, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        # Spelled out rather than F.scaled_dot_product_attention: with a float bias and only P*P = 49 keys,
        # its CPU kernel measured 4-19% slower on the whole model than two batched matmuls and a softmax.
        logits = torch.matmul(q, k.transpose(-2, -1))
        logits.mul_(self.scale_factor).add_(self.relative_position_bias().to(logits.dtype))
        out = torch.matmul(logits.softmax(dim=-1), v)
        return self.merge(out.transpose(1, 2).reshape(b, g, p, c))


def _window_partition(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) to (B, H/size * W/size, size*size, C): contiguous size x size windows."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // size, size, w // size, size).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, -1, size * size, c)


def _window_merge(x: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    b, _, _, c = x.shape
    x = x.view(b, h // size, w // size, size, size, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, h, w)


def _grid_partition(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) to (B, H/size * W/size, size*size, C): a size x size grid of pixels H/size (W/size) apart."""
    b, c, h, w = x.shape
    x = x.view(b, c, size, h // size, size, w // size).permute(0, 3, 5, 2, 4, 1)
    return x.reshape(b, -1, size * size, c)


def _grid_merge(x: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    b, _, _, c = x.shape
    x = x.view(b, h // size, w // size, size, size, c).permute(0, 5, 3, 1, 4, 2)
    return x.reshape(b, c, h, w)


class PartitionAttention(nn.Module):
    """Window or grid attention plus an MLP, each pre-norm and residual, on a (B, C, H, W) feature map.

    Args:
        in_channels: channels of the feature map.
        head_dim: width of each attention head.
        partition_size: P; windows are P x P pixels, grids are P x P pixels spread evenly.
        partition_type: ``"window"`` (local) or ``"grid"`` (global, dilated).
        grid_size: the feature-map size the layer is built for (H and W must be multiples of P).
        mlp_ratio: MLP width relative to ``in_channels``.
        activation_layer: MLP activation; ``norm_layer``: token norm.
        attention_dropout, mlp_dropout: dropout after the attention and after the MLP.
        p_stochastic_dropout: stochastic depth probability of both residual branches.
    """

    def __init__(
        self,
        in_channels: int,
        head_dim: int,
        partition_size: int,
        partition_type: str,
        grid_size: tuple[int, int],
        mlp_ratio: int,
        activation_layer: LayerFactory,
        norm_layer: LayerFactory,
        attention_dropout: float,
        mlp_dropout: float,
        p_stochastic_dropout: float,
    ) -> None:
        super().__init__()
        if partition_type not in ("window", "grid"):
            raise ValueError(f"partition_type must be 'window' or 'grid', got {partition_type!r}")
        self.partition_type = partition_type
        self.partition_size = partition_size
        self.grid_size = grid_size
        self.attn_layer = nn.Sequential(
            norm_layer(in_channels),
            RelativePositionSelfAttention(in_channels, head_dim, partition_size**2),
            nn.Dropout(attention_dropout),
        )
        self.mlp_layer = nn.Sequential(
            nn.LayerNorm(in_channels),
            nn.Linear(in_channels, in_channels * mlp_ratio),
            activation_layer(),
            nn.Linear(in_channels * mlp_ratio, in_channels),
            nn.Dropout(mlp_dropout),
        )
        self.stochastic_depth = StochasticDepth(p_stochastic_dropout, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        grid = self.partition_type == "grid"
        tokens = (_grid_partition if grid else _window_partition)(x, self.partition_size)
        tokens = tokens + self.stochastic_depth(self.attn_layer(tokens))
        tokens = tokens + self.stochastic_depth(self.mlp_layer(tokens))
        return (_grid_merge if grid else _window_merge)(tokens, self.partition_size, h, w)


class MaxVitBlock(nn.Module):
    """MBConv, window attention, grid attention (the paper's MaxViT block); ``layers`` holds the three."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        squeeze_ratio: float,
        expansion_ratio: float,
        stride: int,
        norm_layer: LayerFactory,
        activation_layer: LayerFactory,
        head_dim: int,
        mlp_ratio: int,
        mlp_dropout: float,
        attention_dropout: float,
        p_stochastic_dropout: float,
        partition_size: int,
        grid_size: tuple[int, int],
    ) -> None:
        super().__init__()
        attention = partial(
            PartitionAttention,
            out_channels,
            head_dim,
            partition_size,
            grid_size=grid_size,
            mlp_ratio=mlp_ratio,
            activation_layer=activation_layer,
            norm_layer=nn.LayerNorm,
            attention_dropout=attention_dropout,
            mlp_dropout=mlp_dropout,
            p_stochastic_dropout=p_stochastic_dropout,
        )
        self.layers = nn.Sequential(
            OrderedDict(
                # "MBconv" (sic): the checkpoints' key.
                MBconv=PreNormMBConv(
                    in_channels,
                    out_channels,
                    expansion_ratio,
                    squeeze_ratio,
                    stride,
                    activation_layer,
                    norm_layer,
                    p_stochastic_dropout,
                ),
                window_attention=attention(partition_type="window"),
                grid_attention=attention(partition_type="grid"),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MaxVitStage(nn.Module):
    """``len(p_stochastic)`` MaxViT blocks; the first halves the resolution and changes the width."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid_size: tuple[int, int],
        p_stochastic: list[float],
        **block_args: Any,
    ) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.layers = nn.ModuleList(
            MaxVitBlock(
                in_channels if i == 0 else out_channels,
                out_channels,
                stride=2 if i == 0 else 1,
                p_stochastic_dropout=p,
                grid_size=grid_size,
                **block_args,
            )
            for i, p in enumerate(p_stochastic)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x = block(x)
        return x


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def _as_size(value: int | Sequence[int]) -> tuple[int, int]:
    size = (value, value) if isinstance(value, int) else tuple(value)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"input_size must be a positive int or (height, width), got {value!r}")
    return size  # type: ignore[return-value]


class MaxVit(nn.Module):
    """A two-convolution stem, stages of MaxViT blocks, then pooling, LayerNorm, Linear + tanh and the head.

    Args:
        input_size: (height, width) of the images; every stage's feature map must be divisible by
            ``partition_size``. Other sizes with that property work as well.
        stem_channels: width of the stem.
        partition_size: P, the side of the attention windows and grids.
        block_channels, block_layers: width and number of blocks of each stage.
        head_dim: width of each attention head.
        stochastic_depth_prob: probability of the last block; it grows linearly from 0 over all blocks.
        norm_layer: norm of the convolutions (default ``BatchNorm2d(eps=1e-3, momentum=0.01)``).
        activation_layer: activation of the convolutions and of the MLPs.
        squeeze_ratio, expansion_ratio: SE and MBConv widths relative to the block width.
        mlp_ratio, mlp_dropout, attention_dropout: MLP width ratio and the dropouts of the attention layers.
        num_classes: size of the classification head.

    Raises:
        ValueError: mismatched stage lists, a stage size not divisible by ``partition_size``, a width not
            divisible by ``head_dim``, or ``num_classes`` < 1.
    """

    def __init__(
        self,
        input_size: int | tuple[int, int],
        stem_channels: int,
        partition_size: int,
        block_channels: list[int],
        block_layers: list[int],
        head_dim: int,
        stochastic_depth_prob: float,
        norm_layer: LayerFactory | None = None,
        activation_layer: LayerFactory = nn.GELU,
        squeeze_ratio: float = 0.25,
        expansion_ratio: float = 4,
        mlp_ratio: int = 4,
        mlp_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.input_size = _as_size(input_size)
        if len(block_channels) != len(block_layers) or not block_channels:
            raise ValueError(
                f"block_channels and block_layers must list the same (non-zero) number of stages, got "
                f"{len(block_channels)} and {len(block_layers)}"
            )
        if any(n < 1 for n in block_layers):
            raise ValueError(f"every stage needs at least one block, got block_layers={block_layers}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.partition_size = partition_size
        self._check_stage_sizes(self.input_size, len(block_channels))
        # Settings of the official TensorFlow implementation.
        norm_layer = norm_layer or partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)

        self.stem = nn.Sequential(
            Conv2dNormActivation(
                3,
                stem_channels,
                3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=activation_layer,
                bias=False,
                inplace=None,
            ),
            Conv2dNormActivation(stem_channels, stem_channels, 3, norm_layer=None, activation_layer=None, bias=True),
        )

        total = sum(block_layers)
        probabilities = [stochastic_depth_prob * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        block_args = dict(
            squeeze_ratio=squeeze_ratio,
            expansion_ratio=expansion_ratio,
            norm_layer=norm_layer,
            activation_layer=activation_layer,
            head_dim=head_dim,
            mlp_ratio=mlp_ratio,
            mlp_dropout=mlp_dropout,
            attention_dropout=attention_dropout,
            partition_size=partition_size,
        )
        self.blocks = nn.ModuleList()
        widths = [stem_channels, *block_channels]
        sizes = _stage_sizes(self.input_size, len(block_channels))
        start = 0
        for index, count in enumerate(block_layers):
            stage_probabilities = probabilities[start : start + count]
            self.blocks.append(
                MaxVitStage(widths[index], widths[index + 1], sizes[index], stage_probabilities, **block_args)
            )
            start += count

        last = block_channels[-1]
        # Pooled features go through LayerNorm and a tanh "pre-logits" layer before the (bias-free) head.
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.LayerNorm(last),
            nn.Linear(last, last),
            nn.Tanh(),
            nn.Linear(last, num_classes, bias=False),
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _reset_classifier(self, num_classes: int) -> None:
        init = lambda layer: nn.init.normal_(layer.weight, std=0.02)  # noqa: E731 (bias-free head)
        self.classifier[5] = linear_head(head_width(self.classifier[5]), num_classes, bias=False, init=init)

    def _check_stage_sizes(self, size: tuple[int, int], num_stages: int) -> None:
        _check_stage_sizes(size, num_stages, self.partition_size)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """The stem (stride 2) and each stage: the maps ``features_only=True`` returns."""
        names = ["stem", *(f"blocks.{i}" for i in range(len(self.blocks)))]
        return static_stages(self, names)

    def _feature_recipe(self) -> FeatureRecipe:
        return FeatureRecipe(check=partial(_check_input, partition_size=self.partition_size, stages=len(self.blocks)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map (N, C, H/32, W/32) for the default four stages."""
        x = self.stem(x)
        for stage in self.blocks:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        if not isinstance(x, torch.fx.Proxy):
            self._check_stage_sizes((x.shape[-2], x.shape[-1]), len(self.blocks))
        return self.classifier(self.forward_features(x))


def _check_stage_sizes(size: tuple[int, int], num_stages: int, partition_size: int) -> None:
    sizes = _stage_sizes(size, num_stages)
    bad = [i for i, (h, w) in enumerate(sizes) if h % partition_size or w % partition_size]
    if bad:
        (h, w), stage = sizes[bad[0]], bad[0]
        raise ValueError(
            f"an input of {size[0]}x{size[1]} gives stage {stage} a {h}x{w} feature map, "
            f"not divisible by partition_size={partition_size} (stage sizes: {sizes}); "
            f"use a multiple of {partition_size * 2 ** (num_stages + 1)} pixels per side"
        )


def _check_input(x: torch.Tensor, partition_size: int, stages: int) -> None:
    _check_stage_sizes((x.shape[-2], x.shape[-1]), stages, partition_size)


# --------------------------------------------------------------------------------------------------
# Weights and builder
# --------------------------------------------------------------------------------------------------


class MaxVit_T_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        "https://download.pytorch.org/models/maxvit_t-bc5ab103.pth",
        recipe="https://github.com/pytorch/vision/tree/main/references/classification#maxvit",
        params=30919624,
        acc1=83.7,
        acc5=96.722,
        gflops=5.558,
        file_mb=118.769,
        crop=224,
        resize=224,
        interpolation=InterpolationMode.BICUBIC,
        min_size=(224, 224),
        docs="Trained by TorchVision with a recipe close to the paper's, reproducing its accuracy. Training used "
        "a BatchNorm2d momentum of 0.99 rather than the intended 0.01.",
    )
    DEFAULT = IMAGENET1K_V1


@register_model(weights=MaxVit_T_Weights)
def maxvit_t(*, weights: MaxVit_T_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> MaxVit:
    """MaxViT-T: stem 64, stages of 2, 2, 5, 2 blocks of widths 64-512, heads of 32, partitions of 7.

    Args:
        weights: a ``MaxVit_T_Weights`` member, its name, ``None`` for random initialisation, or the path of a
            local ``.pth``/``.safetensors`` checkpoint. Published weights set ``input_size`` to (224, 224).
        progress: show a download progress bar.
        **kwargs: ``MaxVit`` arguments (input_size (default 224 x 224), stochastic_depth_prob, norm_layer,
            activation_layer, squeeze_ratio, expansion_ratio, mlp_ratio, mlp_dropout, attention_dropout,
            num_classes; also stem_channels, partition_size, block_channels, block_layers, head_dim).
    """
    if isinstance(weights, WeightsEnum):
        trained = weights.meta["min_size"]
        if _as_size(kwargs.setdefault("input_size", trained)) != trained:
            raise ValueError(f"{weights!r} was trained at input_size={trained}, got input_size={kwargs['input_size']}")
    kwargs.setdefault("input_size", (224, 224))
    design = dict(
        stem_channels=64,
        block_channels=[64, 128, 256, 512],
        block_layers=[2, 2, 5, 2],
        head_dim=32,
        stochastic_depth_prob=0.2,
        partition_size=7,
    )
    return build_model(MaxVit, weights, progress, **{**design, **kwargs})
