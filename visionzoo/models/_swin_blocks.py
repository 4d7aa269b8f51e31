"""Swin Transformer building blocks: (shifted) window attention, V1 and V2, patch merging, the blocks.

Split from :mod:`visionzoo.models.swin_transformer` (which re-exports the public classes) to keep both files
short. Every layer works on channels-last maps (..., H, W, C); attention goes through
``torch.nn.functional.scaled_dot_product_attention`` with the position bias and the shift mask as its additive
mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.fx
from torch import Tensor, nn
from torch.nn import functional as F

from ..ops.misc import MLP, StochasticDepth

__all__ = [
    "PatchMerging",
    "PatchMergingV2",
    "ShiftedWindowAttention",
    "ShiftedWindowAttentionV2",
    "SwinTransformerBlock",
    "SwinTransformerBlockV2",
]

NormLayer = Callable[..., nn.Module]

# The original implementation's stand-in for minus infinity between tokens of different regions of a shifted
# window. Being finite, it leaves masked pairs a tiny weight under V2's large cosine logits; kept for parity.
_MASK_VALUE = -100.0


def _ints(value: int | Sequence[int], name: str, count: int, labels: str = "") -> tuple[int, ...]:
    """``value`` as ``count`` ints (one int repeated), or a ValueError naming ``name`` (``labels``: e.g. " (T, H, W)")."""
    sizes = (value,) * count if isinstance(value, int) else tuple(value)
    if len(sizes) != count or not all(isinstance(v, int) and not isinstance(v, bool) for v in sizes):
        raise ValueError(f"{name} must be an int or a sequence of {count} ints{labels}, got {value!r}")
    return sizes


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    return _ints(value, name, 2)  # type: ignore[return-value]


def _check_window_attention(
    window: Sequence[int], shift: Sequence[int], dim: int, num_heads: int, attention_dropout: float, dropout: float
) -> None:
    """The checks every shifted-window attention (2-D or 3-D) makes of its arguments."""
    if min(window) < 1 or not all(0 <= s < w for s, w in zip(shift, window)):
        raise ValueError(f"need window_size >= 1 and 0 <= shift_size < window_size, got {window} and {shift}")
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"dim must be divisible by a positive num_heads, got dim={dim}, num_heads={num_heads}")
    for name, p in (("attention_dropout", attention_dropout), ("dropout", dropout)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p!r}")


# --------------------------------------------------------------------------------------------------
# Windows, masks and position indices
# --------------------------------------------------------------------------------------------------


def _to_windows(x: Tensor, window: tuple[int, int]) -> Tensor:
    """(B, H, W, C) with H, W multiples of the window -> (B, windows, tokens, C), windows and tokens row-major."""
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window[0], window[0], width // window[1], window[1], channels)
    return x.transpose(2, 3).reshape(batch, -1, window[0] * window[1], channels)


def _from_windows(x: Tensor, window: tuple[int, int], height: int, width: int) -> Tensor:
    """Inverse of :func:`_to_windows`."""
    batch, channels = x.shape[0], x.shape[-1]
    x = x.view(batch, height // window[0], width // window[1], window[0], window[1], channels)
    return x.transpose(2, 3).reshape(batch, height, width, channels)


def _shift_mask(
    height: int, width: int, window: tuple[int, int], shift: tuple[int, int], dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Additive mask (windows, tokens, tokens) that keeps the attention of a cyclically shifted map local.

    After the roll, the last window of each row or column mixes pixels from opposite borders of the image.
    Each axis splits into three bands (before the last window, the last window minus the shift, the shift);
    two tokens may attend to each other only when they lie in the same band on both axes.
    """

    def bands(size: int, win: int, step: int) -> Tensor:
        position = torch.arange(size, device=device)
        if step == 0:
            return torch.zeros_like(position)
        return (position >= size - win).long() + (position >= size - step).long()

    region = bands(height, window[0], shift[0])[:, None] * 3 + bands(width, window[1], shift[1])[None, :]
    region = _to_windows(region[None, :, :, None], window)[0, :, :, 0]  # (windows, tokens)
    different = region[:, :, None] != region[:, None, :]
    return torch.zeros(different.shape, dtype=dtype, device=device).masked_fill_(different, _MASK_VALUE)


