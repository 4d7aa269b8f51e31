"""Anchors: the reference boxes that region proposal networks score and regress, at every feature-map position."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .image_list import ImageList

__all__ = ["AnchorGenerator"]


class AnchorGenerator(nn.Module):
    """Anchors of several sizes and aspect ratios centred on every cell of each feature map.

    For feature map ``i`` it places ``len(sizes[i]) * len(aspect_ratios[i])`` anchors at each position; an aspect
    ratio is height / width and an anchor of size ``s`` covers about ``s * s`` pixels. Positions are the feature
    map's cells scaled by its stride in the padded image batch.

    Args:
        sizes: per feature map, the anchor sizes in pixels. A flat sequence means one size per feature map.
        aspect_ratios: per feature map, the aspect ratios. A flat sequence is used for every feature map.

    Raises:
        ValueError: ``sizes`` and ``aspect_ratios`` describe different numbers of feature maps, or a size or a
            ratio is not positive.
    """

    def __init__(
        self,
        sizes: Sequence[Sequence[int]] | Sequence[int] = ((128, 256, 512),),
        aspect_ratios: Sequence[Sequence[float]] | Sequence[float] = ((0.5, 1.0, 2.0),),
    ) -> None:
        super().__init__()
        if not sizes or not aspect_ratios:
            raise ValueError(f"sizes and aspect_ratios must not be empty, got {sizes!r} and {aspect_ratios!r}")
        if not isinstance(sizes[0], (list, tuple)):
            sizes = tuple((size,) for size in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            raise ValueError(
                f"sizes and aspect_ratios must describe as many feature maps, got {len(sizes)} and {len(aspect_ratios)}"
            )
        for name, values in (("sizes", sizes), ("aspect_ratios", aspect_ratios)):
            if any(not level or any(v <= 0 for v in level) for level in values):
                raise ValueError(
                    f"every entry of {name} must be a non-empty sequence of positive numbers, got {values!r}"
                )
        self.sizes = sizes
        self.aspect_ratios = aspect_ratios
        self.cell_anchors = [self.generate_anchors(s, r) for s, r in zip(sizes, aspect_ratios)]

    def generate_anchors(
        self,
        scales: Sequence[int],
        aspect_ratios: Sequence[float],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """The anchors of one feature map centred on the origin, ``(len(ratios) * len(scales), 4)`` x1 y1 x2 y2,
        ratio-major, rounded to whole pixels."""
        scales = torch.as_tensor(scales, dtype=dtype, device=device)
        aspect_ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
        height_factor = torch.sqrt(aspect_ratios)  # h / w = ratio with h * w = s * s
        widths = ((1 / height_factor)[:, None] * scales[None, :]).flatten()
        heights = (height_factor[:, None] * scales[None, :]).flatten()
        return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()

    def set_cell_anchors(self, dtype: torch.dtype, device: torch.device) -> None:
        """Move the cell anchors to ``dtype`` and ``device``."""
        self.cell_anchors = [anchors.to(dtype=dtype, device=device) for anchors in self.cell_anchors]

    def num_anchors_per_location(self) -> list[int]:
        """How many anchors each feature map places at one position."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(self, grid_sizes: list[list[int]], strides: list[list[torch.Tensor]]) -> list[torch.Tensor]:
        """Per feature map, the cell anchors shifted to every position, ``(H * W * A, 4)``: row-major positions,
        the ``A`` anchors of a position together."""
        if not len(grid_sizes) == len(strides) == len(self.cell_anchors):
            raise ValueError(
                f"got {len(grid_sizes)} feature maps for an AnchorGenerator built for {len(self.cell_anchors)} "
                "(sizes and aspect_ratios need one entry per feature map)"
            )
        anchors = []
        for (height, width), (stride_y, stride_x), cell in zip(grid_sizes, strides, self.cell_anchors):
            # Whole-pixel shifts, computed in integers and added to the cell anchors in their dtype.
            xs = torch.arange(width, device=cell.device) * stride_x
            ys = torch.arange(height, device=cell.device) * stride_y
            y, x = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack((x, y, x, y), dim=-1).reshape(-1, 1, 4)
            anchors.append((shifts.to(torch.int32) + cell[None]).reshape(-1, 4))
        return anchors

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """The anchors of every feature map, concatenated, once per image: a list of ``(sum H_i * W_i * A_i, 4)``."""
        if len(feature_maps) != len(self.cell_anchors):
            raise ValueError(
                f"got {len(feature_maps)} feature maps for an AnchorGenerator built for {len(self.cell_anchors)} "
                "(sizes and aspect_ratios need one entry per feature map)"
            )
        image_height, image_width = image_list.tensors.shape[-2:]
        grid_sizes = [list(feature.shape[-2:]) for feature in feature_maps]
        device = feature_maps[0].device
        strides = [
            [torch.tensor(image_height // h, device=device), torch.tensor(image_width // w, device=device)]
            for h, w in grid_sizes
        ]
        self.set_cell_anchors(feature_maps[0].dtype, device)
        levels = torch.cat(self.grid_anchors(grid_sizes, strides))
        return [levels.clone() for _ in image_list.image_sizes]
