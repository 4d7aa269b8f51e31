"""Video Swin Transformer.

Liu et al., "Video Swin Transformer" (2022). The Swin Transformer with 3D windows: self-attention runs inside
non-overlapping (T, H, W) windows of patch tokens, shifted by half a window every other block; patch merging
halves only the spatial resolution between stages. The transformer blocks and patch merging are the image
model's (:mod:`visionzoo.models._swin_blocks`); only the windowed attention and the patch embedding are 3D.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.fx
from torch import Tensor, nn
from torch.nn import functional as F

from .._api import WeightsEnum, register_model
from .._heads import head_width, linear_head, truncated_normal
from .._swin_blocks import _MASK_VALUE, NormLayer, PatchMerging, SwinTransformerBlock, _check_window_attention, _ints
from .._utils import build_model
from .._weights import kinetics_entry
from ._common import check_clip_batch

__all__ = [
    "SwinTransformer3d",
    "Swin3D_T_Weights",
    "Swin3D_S_Weights",
    "Swin3D_B_Weights",
    "swin3d_t",
    "swin3d_s",
    "swin3d_b",
]

Size3d = tuple[int, int, int]


def _triple(value: int | Sequence[int], name: str) -> Size3d:
    return _ints(value, name, 3, " (T, H, W)")  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# 3D windows
# --------------------------------------------------------------------------------------------------


def _to_windows(x: Tensor, window: Size3d) -> Tensor:
    """(B, T, H, W, C), sizes multiples of the window -> (B * windows, tokens, C), both in (t, h, w) order."""
    b, t, h, w, c = x.shape
    x = x.view(b, t // window[0], window[0], h // window[1], window[1], w // window[2], window[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, window[0] * window[1] * window[2], c)


def _from_windows(x: Tensor, window: Size3d, batch: int, size: Size3d) -> Tensor:
    """Inverse of :func:`_to_windows`."""
    t, h, w = size
    x = x.view(batch, t // window[0], h // window[1], w // window[2], *window, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(batch, t, h, w, -1)


def _shift_mask(size: Size3d, window: Size3d, shift: Size3d, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Additive mask (windows, 1, tokens, tokens) keeping the attention of a cyclically shifted volume local.

    After the roll, the last window along each axis mixes tokens from opposite borders. Each shifted axis splits
    into three bands (before the last window, the last window minus the shift, the shift); tokens may attend to
    each other only when they share the band on every axis.
    """

    def bands(length: int, win: int, step: int) -> Tensor:
        position = torch.arange(length, device=device)
        if step == 0:
            return torch.zeros_like(position)
        return (position >= length - win).long() + (position >= length - step).long()

    t_band, h_band, w_band = (bands(n, win, s) for n, win, s in zip(size, window, shift))
    region = t_band[:, None, None] * 9 + h_band[None, :, None] * 3 + w_band[None, None, :]
    region = _to_windows(region[None, ..., None], window)[..., 0]  # (windows, tokens)
    different = region[:, :, None] != region[:, None, :]
    mask = torch.zeros(different.shape, dtype=dtype, device=device).masked_fill_(different, _MASK_VALUE)
    return mask.unsqueeze(1)


def _relative_position_index_3d(window: Size3d) -> Tensor:
    """(tokens, tokens): for every (query, key) pair of a window, the flat index of their (dt, dh, dw) offset in
    a (2*Wt - 1, 2*Wh - 1, 2*Ww - 1) table."""
    coords = torch.stack(torch.meshgrid(*(torch.arange(n) for n in window), indexing="ij")).flatten(1)  # (3, tokens)
    offsets = coords[:, :, None] - coords[:, None, :] + torch.tensor(window)[:, None, None] - 1
    spans = [2 * n - 1 for n in window]
    return offsets[0] * spans[1] * spans[2] + offsets[1] * spans[2] + offsets[2]


def _fit_window(size: Size3d, window: Sequence[int], shift: Sequence[int]) -> tuple[Size3d, Size3d]:
    """Along an axis no longer than the window, the window shrinks to the input and does not shift."""
    fitted = [(n, 0) if n <= win else (win, s) for n, win, s in zip(size, window, shift)]
    return tuple(f[0] for f in fitted), tuple(f[1] for f in fitted)  # type: ignore[return-value]