def _relative_position_index(window: tuple[int, int]) -> Tensor:
    """For every (query, key) token pair of a window, the flat index of their offset in a
    (2*Wh - 1, 2*Ww - 1) table of offsets. Flattened to (tokens * tokens,), the checkpoints' layout."""
    rows = torch.arange(window[0]).repeat_interleave(window[1])
    cols = torch.arange(window[1]).repeat(window[0])
    row_offset = rows[:, None] - rows[None, :] + window[0] - 1
    col_offset = cols[:, None] - cols[None, :] + window[1] - 1
    return (row_offset * (2 * window[1] - 1) + col_offset).flatten()


def _log_spaced_offsets(window: tuple[int, int]) -> Tensor:
    """V2's inputs of the position-bias MLP: every (dy, dx) offset of a window, scaled to [-8, 8], then mapped
    to sign(t) * log2(1 + |t|) / 3 so that far offsets are compressed. Shape (1, 2*Wh - 1, 2*Ww - 1, 2)."""
    axes = [torch.arange(1 - size, size, dtype=torch.float32) / max(size - 1, 1) * 8 for size in window]
    offsets = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).unsqueeze(0)
    return torch.sign(offsets) * torch.log2(offsets.abs() + 1.0) / 3.0


def _get_relative_position_bias(table: Tensor, index: Tensor, window: Sequence[int]) -> Tensor:
    """Gather a (offsets, heads) table into the (heads, tokens, tokens) additive bias of every token pair."""
    tokens = window[0] * window[1]
    return table[index].view(tokens, tokens, -1).permute(2, 0, 1)


def shifted_window_attention(
    x: Tensor,
    qkv_weight: Tensor,
    proj_weight: Tensor,
    position_bias: Tensor,
    window: Sequence[int],
    num_heads: int,
    shift: Sequence[int],
    attention_dropout: float = 0.0,
    dropout: float = 0.0,
    qkv_bias: Tensor | None = None,
    proj_bias: Tensor | None = None,
    logit_scale: Tensor | None = None,
    training: bool = True,
) -> Tensor:
    """Multi-head self-attention inside (shifted) windows of a (B, H, W, C) map; see :class:`ShiftedWindowAttention`.

    ``position_bias`` is (heads, tokens, tokens); ``logit_scale`` (heads, 1, 1) selects cosine attention (V2),
    which has no key bias: the middle third of ``qkv_bias`` is left out.
    """
    window, shift = (window[0], window[1]), (shift[0], shift[1])
    if logit_scale is not None and qkv_bias is not None:
        q_bias, k_bias, v_bias = qkv_bias.chunk(3)
        qkv_bias = torch.cat((q_bias, torch.zeros_like(k_bias), v_bias))
    batch, height, width, channels = x.shape
    # Pad bottom and right to whole windows; the padded (zero) tokens take part in attention like any other.
    x = F.pad(x, (0, 0, 0, -width % window[1], 0, -height % window[0]))
    padded_h, padded_w = x.shape[1], x.shape[2]
    # A single window along an axis has nothing to shift towards.
    shift = (shift[0] if padded_h > window[0] else 0, shift[1] if padded_w > window[1] else 0)
    shifted = shift[0] > 0 or shift[1] > 0
    if shifted:
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))

    windows = _to_windows(x, window)
    num_windows, tokens = windows.shape[1], windows.shape[2]
    qkv = F.linear(windows, qkv_weight, qkv_bias).view(batch * num_windows, tokens, 3, num_heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B * windows, heads, tokens, head_dim)

    scale = None  # 1 / sqrt(head_dim)
    if logit_scale is not None:
        # Cosine similarity times a per-head temperature (at most 100): the temperature is folded into the unit
        # queries, so the attention kernel runs with scale 1.
        q = F.normalize(q, dim=-1) * logit_scale.clamp(max=math.log(100.0)).exp()
        k = F.normalize(k, dim=-1)
        scale = 1.0

    mask = position_bias.unsqueeze(0)
    if shifted:
        mask = mask + _shift_mask(padded_h, padded_w, window, shift, mask.dtype, mask.device).unsqueeze(1)
    # A 4-D mask (a free view unless shifted) lets the fused kernels run; they reject 3-D masks.
    mask = mask.expand(batch, num_windows, *mask.shape[1:]).reshape(batch * num_windows, *mask.shape[1:])
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=attention_dropout if training else 0.0, scale=scale
    )
    # An explicit copy rather than reshape: ONNX export decomposes attention anew after tracing, and a reshape
    # traced as a view of the fused kernel's output would then view a transposed tensor.
    out = out.transpose(1, 2).clone(memory_format=torch.contiguous_format).view(batch, num_windows, tokens, channels)
    out = F.dropout(F.linear(out, proj_weight, proj_bias), p=dropout, training=training)

    out = _from_windows(out, window, padded_h, padded_w)
    if shifted:
        out = torch.roll(out, shifts=shift, dims=(1, 2))
    return out[:, :height, :width].contiguous()


