"""Vision Transformer (ViT).

Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale" (2021). The
image is cut into non-overlapping patches that are linearly embedded; a learned class token is prepended and
learned position embeddings are added; a stack of pre-norm Transformer encoder blocks mixes the sequence and the
class token's final state feeds the head. The position embeddings fix the image size a model accepts, so weights
trained at another size need :func:`resize_position_embeddings`. Optionally a convolutional stem replaces the
patch embedding (Xiao et al., "Early Convolutions Help Transformers See Better", 2021).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, MutableMapping
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.fx
from torch import nn
from torch.nn import functional as F

from ..ops.misc import MLP, Conv2dNormActivation
from ..transforms import InterpolationMode
from ._api import Weights, WeightsEnum, register_model
from ._features import FeatureRecipe
from ._heads import head_width, linear_head
from ._utils import build_model, check_image_batch
from ._weights import imagenet_entry

__all__ = [
    "VisionTransformer",
    "ViT_B_16_Weights",
    "ViT_B_32_Weights",
    "ViT_L_16_Weights",
    "ViT_L_32_Weights",
    "ViT_H_14_Weights",
    "vit_b_16",
    "vit_b_32",
    "vit_l_16",
    "vit_l_32",
    "vit_h_14",
]

NormLayer = Callable[..., nn.Module]


class ConvStemConfig(NamedTuple):
    """One 3x3-style convolution (+ norm + activation) of a convolutional stem; the stem ends in a 1x1 projection."""

    out_channels: int
    kernel_size: int
    stride: int
    norm_layer: NormLayer = nn.BatchNorm2d
    activation_layer: NormLayer = nn.ReLU


# --------------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------------


class SelfAttention(nn.MultiheadAttention):
    """``nn.MultiheadAttention`` (batch first) whose self-attention without masks or returned weights runs as
    one fused ``F.scaled_dot_product_attention`` call; any other call is ``nn.MultiheadAttention``'s own.

    The parameters, their initialisation and the call are ``nn.MultiheadAttention``'s, which is what the
    checkpoints store and what torch.fx feature extraction keeps as one node. On CPU the fused path measured
    about 10% faster on ViT-B/16 than ``nn.MultiheadAttention``'s inference fast path.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__(embed_dim, num_heads, dropout=dropout, batch_first=True)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        plain = key_padding_mask is None and attn_mask is None and not is_causal and not need_weights
        if not (plain and query is key is value):
            return super().forward(
                query,
                key,
                value,
                key_padding_mask=key_padding_mask,
                need_weights=need_weights,
                attn_mask=attn_mask,
                average_attn_weights=average_attn_weights,
                is_causal=is_causal,
            )
        n, length, _ = query.shape
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        # (N, L, 3E) -> 3 x (N, heads, L, head_dim): rows of in_proj_weight are [query; key; value], heads contiguous.
        q, k, v = qkv.view(n, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        if not self.training:
            # Batch-first rows, one (N * L, E) matrix for the projection: the same values. Under torch.compile the
            # sequence-first view below becomes a batched product of L tiny (N, E) matrices, 2.5x slower.
            return self.out_proj(out.transpose(1, 2).reshape(n, length, self.embed_dim)), None
        # Laid out sequence-first in memory, as nn.MultiheadAttention(batch_first=True) returns it: a dropout
        # applied to the result then draws its mask in the same order, so training matches draw for draw.
        out = out.permute(2, 0, 1, 3).reshape(length, n, self.embed_dim)
        return self.out_proj(out).transpose(0, 1), None


# Checkpoints published before the MLP became a shared layer name its two Linears ``linear_1`` and ``linear_2``.
_LEGACY_MLP_NAMES = {"linear_1": "0", "linear_2": "3"}


def _current_mlp_key(key: str, prefix: str) -> str:
    """``<prefix>linear_1.weight`` -> ``<prefix>0.weight`` (and ``linear_2`` -> ``3``); other keys unchanged."""
    if key.startswith(prefix):
        name, dot, rest = key[len(prefix) :].partition(".")
        if dot and name in _LEGACY_MLP_NAMES:
            return f"{prefix}{_LEGACY_MLP_NAMES[name]}.{rest}"
    return key


class TransformerMLP(MLP):
    """The encoder block's feed-forward part: Linear, GELU, Dropout, Linear, Dropout (keys ``0`` and ``3``).

    A state_dict with the older ``linear_1``/``linear_2`` names loads too.
    """

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(in_dim, [mlp_dim, in_dim], activation_layer=nn.GELU, inplace=None, dropout=dropout)
        for layer in (self[0], self[3]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        for key in [k for k in state_dict if k.startswith(prefix)]:
            renamed = _current_mlp_key(key, prefix)
            if renamed != key:
                state_dict[renamed] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args)


def _assert_tokens(x: torch.Tensor) -> None:
    # torch._assert rather than an if: it stays in a torch.fx graph as the reference's check does, so traced
    # models have the reference's node names.
    torch._assert(x.dim() == 3, f"expected tokens of shape (batch_size, seq_length, hidden_dim), got {x.shape}")


class TransformerEncoderBlock(nn.Module):
    """Pre-norm Transformer block: ``x + attention(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(
        self,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        if hidden_dim % num_heads != 0:
            raise ValueError(f"hidden_dim={hidden_dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.ln_1 = norm_layer(hidden_dim)
        self.self_attention = SelfAttention(hidden_dim, num_heads, dropout=attention_dropout)
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = norm_layer(hidden_dim)
        self.mlp = TransformerMLP(hidden_dim, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _assert_tokens(x)
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = self.dropout(y) + x
        return x + self.mlp(self.ln_2(x))


class TransformerEncoder(nn.Module):
    """Adds the position embeddings, runs the blocks, normalises the result.

    Args:
        seq_length: number of tokens (patches + class token); fixes the shape of ``pos_embedding``.
    """

    def __init__(
        self,
        seq_length: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_layer: NormLayer,
    ) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        block = partial(TransformerEncoderBlock, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, norm_layer)
        self.layers = nn.Sequential(OrderedDict((f"encoder_layer_{i}", block()) for i in range(num_layers)))
        self.ln = norm_layer(hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _assert_tokens(x)
        return self.ln(self.layers(self.dropout(x + self.pos_embedding)))


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_stem(configs: list[ConvStemConfig], patch_size: int) -> None:
    if not configs:
        raise ValueError("conv_stem_configs must list at least one convolution (or be None for the patch embedding)")
    stride = math.prod(cnf.stride for cnf in configs)
    if stride != patch_size:
        raise ValueError(
            f"the strides of conv_stem_configs multiply to {stride}, "
            f"but the stem must downsample by patch_size={patch_size}"
        )


def _zero_linear(layer: nn.Linear) -> None:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


class VisionTransformer(nn.Module):
    """Patch embedding (or a convolutional stem), class token, position embeddings, encoder, head.

    Args:
        image_size: side of the square images the model takes; a multiple of ``patch_size``.
        patch_size: side of the square patches.
        num_layers, num_heads, hidden_dim, mlp_dim: encoder depth, heads, token width and MLP width.
        dropout: dropout after the position embeddings, the attention and inside the MLPs.
        attention_dropout: dropout on the attention weights.
        num_classes: size of the classification head.
        representation_size: if set, a Linear + tanh "pre-logits" layer of this width precedes the head.
        norm_layer: token norm constructor (default ``nn.LayerNorm(eps=1e-6)``).
        conv_stem_configs: if set, convolutions that replace the patch embedding; their strides must multiply
            to ``patch_size``.

    Raises:
        ValueError: a size that is not a positive integer, ``image_size`` not a multiple of ``patch_size``,
            ``hidden_dim`` not divisible by ``num_heads``, or ``num_classes`` < 1.
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
        representation_size: int | None = None,
        norm_layer: NormLayer = partial(nn.LayerNorm, eps=1e-6),
        conv_stem_configs: list[ConvStemConfig] | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("image_size", image_size),
            ("patch_size", patch_size),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
            ("hidden_dim", hidden_dim),
            ("mlp_dim", mlp_dim),
            ("num_classes", num_classes),
        ):
            _check_positive(name, value)
        if image_size % patch_size != 0:
            raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
        if representation_size is not None:
            _check_positive("representation_size", representation_size)
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.mlp_dim = mlp_dim
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.num_classes = num_classes
        self.representation_size = representation_size
        self.norm_layer = norm_layer

        self.conv_proj: nn.Module
        if conv_stem_configs is not None:
            _check_stem(conv_stem_configs, patch_size)
            stem = nn.Sequential()
            channels = 3
            for index, cnf in enumerate(conv_stem_configs):
                stem.add_module(
                    f"conv_bn_relu_{index}",
                    Conv2dNormActivation(
                        channels,
                        cnf.out_channels,
                        cnf.kernel_size,
                        cnf.stride,
                        norm_layer=cnf.norm_layer,
                        activation_layer=cnf.activation_layer,
                    ),
                )
                channels = cnf.out_channels
            stem.add_module("conv_last", nn.Conv2d(channels, hidden_dim, kernel_size=1))
            self.conv_proj = stem
        else:
            self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)

        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = TransformerEncoder(
            self.seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, norm_layer
        )

        heads: OrderedDict[str, nn.Module] = OrderedDict()
        if representation_size is not None:
            heads["pre_logits"] = nn.Linear(hidden_dim, representation_size)
            heads["act"] = nn.Tanh()
        heads["head"] = nn.Linear(representation_size or hidden_dim, num_classes)
        self.heads = nn.Sequential(heads)
        self._init_stem_and_heads()

    def _init_stem_and_heads(self) -> None:
        """Truncated-normal patch embedding (He-normal for a convolutional stem's last layer), truncated-normal
        pre-logits and a zero head. Run once every layer exists, in the reference's order, so that a seed gives
        the reference's initial weights draw for draw."""
        if isinstance(self.conv_proj, nn.Conv2d):
            fan_in = self.conv_proj.in_channels * self.patch_size * self.patch_size
            nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1.0 / fan_in))
            nn.init.zeros_(self.conv_proj.bias)
        else:
            nn.init.normal_(self.conv_proj.conv_last.weight, std=math.sqrt(2.0 / self.hidden_dim))
            nn.init.zeros_(self.conv_proj.conv_last.bias)
        if "pre_logits" in self.heads._modules:
            nn.init.trunc_normal_(self.heads.pre_logits.weight, std=math.sqrt(1.0 / self.hidden_dim))
            nn.init.zeros_(self.heads.pre_logits.bias)
        # A zero head makes every class equally likely at the start of fine-tuning.
        _zero_linear(self.heads.head)

    def _reset_classifier(self, num_classes: int) -> None:
        # A zero head, as built: every class equally likely at the start of fine-tuning.
        self.heads.head = linear_head(head_width(self.heads.head), num_classes, init=_zero_linear)
        self.num_classes = num_classes

    @property
    def input_size(self) -> tuple[int, int]:
        """The (height, width) every input must have."""
        return (self.image_size, self.image_size)

    def _check_size(self, x: torch.Tensor) -> None:
        _check_image_size(x, type(self).__name__, self.image_size, self.patch_size)

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """Every encoder layer, its patch tokens read as a map (stride ``patch_size``): the stages that
        ``features_only=True`` returns."""
        return [
            {"name": f"encoder.layers.{name}", "channels": self.hidden_dim, "stride": self.patch_size}
            for name, _ in self.encoder.layers.named_children()
        ]

    def _feature_recipe(self) -> FeatureRecipe:
        check = partial(
            _check_image_size, model=type(self).__name__, image_size=self.image_size, patch_size=self.patch_size
        )
        return FeatureRecipe(check=check, prepare={"encoder": _encoder_input}, readout=_patch_tokens_as_map)

    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) images to (N, num_patches, hidden_dim) patch tokens, in row-major patch order."""
        n, _, h, w = x.shape
        # forward() has checked the size already; these checks are what a torch.fx graph keeps of it.
        torch._assert(h == self.image_size, f"expected image height {self.image_size}, got {h}")
        torch._assert(w == self.image_size, f"expected image width {self.image_size}, got {w}")
        rows, columns = h // self.patch_size, w // self.patch_size
        x = self.conv_proj(x)
        return x.reshape(n, self.hidden_dim, rows * columns).permute(0, 2, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's output tokens (N, 1 + num_patches, hidden_dim); index 0 is the class token."""
        tokens = self.embed_patches(x)
        n = tokens.shape[0]
        tokens = torch.cat([self.class_token.expand(n, -1, -1), tokens], dim=1)
        return self.encoder(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, type(self).__name__)
        self._check_size(x)
        return self.heads(self.forward_features(x)[:, 0])


