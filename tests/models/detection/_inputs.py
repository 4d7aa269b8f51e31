"""Inputs the detector parity tests share: two images of different sizes and orientations, and their targets."""

from __future__ import annotations

import torch


def two_images(seed: int = 1) -> list[torch.Tensor]:
    """A landscape 240x320 and a portrait 300x200 random image (values in [0, 1])."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, 240, 320, generator=generator), torch.rand(3, 300, 200, generator=generator)]


def two_targets() -> list[dict[str, torch.Tensor]]:
    """Boxes and labels for :func:`two_images`: two objects in the first image, one in the second."""
    return [
        {
            "boxes": torch.tensor([[10.0, 20.0, 120.0, 150.0], [150.0, 30.0, 300.0, 200.0]]),
            "labels": torch.tensor([1, 5]),
        },
        {"boxes": torch.tensor([[20.0, 40.0, 180.0, 260.0]]), "labels": torch.tensor([3])},
    ]
