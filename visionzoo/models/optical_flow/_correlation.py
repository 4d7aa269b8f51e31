"""RAFT's all-pairs correlation: one dot product per pair of feature-map positions, pooled into a pyramid and
read back in a square window around where each pixel is currently believed to have moved."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CorrBlock", "coords_grid", "sample_at_pixels"]


def coords_grid(batch_size: int, height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """Pixel coordinates ``(N, 2, H, W)``: channel 0 holds x (the column), channel 1 holds y (the row)."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=torch.float32),
        torch.arange(width, device=device, dtype=torch.float32),
        indexing="ij",
    )
    return torch.stack((xs, ys)).expand(batch_size, 2, height, width).clone()


def sample_at_pixels(image: Tensor, points: Tensor) -> Tensor:
    """Bilinear samples of ``image`` ``(N, C, H, W)`` at ``points`` ``(N, h, w, 2)`` given in pixels as (x, y).

    Pixel ``0`` and ``size - 1`` are the centres of the border pixels (``align_corners=True``); points outside the
    image read zeros.
    """
    height, width = image.shape[-2:]
    # Pixels -> grid_sample's [-1, 1]: x * 2 / (size - 1) - 1, per axis.
    scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], dtype=points.dtype, device=points.device)
    return F.grid_sample(image, points * scale - 1, mode="bilinear", align_corners=True)


class CorrBlock(nn.Module):
    """The correlation pyramid of two feature maps and the look-up into it (paper section 3.2).

    ``build_pyramid`` correlates every position of the first map with every position of the second and average-pools
    the second map's two dimensions ``num_levels - 1`` times; ``index_pyramid`` then reads, for each position of the
    first map and each level, the ``(2 * radius + 1)**2`` correlations in a square window (the paper's "1-norm" is a
    typo for the infinity norm) centred on the position's current match.

    Args:
        num_levels: levels of the pyramid (the finest one included).
        radius: half-width of the window read at each level.

    Attributes:
        out_channels: ``num_levels * (2 * radius + 1) ** 2``, the channels of ``index_pyramid``'s output.
        corr_pyramid: the levels built by the last ``build_pyramid``, each ``(N * h * w, 1, h_l, w_l)``.
    """

    def __init__(self, *, num_levels: int = 4, radius: int = 4) -> None:
        super().__init__()
        if num_levels < 1 or radius < 0:
            raise ValueError(f"CorrBlock needs num_levels >= 1 and radius >= 0, got {num_levels} and {radius}")
        self.num_levels = num_levels
        self.radius = radius
        self.out_channels = num_levels * (2 * radius + 1) ** 2
        self.corr_pyramid: list[Tensor] = []

    def build_pyramid(self, fmap1: Tensor, fmap2: Tensor) -> None:
        """Correlate ``fmap1`` with ``fmap2`` (both ``(N, C, h, w)``) and keep the pooled pyramid for look-ups.

        Raises:
            ValueError: the maps differ in shape, or are too small for ``num_levels`` (the coarsest level needs
                at least 2 positions per side for bilinear look-ups to make sense).
        """
        if fmap1.shape != fmap2.shape:
            raise ValueError(
                f"The two feature maps must have the same shape, got {tuple(fmap1.shape)} and {tuple(fmap2.shape)}"
            )
        smallest = 2**self.num_levels  # 2 positions left after num_levels - 1 halvings
        if min(fmap1.shape[-2:]) < smallest:
            raise ValueError(
                f"Feature maps of {fmap1.shape[-2]}x{fmap1.shape[-1]} are too small for a {self.num_levels}-level "
                f"correlation pyramid: each side needs at least {smallest} positions, i.e. input images of at least "
                f"{8 * smallest}x{8 * smallest} pixels (the encoders downsample by 8)"
            )
        batch_size, channels, height, width = fmap1.shape
        # Scaling the (small) feature map instead of the (h*w)^2 volume: same dot products / sqrt(C).
        left = fmap1.flatten(2).transpose(1, 2) / math.sqrt(channels)
        volume = torch.bmm(left, fmap2.flatten(2))  # (N, h*w, h*w): rows index fmap1's positions
        level = volume.reshape(batch_size * height * width, 1, height, width)
        self.corr_pyramid = [level]
        for _ in range(self.num_levels - 1):
            level = F.avg_pool2d(level, kernel_size=2, stride=2)
            self.corr_pyramid.append(level)

    def index_pyramid(self, centroids_coords: Tensor) -> Tensor:
        """The correlations around ``centroids_coords`` ``(N, 2, h, w)`` (x, y of each position's match in the
        finest level's pixels), as ``(N, out_channels, h, w)``: level after level, each a window of
        ``(2 * radius + 1)**2`` values."""
        if not self.corr_pyramid:
            raise RuntimeError("CorrBlock.index_pyramid called before build_pyramid")
        batch_size, _, height, width = centroids_coords.shape
        side = 2 * self.radius + 1
        steps = torch.linspace(-self.radius, self.radius, side, device=centroids_coords.device)
        # The window's offsets as (x, y) pairs with the x offset varying slowest: the order of the channels the
        # published weights were trained on (the original implementation's meshgrid put x first).
        offsets = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).view(1, side, side, 2)
        centres = centroids_coords.permute(0, 2, 3, 1).reshape(batch_size * height * width, 1, 1, 2)
        windows = []
        for level, volume in enumerate(self.corr_pyramid):
            window = sample_at_pixels(volume, centres / 2**level + offsets)
            windows.append(window.view(batch_size, height, width, side * side))
        return torch.cat(windows, dim=-1).permute(0, 3, 1, 2).contiguous()
