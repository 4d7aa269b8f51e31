"""Anchors: the reference boxes that detectors score and regress, at every feature-map position.

:class:`AnchorGenerator` places pixel-sized anchors for region proposal networks (and RetinaNet);
:class:`DefaultBoxGenerator` places SSD's default boxes, sized as fractions of the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .image_list import ImageList

__all__ = ["AnchorGenerator", "DefaultBoxGenerator"]


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


class DefaultBoxGenerator(nn.Module):
    """SSD's default boxes (Liu et al. 2016, section 2.2) for every cell of each feature map.

    Feature map ``k`` gets a scale ``s_k`` (a fraction of the image side). At each cell it places a square of
    side ``s_k``, a square of side ``sqrt(s_k * s_{k+1})``, and for each aspect ratio ``r`` of that map a box
    ``s_k * sqrt(r)`` wide and ``s_k / sqrt(r)`` high plus its transpose: ``2 + 2 * len(aspect_ratios[k])``
    boxes per cell, centred on the cell.

    Args:
        aspect_ratios: per feature map, the aspect ratios (each adds two boxes).
        min_ratio, max_ratio: without ``scales``, the scales run evenly from ``min_ratio`` to ``max_ratio`` over
            the feature maps, followed by 1.0 (the extra scale the last map's second square needs).
        scales: the ``len(aspect_ratios) + 1`` scales, given explicitly.
        steps: per feature map, its stride in pixels; the cells are then ``step`` apart in the image (SSD300's
            layout). Without it, the cells divide the image evenly.
        clip: clip the boxes' widths and heights (not their corners) to ``[0, 1]`` of the image.

    Raises:
        ValueError: no aspect ratios, ``steps`` or ``scales`` of the wrong length, or a scale that is not
            positive.
    """

    def __init__(
        self,
        aspect_ratios: Sequence[Sequence[float]],
        min_ratio: float = 0.15,
        max_ratio: float = 0.9,
        scales: Sequence[float] | None = None,
        steps: Sequence[int] | None = None,
        clip: bool = True,
    ) -> None:
        super().__init__()
        if not aspect_ratios:
            raise ValueError("aspect_ratios must hold one sequence of ratios per feature map, got none")
        num_maps = len(aspect_ratios)
        if steps is not None and len(steps) != num_maps:
            raise ValueError(f"aspect_ratios and steps should have the same length, got {num_maps} and {len(steps)}")
        if scales is None:
            if num_maps > 1:
                # the paper's s_min + (s_max - s_min) * k / (m - 1), evaluated in that order
                scales = [min_ratio + (max_ratio - min_ratio) * k / (num_maps - 1.0) for k in range(num_maps)]
                scales.append(1.0)
            else:
                scales = [min_ratio, max_ratio]
        if len(scales) < num_maps + 1 or any(s <= 0 for s in scales):
            raise ValueError(
                f"scales must hold {num_maps + 1} positive numbers (one per feature map and one more), got {scales!r}"
            )
        self.aspect_ratios = aspect_ratios
        self.steps = steps
        self.clip = clip
        self.scales = list(scales)
        self._wh_pairs = [self._box_sizes(k) for k in range(num_maps)]

    def _box_sizes(self, k: int) -> torch.Tensor:
        """The ``(width, height)`` of the boxes of feature map ``k``, as fractions of the image, ``(B, 2)``."""
        scale = self.scales[k]
        between = math.sqrt(scale * self.scales[k + 1])
        sizes = [[scale, scale], [between, between]]
        for ratio in self.aspect_ratios[k]:
            wide, high = scale * math.sqrt(ratio), scale / math.sqrt(ratio)
            sizes += [[wide, high], [high, wide]]
        # On the CPU even when the model is built on ``meta`` (for loading): a constant, not a buffer.
        return torch.tensor(sizes, dtype=torch.float32, device="cpu")

    def num_anchors_per_location(self) -> list[int]:
        """How many boxes each feature map places at one cell."""
        return [2 + 2 * len(ratios) for ratios in self.aspect_ratios]

    def _grid_default_boxes(
        self, grid_sizes: list[list[int]], image_size: list[int], dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Every default box as ``(cx, cy, w, h)`` fractions of the image, ``(sum H_k * W_k * B_k, 4)``: cells in
        row-major order, the ``B_k`` boxes of a cell together."""
        boxes = []
        for k, (rows, cols) in enumerate(grid_sizes):
            if self.steps is not None:
                cells_y, cells_x = image_size[0] / self.steps[k], image_size[1] / self.steps[k]
            else:
                cells_y, cells_x = rows, cols
            centre_x = ((torch.arange(cols) + 0.5) / cells_x).to(dtype)
            centre_y = ((torch.arange(rows) + 0.5) / cells_y).to(dtype)
            y, x = torch.meshgrid(centre_y, centre_x, indexing="ij")
            sizes = self._wh_pairs[k].clamp(min=0, max=1) if self.clip else self._wh_pairs[k]
            centres = torch.stack((x.reshape(-1), y.reshape(-1)), dim=1)  # (cells, 2)
            per_cell = torch.cat(
                (
                    centres[:, None].expand(-1, len(sizes), 2),
                    sizes.to(dtype)[None].expand(len(centres), -1, 2),
                ),
                dim=2,
            )
            boxes.append(per_cell.reshape(-1, 4))
        return torch.cat(boxes)

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """The default boxes in pixels of the batch (x1 y1 x2 y2), once per image: a list of ``(num_boxes, 4)``.

        Raises:
            ValueError: a number of feature maps other than the number of ``aspect_ratios``.
        """
        if len(feature_maps) != len(self.aspect_ratios):
            raise ValueError(
                f"got {len(feature_maps)} feature maps for a DefaultBoxGenerator built for "
                f"{len(self.aspect_ratios)} (aspect_ratios needs one entry per feature map)"
            )
        grid_sizes = [list(feature.shape[-2:]) for feature in feature_maps]
        image_size = list(image_list.tensors.shape[-2:])
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        boxes = self._grid_default_boxes(grid_sizes, image_size, dtype=dtype).to(device)
        image_wh = torch.tensor([image_size[1], image_size[0]], device=device)
        centres, sizes = boxes[:, :2], boxes[:, 2:]
        corners = torch.cat(((centres - 0.5 * sizes) * image_wh, (centres + 0.5 * sizes) * image_wh), dim=1)
        return [corners for _ in image_list.image_sizes]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(aspect_ratios={self.aspect_ratios}, clip={self.clip}, scales={self.scales}, "
            f"steps={self.steps})"
        )
