"""Colour-coding of optical flow (``visionzoo.utils.flow_to_image``).

The hue says the direction of motion and the saturation its length, on the colour wheel of Baker et al., "A Database
and Evaluation Methodology for Optical Flow" (ICCV 2007), the convention of the Middlebury and Sintel benchmarks.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["flow_to_image"]

# The wheel's six arcs, red -> yellow -> green -> cyan -> blue -> magenta -> red: (number of colours, the channel
# held at 255, the channel that ramps, whether it ramps up from 0 or down from 255). The arc lengths follow the
# eye's sensitivity (the Middlebury code's constants), so equal angles look about equally different.
_ARCS = ((15, 0, 1, True), (6, 1, 0, False), (4, 1, 2, True), (11, 2, 1, False), (13, 2, 0, True), (6, 0, 2, False))


def _colour_wheel() -> Tensor:
    """The wheel as ``(55, 3)`` float RGB values in [0, 255]."""
    arcs = []
    for length, held, ramped, rising in _ARCS:
        arc = torch.zeros(length, 3)
        arc[:, held] = 255
        ramp = torch.floor(255 * torch.arange(length) / length)
        arc[:, ramped] = ramp if rising else 255 - ramp
        arcs.append(arc)
    return torch.cat(arcs)


def flow_to_image(flow: Tensor) -> Tensor:
    """Colour-code a flow: ``(2, H, W)`` or ``(N, 2, H, W)`` float32 -> ``uint8`` RGB ``(3, H, W)`` or ``(N, 3, H, W)``.

    Lengths are scaled by the longest flow vector of the whole input (of the batch, when batched), which gets the
    fully saturated colour; zero flow is white.

    Raises:
        ValueError: ``flow`` is not float32, has the wrong shape, or holds NaN or infinite values.
        TypeError: ``flow`` is not a tensor.
    """
    if not isinstance(flow, Tensor):
        raise TypeError(f"flow_to_image expects a torch.Tensor, got {type(flow).__name__}")
    if flow.dtype != torch.float32:
        raise ValueError(f"flow_to_image expects a torch.float32 flow, got {flow.dtype}")
    if flow.dim() not in (3, 4) or flow.shape[-3] != 2:
        raise ValueError(f"flow_to_image expects a flow of shape (2, H, W) or (N, 2, H, W), got {tuple(flow.shape)}")
    if not torch.isfinite(flow).all():
        raise ValueError("flow_to_image got NaN or infinite values in the flow")
    batch = flow if flow.dim() == 4 else flow[None]

    longest = batch.pow(2).sum(dim=1).sqrt().max()
    unit = batch / (longest + torch.finfo(batch.dtype).eps)  # every vector now at most 1 long
    with torch.no_grad():
        image = _colour_unit_flow(unit)
    return image if flow.dim() == 4 else image[0]


def _colour_unit_flow(unit: Tensor) -> Tensor:
    """``(N, 2, H, W)`` flow of lengths in [0, 1] -> ``(N, 3, H, W)`` uint8 colours."""
    wheel = _colour_wheel().to(unit.device) / 255.0
    colours = wheel.shape[0]
    length = unit.pow(2).sum(dim=1).sqrt()
    # The angle of the reversed vector, in (-1, 1] half-turns, mapped onto the wheel's [0, colours - 1].
    position = (torch.atan2(-unit[:, 1], -unit[:, 0]) / torch.pi + 1) / 2 * (colours - 1)
    below = torch.floor(position).long()
    above = torch.where(below + 1 == colours, 0, below + 1)
    weight = (position - below)[..., None]
    hue = (1 - weight) * wheel[below] + weight * wheel[above]  # (N, H, W, 3)
    saturated = 1 - length[..., None] * (1 - hue)  # short vectors fade to white
    return torch.floor(255 * saturated).to(torch.uint8).permute(0, 3, 1, 2).contiguous()
