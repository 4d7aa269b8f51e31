"""Multi-scale RoIAlign: each RoI is pooled from the pyramid level that suits its size (FPN, Lin et al.,
https://arxiv.org/abs/1612.03144, eq. 1)."""

from __future__ import annotations

import math

import torch
import torch.fx
from torch import Tensor, nn

from .roi_align import roi_align

__all__ = ["LevelMapper", "MultiScaleRoIAlign"]


class LevelMapper:
    """Assigns each box to a pyramid level: ``floor(canonical_level + log2(sqrt(area) / canonical_scale) + eps)``,
    clamped to ``[k_min, k_max]`` and returned relative to ``k_min``."""

    def __init__(
        self, k_min: int, k_max: int, canonical_scale: int = 224, canonical_level: int = 4, eps: float = 1e-6
    ) -> None:
        self.k_min = k_min
        self.k_max = k_max
        self.s0 = canonical_scale
        self.lvl0 = canonical_level
        self.eps = eps

    def __call__(self, boxlists: list[Tensor]) -> Tensor:
        boxes = torch.cat(boxlists)
        scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        eps = torch.tensor(self.eps, dtype=scale.dtype)
        levels = torch.floor(self.lvl0 + torch.log2(scale / self.s0) + eps).clamp(min=self.k_min, max=self.k_max)
        return levels.to(torch.int64) - self.k_min


def _as_number(size: int | torch.SymInt) -> int:
    """A size as a number; a symbolic one (``torch.export`` with free image sizes) by its value in the traced
    example, without a guard: the scales it gives are the backbone's strides, the same for every image size."""
    return size if isinstance(size, int) else int(size.node.hint)


def _level_scale(feature: Tensor, image_size: tuple[int, int]) -> float:
    """The power of two closest to the ratio of the feature map's height to the image's (float32 log2, as the
    reference computes it)."""
    ratio = float(_as_number(feature.shape[-2])) / float(image_size[0])
    return 2 ** float(torch.tensor(ratio).log2().round())


def _setup_scales(
    features: list[Tensor], image_shapes: list[tuple[int, int]], canonical_scale: int, canonical_level: int
) -> tuple[list[float], LevelMapper]:
    if not image_shapes:
        raise ValueError("MultiScaleRoIAlign: image_shapes must not be empty")
    largest = (max(_as_number(s[0]) for s in image_shapes), max(_as_number(s[1]) for s in image_shapes))
    scales = [_level_scale(f, largest) for f in features]
    # Levels halve the resolution each step: the finest and coarsest scales give the range of levels.
    k_min = int(-torch.log2(torch.tensor(scales[0], dtype=torch.float32)).item())
    k_max = int(-torch.log2(torch.tensor(scales[-1], dtype=torch.float32)).item())
    return scales, LevelMapper(k_min, k_max, canonical_scale=canonical_scale, canonical_level=canonical_level)


@torch.fx.wrap
def _multiscale_roi_align(
    features: list[Tensor],
    boxes: list[Tensor],
    output_size: tuple[int, int],
    sampling_ratio: int,
    scales: list[float],
    mapper: LevelMapper,
) -> Tensor:
    rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
    if len(features) == 1:
        return roi_align(features[0], rois, output_size, scales[0], sampling_ratio)
    levels = mapper(boxes)
    first = features[0]
    result = first.new_zeros((rois.shape[0], first.shape[1], *output_size))
    for level, (feature, scale) in enumerate(zip(features, scales)):
        in_level = torch.where(levels == level)[0]
        pooled = roi_align(feature, rois[in_level], output_size, scale, sampling_ratio)
        result[in_level] = pooled.to(result.dtype)  # levels may differ in dtype under autocast
    return result


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign over a feature pyramid, each box pooled from the level its size maps to (FPN eq. 1).

    Args:
        featmap_names: the keys of the feature maps to pool from (others are ignored, and so are names that a
            given input lacks); they must halve in resolution from one to the next.
        output_size: bins per RoI.
        sampling_ratio: see :func:`~visionzoo.ops.roi_align`.
        canonical_scale: box size (sqrt of area) that maps to ``canonical_level``.
        canonical_level: the pyramid level ``k0`` of eq. 1.

    The scales of the levels are inferred from the first call's feature and image sizes and kept (``scales``,
    ``map_levels``), as in the reference; set them to ``None`` to infer them again.
    """

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int | tuple[int] | list[int],
        sampling_ratio: int,
        *,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        if isinstance(featmap_names, str) or not all(isinstance(n, str) for n in featmap_names):
            raise TypeError(f"MultiScaleRoIAlign: featmap_names must be a list of str, got {featmap_names!r}")
        if isinstance(output_size, int):
            output_size = (output_size, output_size)
        self.featmap_names = featmap_names
        self.sampling_ratio = sampling_ratio
        self.output_size = tuple(output_size)
        self.scales: list[float] | None = None
        self.map_levels: LevelMapper | None = None
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        """Pools ``boxes`` (one ``Tensor[L, 4]`` per image, in image coordinates) from the levels of ``x`` named
        in ``featmap_names``; ``image_shapes`` are the images' (height, width) before the backbone.

        Returns:
            ``Tensor[sum L, C, *output_size]``.
        """
        features = [v for k, v in x.items() if k in self.featmap_names]
        if not features:
            raise ValueError(
                f"MultiScaleRoIAlign: none of the feature maps {self.featmap_names} is among the inputs {list(x)}"
            )
        if not isinstance(boxes, (list, tuple)) or not boxes or not all(isinstance(b, Tensor) for b in boxes):
            raise TypeError("MultiScaleRoIAlign: boxes must be a non-empty list of Tensor[L, 4], one per image")
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        if len(features) > len(self.scales) or not all(math.isfinite(s) for s in self.scales):
            raise ValueError(f"MultiScaleRoIAlign: {len(features)} feature maps but scales {self.scales}")
        return _multiscale_roi_align(
            features, list(boxes), self.output_size, self.sampling_ratio, self.scales, self.map_levels
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})"
        )