def _patch_merging_pad(x: Tensor) -> Tensor:
    """(..., H, W, C) -> (..., ceil(H/2), ceil(W/2), 4C): each 2x2 neighbourhood (zero-padded at odd sizes)
    concatenated as top-left, bottom-left, top-right, bottom-right, the order the checkpoints were trained with."""
    height, width = x.shape[-3], x.shape[-2]
    x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
    x = x.unflatten(-3, (-1, 2)).unflatten(-2, (-1, 2))  # (..., H/2, dy, W/2, dx, C)
    return x.transpose(-4, -2).transpose(-4, -3).flatten(-3)  # (..., H/2, W/2, dx, dy, C) -> 4C


# Shapes decide the padding and whether to shift, which symbolic tracing cannot see: record one call each. The
# names are the reference's, so that torch.fx feature extraction names these nodes as it does.
torch.fx.wrap("_get_relative_position_bias")
torch.fx.wrap("shifted_window_attention")
torch.fx.wrap("_patch_merging_pad")


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


class PatchMerging(nn.Module):
    """Halve the resolution and double the width: 2x2 neighbourhoods concatenated, LayerNorm, Linear 4C -> 2C.

    Args:
        dim: channels of the (..., H, W, C) input.
        norm_layer: norm constructor, applied to the 4C concatenation.
    """

    def __init__(self, dim: int, norm_layer: NormLayer = nn.LayerNorm) -> None:
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(self._norm_width(dim))

    @staticmethod
    def _norm_width(dim: int) -> int:
        return 4 * dim

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(self.norm(_patch_merging_pad(x)))


class PatchMergingV2(PatchMerging):
    """V2 patch merging: the Linear reduction first, then the norm on its 2C output."""

    @staticmethod
    def _norm_width(dim: int) -> int:
        return 2 * dim

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.reduction(_patch_merging_pad(x)))


class ShiftedWindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias (Swin V1).

    Tokens attend within windows of ``window_size``; a non-zero ``shift_size`` rolls the map by that much
    first (and masks pairs that the roll brought together from opposite borders). Maps not divisible by the
    window are zero-padded bottom and right.

    Args:
        dim: channels of the (B, H, W, C) input; must be divisible by ``num_heads``.
        window_size: (height, width) of a window.
        shift_size: (down, right) cyclic shift, each in ``[0, window)``.
        num_heads: attention heads.
        qkv_bias, proj_bias: whether the input and output projections have biases.
        attention_dropout: dropout on the attention weights (training only).
        dropout: dropout on the output (training only).

    Raises:
        ValueError: bad sizes, a shift outside the window, or ``dim`` not divisible by ``num_heads``.
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
        window, shift = _pair(window_size, "window_size"), _pair(shift_size, "shift_size")
        _check_window_attention(window, shift, dim, num_heads, attention_dropout, dropout)
        self.window_size = list(window)
        self.shift_size = list(shift)
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self._define_position_bias(window)
        # Persistent, as in the checkpoints (which is also what fills it when a model built on meta is loaded).
        self.register_buffer("relative_position_index", _relative_position_index(window))

    def _define_position_bias(self, window: tuple[int, int]) -> None:
        table = torch.empty((2 * window[0] - 1) * (2 * window[1] - 1), self.num_heads)
        self.relative_position_bias_table = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))

    def relative_position_bias(self) -> Tensor:
        """The additive attention bias, (heads, tokens, tokens)."""
        return _get_relative_position_bias(
            self.relative_position_bias_table, self.relative_position_index, self.window_size
        )

    def _logit_scale(self) -> Tensor | None:
        return None

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        position_bias = self.relative_position_bias()
        return shifted_window_attention(
            x,
            self.qkv.weight,
            self.proj.weight,
            position_bias,
            self.window_size,
            self.num_heads,
            self.shift_size,
            attention_dropout=self.attention_dropout,
            dropout=self.dropout,
            qkv_bias=self.qkv.bias,
            proj_bias=self.proj.bias,
            logit_scale=self._logit_scale(),
            training=self.training,
        )


