"""A batch of images of different sizes, padded into one tensor, with each image's size before padding."""

from __future__ import annotations

import torch


class ImageList:
    """Images padded to a common size in ``tensors`` (``(N, C, H, W)``), with each one's own ``(height, width)``.

    Detection heads need the padded batch for the convolutions and the true sizes to clip boxes to each image.
    """

    def __init__(self, tensors: torch.Tensor, image_sizes: list[tuple[int, int]]) -> None:
        self.tensors = tensors
        self.image_sizes = image_sizes

    def to(self, device: torch.device | str) -> ImageList:
        """The same batch with its tensor moved to ``device``."""
        return ImageList(self.tensors.to(device), self.image_sizes)