def _check_image_size(x: torch.Tensor, model: str, image_size: int, patch_size: int) -> None:
    if isinstance(x, torch.fx.Proxy) or tuple(x.shape[-2:]) == (image_size, image_size):
        return
    raise ValueError(
        f"{model} was built for {image_size}x{image_size} images, got {x.shape[-2]}x{x.shape[-1]}; resize and crop "
        f"the images (the weights' transforms() do), or build the model with another image_size (a multiple of "
        f"{patch_size}) and adapt a checkpoint with resize_position_embeddings()"
    )


def _encoder_input(features: nn.Module, patches: torch.Tensor) -> torch.Tensor:
    """``conv_proj``'s map to the tokens the encoder's layers read (its dropout follows): the class token first,
    the position embedding added. ``features`` holds the model's ``class_token`` and ``encoder.pos_embedding``."""
    tokens = patches.flatten(2).transpose(1, 2)
    tokens = torch.cat([features.class_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
    return tokens + features.encoder.pos_embedding


def _patch_tokens_as_map(tokens: torch.Tensor) -> torch.Tensor:
    """(N, 1 + h * w, C) tokens, class token first, to the (N, C, h, w) map of the (square) patch grid."""
    patches = tokens[:, 1:]
    side = math.isqrt(patches.shape[1])
    return patches.transpose(1, 2).reshape(patches.shape[0], patches.shape[2], side, side)


# --------------------------------------------------------------------------------------------------
# Position embeddings at another image size
# --------------------------------------------------------------------------------------------------

_MODES = ("bicubic", "bilinear", "nearest", "nearest-exact", "area")
_ALIGNABLE_MODES = ("bicubic", "bilinear")
_POS_KEY = "encoder.pos_embedding"


def resize_position_embeddings(
    state_dict: Mapping[str, torch.Tensor],
    image_size: int,
    patch_size: int,
    mode: str = "bicubic",
    reset_heads: bool = False,
) -> OrderedDict[str, torch.Tensor]:
    """Adapt a VisionTransformer checkpoint to another image size.

    The patch position embeddings are treated as a square grid and resampled to the new grid (corners aligned);
    the class token's embedding is kept. Use it to run pretrained weights at a resolution they were not trained
    at, e.g. ``vit_b_16(image_size=384).load_state_dict(resize_position_embeddings(sd, 384, 16))``.

    Args:
        state_dict: the checkpoint; it is not modified.
        image_size: side of the images the new model takes.
        patch_size: the model's patch size.
        mode: an ``F.interpolate`` mode for 4-D input ("bicubic", "bilinear", "nearest", "nearest-exact", "area").
        reset_heads: leave out the ``heads.*`` tensors (for a new classification head).

    Returns:
        A new state_dict whose ``encoder.pos_embedding`` has ``(image_size // patch_size) ** 2 + 1`` tokens.

    Raises:
        ValueError: no ``encoder.pos_embedding`` of shape (1, 1 + n * n, D), sizes that are not positive or not
            multiples, or an unknown mode.
    """
    _check_positive("image_size", image_size)
    _check_positive("patch_size", patch_size)
    if image_size % patch_size != 0:
        raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    if _POS_KEY not in state_dict:
        raise ValueError(f"the state_dict has no {_POS_KEY!r}: it is not a VisionTransformer checkpoint")
    embedding = state_dict[_POS_KEY]
    if embedding.dim() != 3 or embedding.shape[0] != 1:
        raise ValueError(f"{_POS_KEY} must have shape (1, tokens, hidden_dim), got {tuple(embedding.shape)}")
    old_grid = math.isqrt(embedding.shape[1] - 1)
    if old_grid * old_grid != embedding.shape[1] - 1:
        positions = embedding.shape[1] - 1
        raise ValueError(f"{_POS_KEY} holds {positions} patch positions (after the class token), not a square grid")

    resized = OrderedDict((k, v) for k, v in state_dict.items() if not (reset_heads and k.startswith("heads")))
    new_grid = image_size // patch_size
    if new_grid != old_grid:
        grid = embedding[:, 1:].transpose(1, 2).reshape(1, -1, old_grid, old_grid)
        align = True if mode in _ALIGNABLE_MODES else None
        grid = F.interpolate(grid, size=(new_grid, new_grid), mode=mode, align_corners=align)
        resized[_POS_KEY] = torch.cat([embedding[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)
    return resized


def interpolate_embeddings(
    image_size: int,
    patch_size: int,
    model_state: MutableMapping[str, torch.Tensor],
    interpolation_mode: str = "bicubic",
    reset_heads: bool = False,
) -> MutableMapping[str, torch.Tensor]:
    """:func:`resize_position_embeddings` under the name and calling convention torchvision users know.

    As there, ``model_state`` itself receives the new ``encoder.pos_embedding``, and nothing changes (heads
    included) when the number of positions stays the same.
    """
    resized = resize_position_embeddings(model_state, image_size, patch_size, interpolation_mode, reset_heads)
    if resized[_POS_KEY] is model_state[_POS_KEY]:
        return model_state
    model_state[_POS_KEY] = resized[_POS_KEY]
    return resized if reset_heads else model_state


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_RECIPE = "https://github.com/pytorch/vision/tree/main/references/classification"
_DOCS_DEIT = (
    "Trained from scratch on ImageNet-1K by TorchVision, with a modified DeiT recipe "
    "(https://arxiv.org/abs/2012.12877)."
)
_SWAG = "SWAG (weakly supervised pre-training on Instagram hashtags, https://arxiv.org/abs/2201.08371)"
_SWAG_LICENSE = "https://github.com/facebookresearch/SWAG/blob/main/LICENSE"
_BICUBIC = InterpolationMode.BICUBIC

_deit = partial(imagenet_entry, docs=_DOCS_DEIT, min_size=(224, 224))
# End-to-end fine-tuned at a higher resolution: image_size follows min_size, the preset resizes straight to it.
_swag_e2e = partial(
    imagenet_entry,
    recipe="https://github.com/facebookresearch/SWAG",
    license=_SWAG_LICENSE,
    interpolation=_BICUBIC,
    docs=f"{_SWAG} weights, then fine-tuned end to end on ImageNet-1K at the preset's resolution.",
)
_swag_linear = partial(
    imagenet_entry,
    recipe="https://github.com/pytorch/vision/pull/5793",
    license=_SWAG_LICENSE,
    interpolation=_BICUBIC,
    crop=224,
    resize=224,
    min_size=(224, 224),
    docs=f"The frozen {_SWAG} trunk with only a linear classifier trained on ImageNet-1K.",
)


def _swag_e2e_at(size: int, url: str, **facts: Any) -> Weights:
    return _swag_e2e(url, crop=size, resize=size, min_size=(size, size), **facts)


class ViT_B_16_Weights(WeightsEnum):
    IMAGENET1K_V1 = _deit(
        f"{_URL}vit_b_16-c867db91.pth",
        recipe=f"{_RECIPE}#vit_b_16",
        params=86567656,
        acc1=81.072,
        acc5=95.318,
        gflops=17.564,
        file_mb=330.285,
    )
    IMAGENET1K_SWAG_E2E_V1 = _swag_e2e_at(
        384,
        f"{_URL}vit_b_16_swag-9ac1b537.pth",
        params=86859496,
        acc1=85.304,
        acc5=97.65,
        gflops=55.484,
        file_mb=331.398,
    )
    IMAGENET1K_SWAG_LINEAR_V1 = _swag_linear(
        f"{_URL}vit_b_16_lc_swag-4e70ced5.pth", params=86567656, acc1=81.886, acc5=96.18, gflops=17.564, file_mb=330.285
    )
    DEFAULT = IMAGENET1K_V1


class ViT_B_32_Weights(WeightsEnum):
    IMAGENET1K_V1 = _deit(
        f"{_URL}vit_b_32-d86f8d99.pth",
        recipe=f"{_RECIPE}#vit_b_32",
        params=88224232,
        acc1=75.912,
        acc5=92.466,
        gflops=4.409,
        file_mb=336.604,
    )
    DEFAULT = IMAGENET1K_V1


class ViT_L_16_Weights(WeightsEnum):
    IMAGENET1K_V1 = imagenet_entry(
        f"{_URL}vit_l_16-852ce7e3.pth",
        recipe=f"{_RECIPE}#vit_l_16",
        params=304326632,
        acc1=79.662,
        acc5=94.638,
        gflops=61.555,
        file_mb=1161.023,
        crop=224,
        resize=242,
        min_size=(224, 224),
        docs="Trained from scratch on ImageNet-1K by TorchVision, with a modified version of its new training recipe "
        "(https://pytorch.org/blog/how-to-train-state-of-the-art-models-using-torchvision-latest-primitives/).",
    )
    IMAGENET1K_SWAG_E2E_V1 = _swag_e2e_at(
        512,
        f"{_URL}vit_l_16_swag-4f3808c9.pth",
        params=305174504,
        acc1=88.064,
        acc5=98.512,
        gflops=361.986,
        file_mb=1164.258,
    )
    IMAGENET1K_SWAG_LINEAR_V1 = _swag_linear(
        f"{_URL}vit_l_16_lc_swag-4d563306.pth",
        params=304326632,
        acc1=85.146,
        acc5=97.422,
        gflops=61.555,
        file_mb=1161.023,
    )
    DEFAULT = IMAGENET1K_V1


class ViT_L_32_Weights(WeightsEnum):
    IMAGENET1K_V1 = _deit(
        f"{_URL}vit_l_32-c7638314.pth",
        recipe=f"{_RECIPE}#vit_l_32",
        params=306535400,
        acc1=76.972,
        acc5=93.07,
        gflops=15.378,
        file_mb=1169.449,
    )
    DEFAULT = IMAGENET1K_V1


class ViT_H_14_Weights(WeightsEnum):
    IMAGENET1K_SWAG_E2E_V1 = _swag_e2e_at(
        518,
        f"{_URL}vit_h_14_swag-80465313.pth",
        params=633470440,
        acc1=88.552,
        acc5=98.694,
        gflops=1016.717,
        file_mb=2416.643,
    )
    IMAGENET1K_SWAG_LINEAR_V1 = _swag_linear(
        f"{_URL}vit_h_14_lc_swag-c1eb923e.pth",
        params=632045800,
        acc1=85.708,
        acc5=97.73,
        gflops=167.295,
        file_mb=2411.209,
    )
    DEFAULT = IMAGENET1K_SWAG_E2E_V1


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------

WeightsArg = WeightsEnum | Path | str | None


# The published variants (Table 1 of the paper, plus ViT-H/14 with 14x14 patches).
_ARCHITECTURE_ARGS = ("patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim")
_VARIANTS = {
    "vit_b_16": (16, 12, 12, 768, 3072),
    "vit_b_32": (32, 12, 12, 768, 3072),
    "vit_l_16": (16, 24, 16, 1024, 4096),
    "vit_l_32": (32, 24, 16, 1024, 4096),
    "vit_h_14": (14, 32, 16, 1280, 5120),
}


def _vision_transformer(variant: str, weights: WeightsArg, progress: bool, **kwargs: Any) -> VisionTransformer:
    """Build a ViT variant; published weights fix ``image_size`` to the resolution they were trained at."""
    fixed = [key for key in _ARCHITECTURE_ARGS if key in kwargs]
    if fixed:
        raise ValueError(
            f"{variant} fixes {', '.join(fixed)}; build VisionTransformer(...) directly for another architecture"
        )
    if isinstance(weights, WeightsEnum):
        trained = weights.meta["min_size"][0]
        if kwargs.setdefault("image_size", trained) != trained:
            raise ValueError(
                f"{weights!r} was trained at image_size={trained}, got image_size={kwargs['image_size']}; to use it at "
                f"another size, build with weights=None and load resize_position_embeddings(weights.get_state_dict(), "
                f"{kwargs['image_size']}, {_VARIANTS[variant][0]})"
            )
    kwargs.setdefault("image_size", 224)
    kwargs.update(zip(_ARCHITECTURE_ARGS, _VARIANTS[variant]))
    return build_model(VisionTransformer, weights, progress, **kwargs)


def _no_legacy_weights(kwargs: dict[str, Any]) -> WeightsEnum:
    # ViT-H/14 only has SWAG weights, which never existed under the old pretrained=True interface.
    raise ValueError(
        "vit_h_14 has no weights for the legacy pretrained=True; "
        "use weights=ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1 (or .DEFAULT)"
    )


@register_model(weights=ViT_B_16_Weights)
def vit_b_16(
    *, weights: ViT_B_16_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-B/16: 12 layers, 12 heads, width 768, 16x16 patches.

    Args:
        weights: a ``ViT_B_16_Weights`` member, its name, ``None`` for random initialisation, or the path of a
            local ``.pth``/``.safetensors`` checkpoint. Published weights set ``image_size`` (384 for SWAG E2E).
        progress: show a download progress bar.
        **kwargs: ``VisionTransformer`` arguments (image_size (default 224), dropout, attention_dropout,
            num_classes, representation_size, norm_layer, conv_stem_configs). The other builders take the same.
    """
    return _vision_transformer("vit_b_16", weights, progress, **kwargs)


@register_model(weights=ViT_B_32_Weights)
def vit_b_32(
    *, weights: ViT_B_32_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-B/32: ViT-B with 32x32 patches."""
    return _vision_transformer("vit_b_32", weights, progress, **kwargs)


@register_model(weights=ViT_L_16_Weights)
def vit_l_16(
    *, weights: ViT_L_16_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-L/16: 24 layers, 16 heads, width 1024, 16x16 patches (SWAG E2E weights run at 512)."""
    return _vision_transformer("vit_l_16", weights, progress, **kwargs)


@register_model(weights=ViT_L_32_Weights)
def vit_l_32(
    *, weights: ViT_L_32_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-L/32: ViT-L with 32x32 patches."""
    return _vision_transformer("vit_l_32", weights, progress, **kwargs)


@register_model(weights=ViT_H_14_Weights, legacy_weights=_no_legacy_weights)
def vit_h_14(
    *, weights: ViT_H_14_Weights | str | Path | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-H/14: 32 layers, 16 heads, width 1280, 14x14 patches (about 632M parameters; only SWAG weights,
    the end-to-end ones at 518 pixels)."""
    return _vision_transformer("vit_h_14", weights, progress, **kwargs)
