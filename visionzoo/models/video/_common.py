"""What every video classifier shares: the input check at its public boundary."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from ...transforms.functional import _count_non_finite


def check_clip_batch(x: Any, model: str, channels: int = 3, allow_images: bool = False) -> None:
    """Validate a batch of clips ``(N, C, T, H, W)`` (what ``VideoClassification`` returns) before the forward.

    Args:
        model: the model's name, for the messages.
        allow_images: also accept ``(N, C, H, W)`` batches of images (MViT reads them as one-frame clips).

    Raises:
        TypeError: ``x`` is not a floating point tensor.
        ValueError: a wrong number of dimensions or channels, an empty dimension, or NaN/infinite values (CPU
            inputs only: scanning a device tensor would wait for the device).
    """
    if isinstance(x, torch.fx.Proxy):
        return  # symbolic tracing: the real tensors are checked later
    layout = f"(N, {channels}, T, H, W)"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{model} expects a torch.Tensor of clips {layout}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{model} expects a floating point tensor, got {x.dtype}; "
            "preprocess clips with weights.transforms() (it converts uint8 frames to float and normalises)"
        )
    ranks = (4, 5) if allow_images else (5,)
    if x.dim() not in ranks:
        hint = " (a single clip? add the batch dimension with x.unsqueeze(0))" if x.dim() == 4 else ""
        raise ValueError(f"{model} expects a 5-D batch of clips {layout}, got shape {tuple(x.shape)}{hint}")
    if x.shape[1] != channels:
        hint = " (frames first? VideoClassification turns (N, T, C, H, W) into (N, C, T, H, W))"
        raise ValueError(
            f"{model} expects {channels} channels in dimension 1, got {x.shape[1]} (input shape {tuple(x.shape)})"
            + (hint if x.dim() == 5 and x.shape[2] == channels else "")
        )
    if x.numel() == 0:
        raise ValueError(f"{model} got an empty input (shape {tuple(x.shape)}); pass at least one frame")
    bad = _count_non_finite(x)
    if bad:
        raise ValueError(f"{model} got {bad} NaN or infinite values in its input (shape {tuple(x.shape)})")
