"""RAFT: recurrent all-pairs field transforms for optical flow.

Teed and Deng, "RAFT: Recurrent All-Pairs Field Transforms for Optical Flow" (2020), https://arxiv.org/abs/2003.12039.
Features of both frames at 1/8 resolution are correlated all against all once; a recurrent unit then refines the
flow many times, each step reading the correlations around each pixel's current match, and every estimate is
upsampled to full resolution (by learned convex combinations in raft_large, bilinearly in raft_small).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._api import WeightsEnum, register_model
from .._utils import build_model, check_image_batch
from .._weights import flow_entry
from ._blocks import (
    BottleneckBlock,
    ConvGRU,
    FeatureEncoder,
    FlowHead,
    MaskPredictor,
    MotionEncoder,
    RecurrentBlock,
    ResidualBlock,
    UpdateBlock,
    upsample_flow,
)
from ._correlation import CorrBlock, coords_grid

__all__ = [
    "RAFT",
    "ResidualBlock",
    "BottleneckBlock",
    "FeatureEncoder",
    "MotionEncoder",
    "ConvGRU",
    "RecurrentBlock",
    "FlowHead",
    "UpdateBlock",
    "MaskPredictor",
    "CorrBlock",
    "Raft_Large_Weights",
    "Raft_Small_Weights",
    "raft_large",
    "raft_small",
]


class RAFT(nn.Module):
    """RAFT from its parts; ``raft_large`` and ``raft_small`` assemble the published configurations.

    Args:
        feature_encoder: maps the batch of both frames (``image1`` then ``image2``, concatenated) to features at
            1/8 resolution.
        context_encoder: maps ``image1`` to 1/8 resolution with more channels than the update block's hidden state:
            the first ``hidden_state_size`` channels (through tanh) start the hidden state, the rest (through ReLU)
            are the context every update sees.
        corr_block: builds the correlation pyramid of the two feature maps (``build_pyramid``) and reads
            correlation features around given coordinates (``index_pyramid``); exposes ``out_channels``.
        update_block: ``(hidden_state, context, corr_features, flow) -> (hidden_state, delta_flow)``; exposes
            ``hidden_state_size``.
        mask_predictor: predicts convex upsampling weights ``(N, 8 * 8 * 9, h, w)`` from the hidden state; None
            upsamples bilinearly.

    Raises:
        ValueError: ``update_block`` has no ``hidden_state_size``.
    """

    def __init__(
        self,
        *,
        feature_encoder: nn.Module,
        context_encoder: nn.Module,
        corr_block: nn.Module,
        update_block: nn.Module,
        mask_predictor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not hasattr(update_block, "hidden_state_size"):
            raise ValueError("RAFT's update_block must expose a 'hidden_state_size' attribute (its GRU's channels)")
        self.feature_encoder = feature_encoder
        self.context_encoder = context_encoder
        self.corr_block = corr_block
        self.update_block = update_block
        self.mask_predictor = mask_predictor

    def forward(self, image1: Tensor, image2: Tensor, num_flow_updates: int = 12) -> list[Tensor]:
        """The flow from ``image1`` to ``image2`` after each of ``num_flow_updates`` refinements.

        Args:
            image1, image2: float batches ``(N, 3, H, W)`` of the same shape, H and W divisible by 8 (and at least
                128 with the default correlation pyramid), normalised to [-1, 1] (``Raft_Large_Weights.DEFAULT
                .transforms()``).
            num_flow_updates: refinement steps (12 in the paper's evaluation, more for a finer result).

        Returns:
            ``num_flow_updates`` flows ``(N, 2, H, W)`` in pixels (x then y displacement), the last the best.

        Raises:
            TypeError: an image is not a floating point tensor.
            ValueError: wrong shapes, sizes that differ or are not divisible by 8, images too small for the
                correlation pyramid, or ``num_flow_updates`` below 1.
        """
        self._check_inputs(image1, image2, num_flow_updates)
        batch_size, _, height, width = image1.shape
        coarse = (height // 8, width // 8)

        fmap1, fmap2 = self.feature_encoder(torch.cat([image1, image2], dim=0)).chunk(2, dim=0)
        _check_downsampled("feature", fmap1, coarse)
        self.corr_block.build_pyramid(fmap1, fmap2)

        context_out = self.context_encoder(image1)
        _check_downsampled("context", context_out, coarse)
        hidden_size = self.update_block.hidden_state_size
        if context_out.shape[1] <= hidden_size:
            raise ValueError(
                f"The context encoder outputs {context_out.shape[1]} channels; it needs more than the update block's "
                f"hidden state ({hidden_size}): they start the hidden state, the rest is the context"
            )
        hidden_state, context = context_out.split([hidden_size, context_out.shape[1] - hidden_size], dim=1)
        hidden_state, context = torch.tanh(hidden_state), F.relu(context)

        # Each position's match in image2, at 1/8 resolution; the flow is its offset from the position itself.
        origin = coords_grid(batch_size, *coarse, device=fmap1.device).to(fmap1.dtype)
        matches = origin.clone()
        flows = []
        for _ in range(num_flow_updates):
            matches = matches.detach()  # the paper stops gradients through the look-up coordinates
            corr_features = self.corr_block.index_pyramid(centroids_coords=matches)
            hidden_state, delta_flow = self.update_block(hidden_state, context, corr_features, matches - origin)
            matches = matches + delta_flow
            up_mask = None if self.mask_predictor is None else self.mask_predictor(hidden_state)
            flows.append(upsample_flow(matches - origin, up_mask=up_mask))
        return flows

    @staticmethod
    def _check_inputs(image1: Any, image2: Any, num_flow_updates: Any) -> None:
        check_image_batch(image1, "RAFT (image1)")
        check_image_batch(image2, "RAFT (image2)")
        if image1.shape != image2.shape:
            raise ValueError(
                f"RAFT needs two batches of the same shape, got image1 {tuple(image1.shape)} and image2 "
                f"{tuple(image2.shape)}; resize one frame to the other's size first"
            )
        height, width = image1.shape[-2:]
        if height % 8 or width % 8:
            raise ValueError(
                f"RAFT needs heights and widths divisible by 8, got {height}x{width}; resize or pad the frames "
                f"(e.g. to {-(-height // 8) * 8}x{-(-width // 8) * 8})"
            )
        if isinstance(num_flow_updates, bool) or not isinstance(num_flow_updates, int) or num_flow_updates < 1:
            raise ValueError(f"num_flow_updates must be a positive int, got {num_flow_updates!r}")


def _check_downsampled(encoder: str, features: Tensor, expected: tuple[int, int]) -> None:
    if tuple(features.shape[-2:]) != expected:
        raise ValueError(
            f"RAFT's {encoder} encoder must downsample by 8: expected {expected[0]}x{expected[1]} features, got "
            f"{features.shape[-2]}x{features.shape[-1]}"
        )


@dataclass(frozen=True)
class _RaftConfig:
    """The hyper-parameters that tell raft_large and raft_small apart."""

    block: Callable[..., nn.Module]
    feature_layers: tuple[int, ...]
    feature_norm: Callable[[int], nn.Module] | None
    context_layers: tuple[int, ...]
    context_norm: Callable[[int], nn.Module] | None
    corr_radius: int
    motion_corr_layers: tuple[int, ...]
    motion_flow_layers: tuple[int, int]
    motion_out_channels: int
    hidden_size: int
    gru_kernels: Sequence[int | tuple[int, int]]
    gru_paddings: Sequence[int | tuple[int, int]]
    flow_head_size: int
    convex_upsampling: bool
    corr_levels: int = 4


_LARGE = _RaftConfig(
    block=ResidualBlock,
    feature_layers=(64, 64, 96, 128, 256),
    feature_norm=nn.InstanceNorm2d,
    context_layers=(64, 64, 96, 128, 256),
    context_norm=nn.BatchNorm2d,
    corr_radius=4,
    motion_corr_layers=(256, 192),
    motion_flow_layers=(128, 64),
    motion_out_channels=128,
    hidden_size=128,
    gru_kernels=((1, 5), (5, 1)),
    gru_paddings=((0, 2), (2, 0)),
    flow_head_size=256,
    convex_upsampling=True,
)

_SMALL = _RaftConfig(
    block=BottleneckBlock,
    feature_layers=(32, 32, 64, 96, 128),
    feature_norm=nn.InstanceNorm2d,
    context_layers=(32, 32, 64, 96, 160),
    context_norm=None,
    corr_radius=3,
    motion_corr_layers=(96,),
    motion_flow_layers=(64, 32),
    motion_out_channels=82,
    hidden_size=96,
    gru_kernels=(3,),
    gru_paddings=(1,),
    flow_head_size=128,
    convex_upsampling=False,
)

_PARTS = ("feature_encoder", "context_encoder", "corr_block", "update_block", "mask_predictor")


def _assemble(config: _RaftConfig, **parts: nn.Module | None) -> RAFT:
    """RAFT in ``config``'s configuration; ``parts`` replace the default feature/context encoder, correlation block,
    update block or mask predictor (built in this order, the reference's, so that seeded models start alike)."""
    if "num_classes" in parts:
        raise TypeError("RAFT predicts optical flow and has no classes: num_classes does not apply to it")
    unknown = set(parts) - set(_PARTS)
    if unknown:
        raise TypeError(f"Unexpected keyword argument(s) {sorted(unknown)} for RAFT; it takes the parts {_PARTS}")
    feature_encoder = parts.get("feature_encoder")
    if feature_encoder is None:
        feature_encoder = FeatureEncoder(
            block=config.block, layers=config.feature_layers, norm_layer=config.feature_norm
        )
    context_encoder = parts.get("context_encoder")
    if context_encoder is None:
        context_encoder = FeatureEncoder(
            block=config.block, layers=config.context_layers, norm_layer=config.context_norm
        )
    corr_block = parts.get("corr_block")
    if corr_block is None:
        corr_block = CorrBlock(num_levels=config.corr_levels, radius=config.corr_radius)
    update_block = parts.get("update_block")
    if update_block is None:
        motion_encoder = MotionEncoder(
            in_channels_corr=corr_block.out_channels,
            corr_layers=config.motion_corr_layers,
            flow_layers=config.motion_flow_layers,
            out_channels=config.motion_out_channels,
        )
        context_channels = config.context_layers[-1] - config.hidden_size
        recurrent_block = RecurrentBlock(
            input_size=motion_encoder.out_channels + context_channels,
            hidden_size=config.hidden_size,
            kernel_size=config.gru_kernels,
            padding=config.gru_paddings,
        )
        flow_head = FlowHead(in_channels=config.hidden_size, hidden_size=config.flow_head_size)
        update_block = UpdateBlock(motion_encoder=motion_encoder, recurrent_block=recurrent_block, flow_head=flow_head)
    mask_predictor = parts.get("mask_predictor")
    if mask_predictor is None and config.convex_upsampling:
        mask_predictor = MaskPredictor(in_channels=config.hidden_size, hidden_size=256, multiplier=0.25)
    return RAFT(
        feature_encoder=feature_encoder,
        context_encoder=context_encoder,
        corr_block=corr_block,
        update_block=update_block,
        mask_predictor=mask_predictor,
    )


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------

_URL = "https://download.pytorch.org/models/"
_ORIGINAL = "https://github.com/princeton-vl/RAFT"  # weights ported from the paper's code
_RETRAINED = "https://github.com/pytorch/vision/tree/main/references/optical_flow"

# The training stages the entry names spell: C_T, then SKHT, then K.
_C_T = "FlyingChairs, then FlyingThings3D"
_SKHT = _C_T + ", then fine-tuned on Sintel (a mix of Sintel, KITTI flow, HD1K and FlyingThings3D's clean pass)"
_SKHT_K = _SKHT + ", then on KITTI flow"


def _docs(recipe: str, stages: str) -> str:
    origin = "ported from the original paper" if recipe == _ORIGINAL else "trained from scratch"
    return f"These weights were {origin}; trained on {stages}."


# Per model: parameters, GFLOPS and checkpoint MB, the same for all its entries.
_SIZES = {"raft_large": (5257536, 211.007, 20.129), "raft_small": (990162, 47.655, 3.821)}


def _entry(model: str, file: str, recipe: str, stages: str, metrics: dict[str, dict[str, float]]) -> Any:
    params, gflops, file_mb = _SIZES[model]
    docs = _docs(recipe, stages)
    return flow_entry(
        f"{_URL}{model}_{file}",
        params=params,
        metrics=metrics,
        gflops=gflops,
        file_mb=file_mb,
        recipe=recipe,
        docs=docs,
    )


def _train_metrics(clean: float, final: float, kitti_epe: float, kitti_fl: float) -> dict[str, dict[str, float]]:
    """Errors on the training splits of Sintel (both passes) and KITTI, for weights that never saw them."""
    return {
        "Sintel-Train-Cleanpass": {"epe": clean},
        "Sintel-Train-Finalpass": {"epe": final},
        "Kitti-Train": {"per_image_epe": kitti_epe, "fl_all": kitti_fl},
    }


def _sintel_test(clean: float, final: float) -> dict[str, dict[str, float]]:
    return {"Sintel-Test-Cleanpass": {"epe": clean}, "Sintel-Test-Finalpass": {"epe": final}}


class Raft_Large_Weights(WeightsEnum):
    """raft_large weights. Metrics: ``epe``, the end-point error in pixels averaged over all pixels;
    ``per_image_epe``, the same averaged per image first (KITTI's "Fl-epe"); ``fl_all``, KITTI's leaderboard
    metric, the percentage of pixels whose error exceeds both 3 pixels and 5% of the true flow's length."""

    C_T_V1 = _entry(
        "raft_large", "C_T_V1-22a6c225.pth", _ORIGINAL, _C_T, _train_metrics(1.4411, 2.7894, 5.0172, 17.4506)
    )
    C_T_V2 = _entry(
        "raft_large",
        "C_T_V2-1bb1363a.pth",
        _RETRAINED,
        _C_T,
        _train_metrics(1.3822, 2.7161, 4.5118, 16.0679),
    )
    C_T_SKHT_V1 = _entry(
        "raft_large",
        "C_T_SKHT_V1-0b8c9e55.pth",
        _ORIGINAL,
        _SKHT,
        _sintel_test(1.94, 3.18),
    )
    C_T_SKHT_V2 = _entry(
        "raft_large",
        "C_T_SKHT_V2-ff5fadd5.pth",
        _RETRAINED,
        _SKHT,
        _sintel_test(1.819, 3.067),
    )
    C_T_SKHT_K_V1 = _entry(
        "raft_large",
        "C_T_SKHT_K_V1-4a6a5039.pth",
        _ORIGINAL,
        _SKHT_K,
        {"Kitti-Test": {"fl_all": 5.10}},
    )
    C_T_SKHT_K_V2 = _entry(
        "raft_large",
        "C_T_SKHT_K_V2-b5c70766.pth",
        _RETRAINED,
        _SKHT_K,
        {"Kitti-Test": {"fl_all": 5.19}},
    )
    DEFAULT = C_T_SKHT_V2


class Raft_Small_Weights(WeightsEnum):
    """raft_small weights; the metrics read as ``Raft_Large_Weights``'s."""

    C_T_V1 = _entry(
        "raft_small", "C_T_V1-ad48884c.pth", _ORIGINAL, _C_T, _train_metrics(2.1231, 3.2790, 7.6557, 25.2801)
    )
    C_T_V2 = _entry(
        "raft_small",
        "C_T_V2-01064c6d.pth",
        _RETRAINED,
        _C_T,
        _train_metrics(1.9901, 3.2831, 7.5978, 25.2369),
    )
    DEFAULT = C_T_V2


# --------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------


@register_model(task="optical_flow", weights=Raft_Large_Weights, legacy_weights="C_T_SKHT_V2")
def raft_large(
    *, weights: Raft_Large_Weights | str | Path | None = None, progress: bool = True, **parts: nn.Module
) -> RAFT:
    """RAFT with residual encoders, a 9x9 correlation window, two separable GRUs and convex upsampling (5.3M params).

    Args:
        weights: a ``Raft_Large_Weights`` member, its name, None, or the path of a local checkpoint.
        progress: show a download progress bar.
        **parts: modules replacing the default ``feature_encoder``, ``context_encoder``, ``corr_block``,
            ``update_block`` or ``mask_predictor``.
    """
    return build_model(_assemble, weights, progress, config=_LARGE, **parts)


@register_model(task="optical_flow", weights=Raft_Small_Weights, legacy_weights="C_T_V2")
def raft_small(
    *, weights: Raft_Small_Weights | str | Path | None = None, progress: bool = True, **parts: nn.Module
) -> RAFT:
    """RAFT with bottleneck encoders, a 7x7 correlation window, one 3x3 GRU and bilinear upsampling (1.0M params);
    arguments as ``raft_large``."""
    return build_model(_assemble, weights, progress, config=_SMALL, **parts)