class ShiftedWindowAttentionV2(ShiftedWindowAttention):
    """Swin V2 window attention: cosine similarity times a learned per-head temperature, and a relative
    position bias produced by an MLP (``cpb_mlp``) from log-spaced offsets, squashed to (0, 16).

    V2 has query and value biases only. The state_dict still holds a full ``qkv.bias``, so its key third is
    zeroed at construction and ignored in the forward pass. Arguments as :class:`ShiftedWindowAttention`.
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
        super().__init__(
            dim,
            window_size,
            shift_size,
            num_heads,
            qkv_bias=qkv_bias,
            proj_bias=proj_bias,
            attention_dropout=attention_dropout,
            dropout=dropout,
        )
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        # Keys cpb_mlp.0 / cpb_mlp.2: Linear, ReLU, Linear as in the checkpoints.
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False))
        if self.qkv.bias is not None:
            with torch.no_grad():
                self.qkv.bias[dim : 2 * dim].zero_()

    def _define_position_bias(self, window: tuple[int, int]) -> None:
        self.register_buffer("relative_coords_table", _log_spaced_offsets(window))

    def relative_position_bias(self) -> Tensor:
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        return 16 * torch.sigmoid(_get_relative_position_bias(table, self.relative_position_index, self.window_size))

    def _logit_scale(self) -> Tensor | None:
        return self.logit_scale


class SwinTransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``, each branch under
    stochastic depth.

    Args:
        dim: channels of the (B, H, W, C) input.
        num_heads, window_size, shift_size: passed to ``attn_layer``.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
        dropout: dropout of the MLP and of the attention output.
        attention_dropout: dropout of the attention weights.
        stochastic_depth_prob: probability of dropping each residual branch while training.
        norm_layer: norm constructor (default ``nn.LayerNorm``).
        attn_layer: attention constructor (default :class:`ShiftedWindowAttention`).
    """

    _attention: type[nn.Module] = ShiftedWindowAttention

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: Sequence[int],
        shift_size: Sequence[int],
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        stochastic_depth_prob: float = 0.0,
        norm_layer: NormLayer = nn.LayerNorm,
        attn_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be positive, got {mlp_ratio!r}")
        attn_layer = attn_layer or self._attention
        self.norm1 = norm_layer(dim)
        self.attn = attn_layer(
            dim, window_size, shift_size, num_heads, attention_dropout=attention_dropout, dropout=dropout
        )
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.norm2 = norm_layer(dim)
        self.mlp = MLP(dim, [int(dim * mlp_ratio), dim], activation_layer=nn.GELU, dropout=dropout)
        for layer in self.mlp.modules():
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.normal_(layer.bias, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class SwinTransformerBlockV2(SwinTransformerBlock):
    """V2 block: residual post-norm, ``x + norm1(attn(x))`` then ``x + norm2(mlp(x))``, which keeps activations
    from growing with depth; attention defaults to :class:`ShiftedWindowAttentionV2`."""

    _attention = ShiftedWindowAttentionV2

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.stochastic_depth(self.norm1(self.attn(x)))
        return x + self.stochastic_depth(self.norm2(self.mlp(x)))
