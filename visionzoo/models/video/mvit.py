"""Multiscale Vision Transformers (MViT V1 and V2) for video.

Fan et al., "Multiscale Vision Transformers" (2021); Li et al., "MViTv2: Improved Multiscale Vision Transformers
for Classification and Detection" (2022). A transformer over spatio-temporal patch tokens (plus a class token)
whose stages trade resolution for width: attention pools its queries (strided depthwise convolutions) to shrink
the token grid between stages, and pools keys and values everywhere to keep attention cheap. V2 adds a residual
connection from the pooled queries, decomposed relative position biases (time, height, width) and projects the
width change after attention. Each model is built for one clip size (the published weights: 16x224x224).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.fx
from torch import Tensor, nn
from torch.nn import functional as F

from ...ops.misc import MLP, StochasticDepth
from .._api import WeightsEnum, register_model
from .._heads import head_width, linear_head, truncated_normal
from .._utils import build_model, set_or_check
from .._weights import kinetics_entry
from ._common import check_clip_batch

__all__ = ["MViT", "MViT_V1_B_Weights", "mvit_v1_b", "MViT_V2_S_Weights", "mvit_v2_s"]

Grid = tuple[int, int, int]  # (T, H, W) of the token grid, class token excluded
NormLayer = Callable[..., nn.Module]


@dataclass
class MSBlockConfig:
    """One multiscale block: heads, input and output widths, and the pooling kernels and strides (T, H, W) of
    its queries (``*_q``) and keys/values (``*_kv``); empty lists mean no pooling."""

    num_heads: int
    input_channels: int
    output_channels: int
    kernel_q: list[int]
    kernel_kv: list[int]
    stride_q: list[int]
    stride_kv: list[int]


def _pools(kernel: Sequence[int], stride: Sequence[int]) -> bool:
    return math.prod(kernel) > 1 or math.prod(stride) > 1


def _norm_tokens(norm: nn.Module, x: Tensor) -> Tensor:
    """Apply a norm over the channels of (..., tokens, C); BatchNorm1d wants the channels before the tokens."""
    return norm(x.transpose(-1, -2)).transpose(-1, -2) if isinstance(norm, nn.BatchNorm1d) else norm(x)


class Pool(nn.Module):
    """Pool the token grid (class token aside) of ``(B, heads, tokens, C)`` or ``(B, tokens, C)``: reshape to a
    (T, H, W) volume, apply ``pool``, flatten back, put the class token back, then ``norm`` (over C, class
    token included).

    Args:
        pool: a 3D pooling module (a depthwise ``Conv3d`` or a ``MaxPool3d``).
        norm: the norm after pooling, or None.
        activation: an activation after the norm, or None.
        norm_before_pool: normalise the volume before pooling instead (for a BatchNorm3d that inference folds).
    """

    def __init__(
        self,
        pool: nn.Module,
        norm: nn.Module | None,
        activation: nn.Module | None = None,
        norm_before_pool: bool = False,
    ) -> None:
        super().__init__()
        self.pool = pool
        layers = [m for m in (norm, activation) if m is not None]
        self.norm_act = nn.Sequential(*layers) if layers else None  # key "norm_act.0": the checkpoints' name
        self.norm_before_pool = norm_before_pool

    def forward(self, x: Tensor, thw: Grid) -> tuple[Tensor, Grid]:
        per_head = x.dim() == 4
        if not per_head:
            x = x.unsqueeze(1)
        batch, heads, _, channels = x.shape
        cls, tokens = x[:, :, :1], x[:, :, 1:]
        volume = tokens.transpose(2, 3).reshape(batch * heads, channels, *thw)
        if self.norm_before_pool and self.norm_act is not None:
            volume = self.norm_act(volume)
        volume = self.pool(volume)
        new_thw: Grid = tuple(volume.shape[2:])  # type: ignore[assignment]
        x = torch.cat((cls, volume.reshape(batch, heads, channels, -1).transpose(2, 3)), dim=2)
        if not self.norm_before_pool and self.norm_act is not None:
            x = self.norm_act(x)
        return (x if per_head else x.squeeze(1)), new_thw


def _resized_table(table: Tensor, length: int) -> Tensor:
    """A (positions, C) table linearly interpolated to ``length`` positions (when the grids differ from the ones
    it was built for)."""
    if table.shape[0] == length:
        return table
    return F.interpolate(table.t().unsqueeze(0), size=length, mode="linear").squeeze(0).t()


def _axis_offsets(table: Tensor, q_len: int, k_len: int) -> Tensor:
    """(q_len, k_len, C) embeddings of the query-key offsets along one axis; when the grids differ the coarser
    one's coordinates are scaled to the finer one's before the offset is taken."""
    q_ratio, k_ratio = max(k_len / q_len, 1.0), max(q_len / k_len, 1.0)
    offset = torch.arange(q_len)[:, None] * q_ratio - (torch.arange(k_len)[None, :] - k_len + 1) * k_ratio
    return _resized_table(table, 2 * max(q_len, k_len) - 1)[offset.long()]


def _relative_position_bias(q: Tensor, q_thw: Grid, k_thw: Grid, tables: Sequence[Tensor]) -> Tensor:
    """MViTv2's decomposed relative position bias, (B, heads, 1 + q_tokens, 1 + k_tokens) with zeros on the class
    token's row and column: each query's dot products with the time, height and width offset embeddings, summed
    over the three axes for every key."""
    batch, heads, _, dim = q.shape
    grid_q = q[:, :, 1:].reshape(batch, heads, *q_thw, dim)
    t_bias, h_bias, w_bias = (
        torch.einsum(f"bnthwc,{axis}kc->bnthwk", grid_q, _axis_offsets(table, q_len, k_len))
        for axis, table, q_len, k_len in zip("thw", tables, q_thw, k_thw)
    )
    bias = t_bias[..., :, None, None] + h_bias[..., None, :, None] + w_bias[..., None, None, :]
    return F.pad(bias.reshape(batch, heads, math.prod(q_thw), math.prod(k_thw)), (1, 0, 1, 0))


torch.fx.wrap("_relative_position_bias")


class MultiscaleAttention(nn.Module):
    """Multi-head pooling attention: queries, keys and values are pooled (separately) before attending.

    Args:
        input_size: the (T, H, W) token grid the block sees, which sizes the relative position tables.
        embed_dim, output_dim: input width and attention width.
        num_heads: attention heads.
        kernel_q, kernel_kv, stride_q, stride_kv: pooling of the queries and of the keys/values.
        residual_pool: add the pooled queries to the attention output (V2).
        residual_with_cls_embed: include the class token in that residual.
        rel_pos_embed: decomposed relative position biases (V2).
        dropout: dropout after the output projection.
        norm_layer: the norm after each pooling.
    """

    def __init__(
        self,
        input_size: list[int],
        embed_dim: int,
        output_dim: int,
        num_heads: int,
        kernel_q: list[int],
        kernel_kv: list[int],
        stride_q: list[int],
        stride_kv: list[int],
        residual_pool: bool,
        residual_with_cls_embed: bool,
        rel_pos_embed: bool,
        dropout: float = 0.0,
        norm_layer: NormLayer = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if num_heads < 1 or output_dim % num_heads:
            raise ValueError(f"output_dim {output_dim} must be divisible by a positive num_heads, got {num_heads}")
        self.embed_dim = embed_dim
        self.output_dim = output_dim
        self.num_heads = num_heads
        self.head_dim = output_dim // num_heads
        self.scaler = 1.0 / math.sqrt(self.head_dim)
        self.residual_pool = residual_pool
        self.residual_with_cls_embed = residual_with_cls_embed

        self.qkv = nn.Linear(embed_dim, 3 * output_dim)
        projection: list[nn.Module] = [nn.Linear(output_dim, output_dim)]
        if dropout > 0.0:
            projection.append(nn.Dropout(dropout, inplace=True))
        self.project = nn.Sequential(*projection)

        def pooling(kernel: list[int], stride: list[int]) -> Pool:
            conv = nn.Conv3d(
                self.head_dim,
                self.head_dim,
                kernel,  # type: ignore[arg-type]
                stride=stride,  # type: ignore[arg-type]
                padding=[k // 2 for k in kernel],  # type: ignore[arg-type]
                groups=self.head_dim,
                bias=False,
            )
            return Pool(conv, norm_layer(self.head_dim))

        self.pool_q = pooling(kernel_q, stride_q) if _pools(kernel_q, stride_q) else None
        pool_kv = _pools(kernel_kv, stride_kv)
        self.pool_k = pooling(kernel_kv, stride_kv) if pool_kv else None
        self.pool_v = pooling(kernel_kv, stride_kv) if pool_kv else None

        self.rel_pos_h: nn.Parameter | None = None
        self.rel_pos_w: nn.Parameter | None = None
        self.rel_pos_t: nn.Parameter | None = None
        if rel_pos_embed:
            # Tables long enough for every offset between the pooled query and key grids (spatial ones square).
            size = max(input_size[1:])
            q_size = size // stride_q[1] if stride_q else size
            kv_size = size // stride_kv[1] if stride_kv else size
            spatial = 2 * max(q_size, kv_size) - 1
            for axis, length in (("h", spatial), ("w", spatial), ("t", 2 * input_size[0] - 1)):
                table = nn.Parameter(torch.zeros(length, self.head_dim))
                nn.init.trunc_normal_(table, std=0.02)
                setattr(self, f"rel_pos_{axis}", table)

    def forward(self, x: Tensor, thw: Grid) -> tuple[Tensor, Grid]:
        """(B, tokens, embed_dim) on the ``thw`` grid -> (B, pooled tokens, output_dim) and the pooled grid."""
        batch, tokens, _ = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, tokens, head_dim)
        k_thw = thw
        if self.pool_k is not None:
            k, k_thw = self.pool_k(k, thw)
        if self.pool_v is not None:
            v, _ = self.pool_v(v, thw)
        if self.pool_q is not None:
            q, thw = self.pool_q(q, thw)

        bias = None
        if self.rel_pos_h is not None and self.rel_pos_w is not None and self.rel_pos_t is not None:
            bias = _relative_position_bias(q, thw, k_thw, (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scaler)
        if self.residual_pool:
            if self.residual_with_cls_embed:
                out = out + q
            else:
                out = torch.cat((out[:, :, :1], out[:, :, 1:] + q[:, :, 1:]), dim=2)
        out = out.transpose(1, 2).reshape(batch, -1, self.output_dim)
        return self.project(out), thw


class MultiscaleBlock(nn.Module):
    """Pre-norm transformer block around :class:`MultiscaleAttention`: when the queries are pooled, the skip
    connection is max-pooled alike; when the width changes, a linear projection widens the skip (of the normed
    input after attention in V2, ``proj_after_attn``; of the normed attention output before the MLP in V1).

    Args:
        input_size: the (T, H, W) token grid the block sees.
        cnf: the block's :class:`MSBlockConfig`.
        residual_pool, residual_with_cls_embed, rel_pos_embed: see :class:`MultiscaleAttention`.
        proj_after_attn: attention already works at the output width (V2).
        dropout: dropout of the attention projection and the MLP.
        stochastic_depth_prob: probability of dropping each residual branch while training.
        norm_layer: norm constructor.
    """

    def __init__(
        self,
        input_size: list[int],
        cnf: MSBlockConfig,
        residual_pool: bool,
        residual_with_cls_embed: bool,
        rel_pos_embed: bool,
        proj_after_attn: bool,
        dropout: float = 0.0,
        stochastic_depth_prob: float = 0.0,
        norm_layer: NormLayer = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.proj_after_attn = proj_after_attn
        self.pool_skip: nn.Module | None = None
        if math.prod(cnf.stride_q) > 1:
            kernel = [s + 1 if s > 1 else s for s in cnf.stride_q]
            skip = nn.MaxPool3d(kernel, stride=cnf.stride_q, padding=[k // 2 for k in kernel])  # type: ignore[arg-type]
            self.pool_skip = Pool(skip, None)
        attn_dim = cnf.output_channels if proj_after_attn else cnf.input_channels
        self.norm1 = norm_layer(cnf.input_channels)
        self.norm2 = norm_layer(attn_dim)
        self.attn = MultiscaleAttention(
            input_size,
            cnf.input_channels,
            attn_dim,
            cnf.num_heads,
            kernel_q=cnf.kernel_q,
            kernel_kv=cnf.kernel_kv,
            stride_q=cnf.stride_q,
            stride_kv=cnf.stride_kv,
            residual_pool=residual_pool,
            residual_with_cls_embed=residual_with_cls_embed,
            rel_pos_embed=rel_pos_embed,
            dropout=dropout,
            norm_layer=norm_layer,
        )
        self.mlp = MLP(attn_dim, [4 * attn_dim, cnf.output_channels], activation_layer=nn.GELU, dropout=dropout)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.project = None
        if cnf.input_channels != cnf.output_channels:
            self.project = nn.Linear(cnf.input_channels, cnf.output_channels)

    def forward(self, x: Tensor, thw: Grid) -> tuple[Tensor, Grid]:
        normed = _norm_tokens(self.norm1, x)
        attended, new_thw = self.attn(normed, thw)
        if self.project is not None and self.proj_after_attn:
            x = self.project(normed)
        if self.pool_skip is not None:
            x, _ = self.pool_skip(x, thw)
        x = x + self.stochastic_depth(attended)
        normed = _norm_tokens(self.norm2, x)
        if self.project is not None and not self.proj_after_attn:
            x = self.project(normed)
        return x + self.stochastic_depth(self.mlp(normed)), new_thw


class PositionalEncoding(nn.Module):
    """Prepend the class token; without relative position biases (V1), also add learned absolute embeddings:
    one per (H, W) position plus one per frame, and one for the class token."""

    def __init__(self, embed_size: int, spatial_size: tuple[int, int], temporal_size: int, rel_pos_embed: bool) -> None:
        super().__init__()
        self.spatial_size = spatial_size
        self.temporal_size = temporal_size
        self.class_token = nn.Parameter(torch.zeros(embed_size))
        self.spatial_pos: nn.Parameter | None = None
        self.temporal_pos: nn.Parameter | None = None
        self.class_pos: nn.Parameter | None = None
        if not rel_pos_embed:
            self.spatial_pos = nn.Parameter(torch.zeros(spatial_size[0] * spatial_size[1], embed_size))
            self.temporal_pos = nn.Parameter(torch.zeros(temporal_size, embed_size))
            self.class_pos = nn.Parameter(torch.zeros(embed_size))

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat((self.class_token.expand(x.shape[0], 1, -1), x), dim=1)
        if self.spatial_pos is not None and self.temporal_pos is not None and self.class_pos is not None:
            grid = (self.temporal_pos[:, None] + self.spatial_pos[None]).flatten(0, 1)  # frame-major, as the tokens
            x = x + torch.cat((self.class_pos[None], grid))
        return x


class MViT(nn.Module):
    """Patchify the clip with a strided 3D convolution, add the class token (and absolute positions), run the
    multiscale blocks, normalise, and classify the class token.

    Args:
        spatial_size: the (H, W) of the input frames the model is built for.
        temporal_size: the number of frames it is built for.
        block_setting: one :class:`MSBlockConfig` per block.
        residual_pool, residual_with_cls_embed, rel_pos_embed, proj_after_attn: the V2 refinements (see
            :class:`MultiscaleBlock`).
        dropout: dropout before the head.
        attention_dropout: dropout inside the blocks.
        stochastic_depth_prob: drop probability of the last block; block ``i`` of ``n`` uses ``p * i / (n - 1)``.
        num_classes: size of the head.
        block: block constructor (default :class:`MultiscaleBlock`).
        norm_layer: norm constructor (default ``nn.LayerNorm(eps=1e-6)``).
        patch_embed_kernel, patch_embed_stride, patch_embed_padding: the patchifying convolution.

    Takes ``(N, 3, T, H, W)`` clips (or ``(N, 3, H, W)`` images, as one-frame clips) whose patch grid is the one
    the model is built for.

    Raises:
        ValueError: an empty ``block_setting`` or a non-positive ``num_classes``.
    """

    def __init__(
        self,
        spatial_size: tuple[int, int],
        temporal_size: int,
        block_setting: Sequence[MSBlockConfig],
        residual_pool: bool,
        residual_with_cls_embed: bool,
        rel_pos_embed: bool,
        proj_after_attn: bool,
        dropout: float = 0.5,
        attention_dropout: float = 0.0,
        stochastic_depth_prob: float = 0.0,
        num_classes: int = 400,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: NormLayer | None = None,
        patch_embed_kernel: tuple[int, int, int] = (3, 7, 7),
        patch_embed_stride: tuple[int, int, int] = (2, 4, 4),
        patch_embed_padding: tuple[int, int, int] = (1, 3, 3),
    ) -> None:
        super().__init__()
        if not block_setting:
            raise ValueError("block_setting must describe at least one block")
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        block = block or MultiscaleBlock
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        self.conv_proj = nn.Conv3d(
            3,
            block_setting[0].input_channels,
            kernel_size=patch_embed_kernel,
            stride=patch_embed_stride,
            padding=patch_embed_padding,
        )
        grid = [size // stride for size, stride in zip((temporal_size, *spatial_size), patch_embed_stride)]
        self.pos_encoding = PositionalEncoding(
            block_setting[0].input_channels, (grid[1], grid[2]), grid[0], rel_pos_embed
        )
        self.blocks = nn.ModuleList()
        last = max(len(block_setting) - 1, 1)
        for index, cnf in enumerate(block_setting):
            self.blocks.append(
                block(
                    input_size=grid,
                    cnf=cnf,
                    residual_pool=residual_pool,
                    residual_with_cls_embed=residual_with_cls_embed,
                    rel_pos_embed=rel_pos_embed,
                    proj_after_attn=proj_after_attn,
                    dropout=attention_dropout,
                    stochastic_depth_prob=stochastic_depth_prob * index / last,
                    norm_layer=norm_layer,
                )
            )
            if cnf.stride_q:
                grid = [size // stride for size, stride in zip(grid, cnf.stride_q)]
        self.norm = norm_layer(block_setting[-1].output_channels)
        self.head = nn.Sequential(
            nn.Dropout(dropout, inplace=True), nn.Linear(block_setting[-1].output_channels, num_classes)
        )
        self._initialise()

    def _reset_classifier(self, num_classes: int) -> None:
        self.head[1] = linear_head(head_width(self.head[1]), num_classes, init=truncated_normal(0.02))

    def _initialise(self) -> None:
        """Truncated normal (std 0.02) linear weights and position embeddings, zero biases, identity LayerNorms."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                if module.weight is not None:
                    nn.init.ones_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, PositionalEncoding):
                for embedding in module.parameters():
                    nn.init.trunc_normal_(embedding, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        check_clip_batch(x, type(self).__name__, allow_images=True)
        if x.dim() == 4:
            x = x.unsqueeze(2)  # an image is a one-frame clip
        thw: Grid = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        patches = self.conv_proj(x)
        if isinstance(patches, Tensor) and tuple(patches.shape[2:]) != thw:
            stride = self.conv_proj.stride
            expected = "x".join(str(n * s) for n, s in zip(thw, stride))
            raise ValueError(
                f"MViT is built for clips of {expected} (T x H x W) and gives {tuple(patches.shape[2:])} patches for "
                f"the input of shape {tuple(x.shape)} instead of {thw}; resize the clip, or build the model with "
                "temporal_size= and spatial_size= for this size (random weights only)"
            )
        x = self.pos_encoding(patches.flatten(2).transpose(1, 2))
        for block in self.blocks:
            x, thw = block(x, thw)
        return self.head(self.norm(x)[:, 0])


# --------------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------------

# Both models: 16 blocks in four stages (1, 2, 11 and 2 blocks; 96, 192, 384 and 768 wide). The first block of
# each later stage pools its queries by 2 in space; keys and values are pooled to the last stage's grid (7x7 at 224).
_STAGE_OF_BLOCK = [0, 1, 1, *[2] * 11, 3, 3]
_WIDTHS = [96, 192, 384, 768]
_HEADS = [1, 2, 4, 8]
_KV_SPATIAL_STRIDE = [8, 4, 4, *[2] * 11, 1, 1]


def _block_settings(v2: bool) -> list[MSBlockConfig]:
    """V1 widens in the last block of a stage (before the pooling block); V2 in the first block of the next one,
    and pools every block's queries with a 3x3x3 kernel (stride 1 outside the stage transitions)."""
    settings = []
    for index, stage in enumerate(_STAGE_OF_BLOCK):
        pools = index > 0 and stage != _STAGE_OF_BLOCK[index - 1]
        if v2:
            width_in, width_out = _WIDTHS[_STAGE_OF_BLOCK[max(index - 1, 0)]], _WIDTHS[stage]
            kernel_q, stride_q = [3, 3, 3], [1, 2, 2] if pools else [1, 1, 1]
        else:
            following = _STAGE_OF_BLOCK[min(index + 1, len(_STAGE_OF_BLOCK) - 1)]
            width_in, width_out = _WIDTHS[stage], _WIDTHS[following]
            kernel_q, stride_q = ([3, 3, 3], [1, 2, 2]) if pools else ([], [])
        kv = _KV_SPATIAL_STRIDE[index]
        settings.append(MSBlockConfig(_HEADS[stage], width_in, width_out, kernel_q, [3, 3, 3], stride_q, [1, kv, kv]))
    return settings


_PORTED = (
    "The weights were ported from the paper. The accuracies are estimated on video-level with parameters "
    "`frame_rate=7.5`, `clips_per_video=5`, and `clip_len=16`"
)
_PRESET = {"crop": (224, 224), "resize": (256,), "mean": (0.45, 0.45, 0.45), "std": (0.225, 0.225, 0.225)}


class MViT_V1_B_Weights(WeightsEnum):
    KINETICS400_V1 = kinetics_entry(
        "https://download.pytorch.org/models/mvit_v1_b-dbeb1030.pth",
        params=36610672,
        acc1=78.477,
        acc5=93.582,
        gflops=70.599,
        file_mb=139.764,
        recipe="https://github.com/facebookresearch/pytorchvideo/blob/main/docs/source/model_zoo.md",
        docs=_PORTED,
        min_size=(224, 224),
        min_temporal_size=16,
        **_PRESET,  # type: ignore[arg-type]
    )
    DEFAULT = KINETICS400_V1


class MViT_V2_S_Weights(WeightsEnum):
    KINETICS400_V1 = kinetics_entry(
        "https://download.pytorch.org/models/mvit_v2_s-ae3be167.pth",
        params=34537744,
        acc1=80.757,
        acc5=94.665,
        gflops=64.224,
        file_mb=131.884,
        recipe="https://github.com/facebookresearch/SlowFast/blob/main/MODEL_ZOO.md",
        docs=_PORTED,
        min_size=(224, 224),
        min_temporal_size=16,
        **_PRESET,  # type: ignore[arg-type]
    )
    DEFAULT = KINETICS400_V1


def _mvit(v2: bool, weights: WeightsEnum | Path | None, progress: bool, **kwargs: Any) -> MViT:
    if isinstance(weights, WeightsEnum):
        # Absolute position tables (V1) and relative ones (V2) are sized for the clip the weights were trained on.
        set_or_check(kwargs, "spatial_size", tuple(weights.meta["min_size"]))
        set_or_check(kwargs, "temporal_size", weights.meta["min_temporal_size"])
    kwargs.setdefault("spatial_size", (224, 224))
    kwargs.setdefault("temporal_size", 16)
    kwargs.setdefault("stochastic_depth_prob", 0.2)
    for name, value in (
        ("residual_pool", v2),
        ("residual_with_cls_embed", False),
        ("rel_pos_embed", v2),
        ("proj_after_attn", v2),
    ):
        kwargs.setdefault(name, value)
    return build_model(MViT, weights, progress, block_setting=_block_settings(v2), **kwargs)


@register_model(task="video", weights=MViT_V1_B_Weights)
def mvit_v1_b(*, weights: MViT_V1_B_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> MViT:
    """MViT V1 base, for 16x224x224 clips."""
    return _mvit(False, weights, progress, **kwargs)


@register_model(task="video", weights=MViT_V2_S_Weights)
def mvit_v2_s(*, weights: MViT_V2_S_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any) -> MViT:
    """MViT V2 small, for 16x224x224 clips."""
    return _mvit(True, weights, progress, **kwargs)