def _window_attention_3d(
    x: Tensor,
    qkv_weight: Tensor,
    qkv_bias: Tensor | None,
    proj_weight: Tensor,
    proj_bias: Tensor | None,
    position_bias: Tensor,
    window: Size3d,
    shift: Size3d,
    num_heads: int,
    attention_dropout: float,
    dropout: float,
    training: bool,
) -> Tensor:
    """Multi-head self-attention inside (shifted) 3D windows of a (B, T, H, W, C) volume; ``position_bias`` is
    (heads, tokens, tokens). See :class:`ShiftedWindowAttention3d`."""
    batch, t, h, w, channels = x.shape
    # Pad the end of each axis to whole windows; the padded (zero) tokens take part in attention like any other.
    x = F.pad(x, (0, 0, 0, -w % window[2], 0, -h % window[1], 0, -t % window[0]))
    size: Size3d = tuple(x.shape[1:4])  # type: ignore[assignment]
    shifted = any(shift)
    if shifted:
        x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))

    windows = _to_windows(x, window)
    tokens = windows.shape[1]
    qkv = F.linear(windows, qkv_weight, qkv_bias).view(-1, tokens, 3, num_heads, channels // num_heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B * windows, heads, tokens, head_dim)

    mask = position_bias.unsqueeze(0)
    if shifted:
        mask = mask + _shift_mask(size, window, shift, mask.dtype, mask.device)  # (windows, heads, tokens, tokens)
    # A 4-D mask (a free view unless shifted) lets the fused kernels run.
    mask = mask.expand(batch, windows.shape[0] // batch, *mask.shape[1:]).reshape(-1, *mask.shape[1:])
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=attention_dropout if training else 0.0)
    out = out.transpose(1, 2).reshape(-1, tokens, channels)
    out = F.dropout(F.linear(out, proj_weight, proj_bias), p=dropout, training=training)

    out = _from_windows(out, window, batch, size)
    if shifted:
        out = torch.roll(out, shifts=shift, dims=(1, 2, 3))
    return out[:, :t, :h, :w].contiguous()


# Shapes decide the window, the padding and the shift, which symbolic tracing cannot see: record one call each.
torch.fx.wrap("_window_attention_3d")
torch.fx.wrap("_fit_window")


# --------------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------------


class ShiftedWindowAttention3d(nn.Module):
    """Window multi-head self-attention over (T, H, W) windows with a learned relative position bias.

    A non-zero ``shift_size`` rolls the volume first (and masks pairs the roll brought together from opposite
    borders). Along an axis no longer than the window, the window shrinks to the input and is not shifted; the
    bias of such a smaller window is the top-left block of the full window's bias (the published weights'
    convention, kept for parity). Volumes not divisible by the window are zero-padded at the end of each axis.

    Args:
        dim: channels of the (B, T, H, W, C) input; must be divisible by ``num_heads``.
        window_size: (T, H, W) of a window.
        shift_size: (T, H, W) cyclic shift, each in ``[0, window)``.
        num_heads: attention heads.
        qkv_bias, proj_bias: whether the input and output projections have biases.
        attention_dropout, dropout: dropout of the attention weights and of the output (training only).

    Raises:
        ValueError: sizes that are not 3 ints, a shift outside the window, or ``dim`` not divisible by
            ``num_heads``.
    """

    def __init__(
        self,
        dim: int,
        window_size: Sequence[int],
        shift_size: Sequence[int],
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attention_dropout: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        window, shift = _triple(window_size, "window_size"), _triple(shift_size, "shift_size")
        _check_window_attention(window, shift, dim, num_heads, attention_dropout, dropout)
        self.window_size = list(window)
        self.shift_size = list(shift)
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        table = torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1), num_heads)
        self.relative_position_bias_table = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))
        # Persistent and (tokens, tokens), as in the checkpoints.
        self.register_buffer("relative_position_index", _relative_position_index_3d(window))

    def get_relative_position_bias(self, window_size: Sequence[int]) -> Tensor:
        """The (heads, tokens, tokens) bias of a window of ``window_size`` (at most the module's window)."""
        tokens = window_size[0] * window_size[1] * window_size[2]
        index = self.relative_position_index[:tokens, :tokens]
        return self.relative_position_bias_table[index.flatten()].view(tokens, tokens, -1).permute(2, 0, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, H, W, C) -> (B, T, H, W, C)."""
        window, shift = _fit_window(tuple(x.shape[1:4]), self.window_size, self.shift_size)
        return _window_attention_3d(
            x,
            self.qkv.weight,
            self.qkv.bias,
            self.proj.weight,
            self.proj.bias,
            self.get_relative_position_bias(window),
            window,
            shift,
            self.num_heads,
            self.attention_dropout,
            self.dropout,
            self.training,
        )


class PatchEmbed3d(nn.Module):
    """Split the clip into non-overlapping (T, H, W) patches (zero-padding the end of each axis to whole patches)
    and embed each linearly; (B, C, T, H, W) -> channels-last (B, T', H', W', embed_dim), then the norm.

    Args:
        patch_size: (T, H, W) of a patch.
        in_channels: input channels.
        embed_dim: embedding width.
        norm_layer: norm after the embedding, or None.
    """

    def __init__(
        self,
        patch_size: Sequence[int],
        in_channels: int = 3,
        embed_dim: int = 96,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        self.tuple_patch_size = _triple(patch_size, "patch_size")
        self.proj = nn.Conv3d(in_channels, embed_dim, kernel_size=self.tuple_patch_size, stride=self.tuple_patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        pt, ph, pw = self.tuple_patch_size
        x = F.pad(x, (0, -x.shape[-1] % pw, 0, -x.shape[-2] % ph, 0, -x.shape[-3] % pt))
        return self.norm(self.proj(x).permute(0, 2, 3, 4, 1))


# --------------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------------


class SwinTransformer3d(nn.Module):
    """Patch embedding, stages of Swin blocks with 3D windows (alternately plain and shifted) separated by
    spatial patch merging, a final norm, global average pooling over (T, H, W) and a linear head.

    Takes ``(N, 3, T, H, W)`` clips of any size (padded to whole patches and windows).

    Args:
        patch_size: (T, H, W) of the patches.
        embed_dim: width of the first stage; each later stage doubles it.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: attention window (T, H, W) in tokens; shifted blocks shift by half of it.
        mlp_ratio: MLP hidden width relative to the stage width.
        dropout: dropout after the embedding, in the MLPs and on attention outputs.
        attention_dropout: dropout of the attention weights.
        stochastic_depth_prob: drop probability of the last block; block ``i`` of ``n`` uses ``p * i / (n - 1)``.
        num_classes: size of the head.
        norm_layer: norm constructor (default ``nn.LayerNorm(eps=1e-5)``).
        block: block constructor (default: the Swin block with :class:`ShiftedWindowAttention3d`).
        downsample_layer: called as ``downsample_layer(dim, norm_layer)`` between stages (default
            :class:`PatchMerging`).
        patch_embed: patch embedding constructor (default :class:`PatchEmbed3d`).

    Raises:
        ValueError: inconsistent or non-positive sizes.
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
        num_classes: int = 400,
        norm_layer: NormLayer | None = None,
        block: Callable[..., nn.Module] | None = None,
        downsample_layer: Callable[..., nn.Module] = PatchMerging,
        patch_embed: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        depths, num_heads, window = list(depths), list(num_heads), _triple(window_size, "window_size")
        if not depths or len(depths) != len(num_heads) or min(depths) < 1 or min(num_heads) < 1:
            raise ValueError(
                f"depths and num_heads must list the same positive number of stages, got {depths} and {num_heads}"
            )
        if embed_dim < 1 or num_classes < 1:
            raise ValueError(f"embed_dim and num_classes must be positive, got {embed_dim} and {num_classes}")
        self.num_classes = num_classes
        block = block or partial(SwinTransformerBlock, attn_layer=ShiftedWindowAttention3d)
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-5)
        patch_embed = patch_embed or PatchEmbed3d

        self.patch_embed = patch_embed(patch_size=patch_size, embed_dim=embed_dim, norm_layer=norm_layer)
        self.pos_drop = nn.Dropout(p=dropout)
        layers: list[nn.Module] = []
        total, index = sum(depths), 0
        for stage, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2**stage
            blocks = []
            for position in range(depth):
                blocks.append(
                    block(
                        dim,
                        heads,
                        window_size=list(window),
                        shift_size=[0 if position % 2 == 0 else w // 2 for w in window],
                        mlp_ratio=mlp_ratio,
                        dropout=dropout,
                        attention_dropout=attention_dropout,
                        stochastic_depth_prob=stochastic_depth_prob * index / max(total - 1, 1),
                        norm_layer=norm_layer,
                        attn_layer=ShiftedWindowAttention3d,
                    )
                )
                index += 1
            layers.append(nn.Sequential(*blocks))
            if stage < len(depths) - 1:
                layers.append(downsample_layer(dim, norm_layer))
        self.features = nn.Sequential(*layers)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = norm_layer(self.num_features)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(self.num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _reset_classifier(self, num_classes: int) -> None:
        self.head = linear_head(head_width(self.head), num_classes, init=truncated_normal(0.02))

    def forward(self, x: Tensor) -> Tensor:
        check_clip_batch(x, type(self).__name__)
        x = self.features(self.pos_drop(self.patch_embed(x)))  # channels-last (B, T', H', W', C)
        x = self.norm(x).permute(0, 4, 1, 2, 3)
        return self.head(self.avgpool(x).flatten(1))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


def _entry(url: str, **facts: Any) -> Any:
    # Every Video Swin entry: ported weights, 224x224 crops of frames resized to 256, ImageNet statistics.
    return kinetics_entry(
        f"https://download.pytorch.org/models/{url}",
        recipe="https://github.com/SwinTransformer/Video-Swin-Transformer#kinetics-400",
        docs=(
            "The weights were ported from the paper. The accuracies are estimated on video-level with parameters "
            "`frame_rate=15`, `clips_per_video=12`, and `clip_len=32`"
        ),
        crop=(224, 224),
        resize=(256,),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        min_temporal_size=1,
        **facts,
    )


class Swin3D_T_Weights(WeightsEnum):
    KINETICS400_V1 = _entry(
        "swin3d_t-7615ae03.pth", params=28158070, acc1=77.715, acc5=93.519, gflops=43.882, file_mb=121.543
    )
    DEFAULT = KINETICS400_V1


class Swin3D_S_Weights(WeightsEnum):
    KINETICS400_V1 = _entry(
        "swin3d_s-da41c237.pth", params=49816678, acc1=79.521, acc5=94.158, gflops=82.841, file_mb=218.288
    )
    DEFAULT = KINETICS400_V1


class Swin3D_B_Weights(WeightsEnum):
    KINETICS400_V1 = _entry(
        "swin3d_b_1k-24f7c7c6.pth", params=88048984, acc1=79.427, acc5=94.386, gflops=140.667, file_mb=364.134
    )
    # Initialised from ImageNet-22K weights before training on Kinetics-400.
    KINETICS400_IMAGENET22K_V1 = _entry(
        "swin3d_b_22k-7c6ae6fa.pth", params=88048984, acc1=81.643, acc5=95.574, gflops=140.667, file_mb=364.134
    )
    DEFAULT = KINETICS400_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


def _swin3d(
    embed_dim: int,
    depths: list[int],
    num_heads: list[int],
    weights: WeightsEnum | Path | None,
    progress: bool,
    **kwargs: Any,
) -> SwinTransformer3d:
    kwargs.setdefault("stochastic_depth_prob", 0.1)
    return build_model(
        SwinTransformer3d, weights, progress, patch_size=[2, 4, 4], embed_dim=embed_dim, depths=depths,
        num_heads=num_heads, window_size=[8, 7, 7], **kwargs,
    )  # fmt: skip


@register_model(task="video", weights=Swin3D_T_Weights)
def swin3d_t(
    *, weights: Swin3D_T_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer3d:
    """Video Swin-T."""
    return _swin3d(96, [2, 2, 6, 2], [3, 6, 12, 24], weights, progress, **kwargs)


@register_model(task="video", weights=Swin3D_S_Weights)
def swin3d_s(
    *, weights: Swin3D_S_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer3d:
    """Video Swin-S."""
    return _swin3d(96, [2, 2, 18, 2], [3, 6, 12, 24], weights, progress, **kwargs)


@register_model(task="video", weights=Swin3D_B_Weights)
def swin3d_b(
    *, weights: Swin3D_B_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer3d:
    """Video Swin-B."""
    return _swin3d(128, [2, 2, 18, 2], [4, 8, 16, 32], weights, progress, **kwargs)
