"""RoIAlign (He et al., Mask R-CNN, https://arxiv.org/abs/1703.06870) and RoIPool (Girshick, Fast R-CNN,
https://arxiv.org/abs/1504.08083) in pure PyTorch.

RoIAlign is linear in the feature map: each output cell averages bilinear samples, each sample a weighted sum of at
most four pixels. We build that map once per call as a sparse matrix (a row per output cell, a column per input
pixel) and apply it to the channels-last feature map in one sparse-dense product, whose transpose autograd uses for
the gradient. Sample positions and weights are computed operation by operation as the reference kernel does, so the
results differ from it only by the rounding of the final sums.

RoIPool takes the maximum over each bin, gathered from a padded window per bin; the gradient reaches the first
maximum in row-major order, as in the reference.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.fx
from torch import Tensor, nn

from ._library import operator

__all__ = ["roi_align", "RoIAlign", "roi_pool", "RoIPool"]

# Entries of the padded per-chunk sampling tables (adaptive RoIAlign) and gathered window elements (RoIPool) kept
# in memory at once; large enough that typical calls take a single chunk.
_CHUNK_ELEMENTS = 1 << 23


def _output_size(output_size: int | Sequence[int], name: str) -> tuple[int, int]:
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"{name}: output_size must be a positive int or a pair of them, got {output_size!r}")
    return size  # type: ignore[return-value]


def _as_rois(boxes: Tensor | Sequence[Tensor], input: Tensor, name: str) -> Tensor:
    """Checks ``input`` and the boxes and returns them as one ``Tensor[K, 5]`` (batch index, x1, y1, x2, y2)."""
    if not isinstance(input, Tensor) or input.dim() != 4:
        shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
        raise ValueError(f"{name}: input must be a Tensor[N, C, H, W], got {shape}")
    if not input.is_floating_point():
        raise TypeError(f"{name}: input must be a floating point tensor, got {input.dtype}")
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                f"{name}: boxes as one tensor must have shape [K, 5] (batch index, x1, y1, x2, y2), "
                f"got {tuple(boxes.shape)}"
            )
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor):
                raise TypeError(f"{name}: boxes[{i}] must be a Tensor[L, 4], got {type(b).__name__}")
            if b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"{name}: boxes[{i}] must have shape [L, 4] (x1, y1, x2, y2), got {tuple(b.shape)}")
        if len(boxes) > input.shape[0]:
            raise ValueError(f"{name}: {len(boxes)} box tensors for a batch of {input.shape[0]} feature maps")
        if not boxes:
            return input.new_zeros((0, 5))
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
    else:
        raise TypeError(f"{name}: boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if rois.dtype != input.dtype:
        raise TypeError(f"{name}: boxes ({rois.dtype}) must have the dtype of input ({input.dtype})")
    if rois.device != input.device:
        raise ValueError(f"{name}: boxes are on {rois.device} but input is on {input.device}")
    if (input.shape[2] == 0 or input.shape[3] == 0) and rois.shape[0]:
        raise ValueError(f"{name}: input has an empty spatial size {tuple(input.shape[2:])}")
    return rois


def _check_roi_values(rois: Tensor, num_images: int, name: str) -> None:
    """Raise unless every RoI is finite, with x1 <= x2, y1 <= y2 and an integer batch index below ``num_images``
    (checked where the RoIs are pooled, since a traced graph holds no checks on values)."""
    index, x1, y1, x2, y2 = rois.unbind(1)
    bad = ~torch.isfinite(rois).all(1) | (index != index.round()) | (index < 0) | (index >= num_images)
    bad |= (x2 < x1) | (y2 < y1)
    if bad.any():
        k = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name}: box {k} {rois[k].tolist()} is invalid: expected a finite (batch index, x1, y1, x2, y2) with "
            f"x1 <= x2, y1 <= y2 and an integer batch index in [0, {num_images - 1}]"
        )


# ----------------------------------------------------------------------------------------------------- RoIAlign


def _divisor(value: Tensor | float, like: Tensor) -> Tensor:
    """``value`` as a tensor on ``like``'s device, so that dividing by it is correctly rounded, as the reference kernels
    divide. On CUDA, torch divides by a Python number by multiplying with its reciprocal, which moves some results by
    one unit in the last place, and a bin edge that lands on a whole pixel then rounds to the next one."""
    return value if isinstance(value, Tensor) else torch.full((), value, dtype=like.dtype, device=like.device)


def _divide(numerator: Tensor, divisor: Tensor | float) -> Tensor:
    return numerator / _divisor(divisor, numerator)


def _axis_samples(
    start: Tensor, bin_size: Tensor, grid: Tensor | int, num_bins: int, max_grid: int, size: int
) -> tuple[Tensor, Tensor]:
    """The pixels and bilinear weights of the samples along one axis, each ``[K, num_bins, max_grid, 2]`` (low and
    high neighbour). Samples past a RoI's own grid (adaptive sampling) and outside ``[-1, size]`` weigh zero."""
    bins = torch.arange(num_bins, device=start.device, dtype=start.dtype)
    steps = torch.arange(max_grid, device=start.device, dtype=start.dtype) + 0.5
    if isinstance(grid, Tensor):
        in_grid = steps[None, :] < grid[:, None]  # [K, G]
        grid = grid.clamp(min=1)[:, None, None]
    else:
        in_grid = None
    # Same operation order as the reference: start + p * bin + ((i + .5) * bin) / grid.
    pos = (start[:, None] + bins * bin_size[:, None])[:, :, None] + _divide(
        (steps * bin_size[:, None])[:, None, :], grid
    )
    valid = (pos >= -1) & (pos <= size)
    if in_grid is not None:
        valid &= in_grid[:, None, :]
        pos = torch.where(valid, pos, 0)
    pos = pos.clamp(min=0)
    low = pos.long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    frac = torch.where(at_edge, 0, pos - low)
    weights = torch.stack([1.0 - frac, frac], dim=-1) * valid[..., None]
    return torch.stack([low, high], dim=-1), weights


def _roi_grid(rois: Tensor, spatial_scale: float, output_size: tuple[int, int], aligned: bool) -> tuple[Tensor, ...]:
    offset = 0.5 if aligned else 0.0
    start_w, start_h, end_w, end_h = (rois[:, 1:] * spatial_scale - offset).unbind(1)
    roi_w, roi_h = end_w - start_w, end_h - start_h
    if not aligned:  # the legacy version pretends that every RoI is at least one pixel wide
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    return start_h, start_w, _divide(roi_h, output_size[0]), _divide(roi_w, output_size[1]), roi_h, roi_w


def _sampling_matrix(
    rois: Tensor,
    num_images: int,
    height: int,
    width: int,
    spatial_scale: float,
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
) -> tuple[Tensor, Tensor | float, Tensor | None]:
    """The sparse ``[K * PH * PW, N * H * W]`` matrix of summed bilinear weights, the per-RoI sample count that
    divides it, and (adaptive sampling only) the order of the RoIs along the matrix rows."""
    ph, pw = output_size
    start_h, start_w, bin_h, bin_w, roi_h, roi_w = _roi_grid(rois, spatial_scale, output_size, aligned)
    image = rois[:, 0].long()
    order = None
    if sampling_ratio > 0:
        grid_h = grid_w = sampling_ratio
        count: Tensor | float = float(sampling_ratio * sampling_ratio)
        chunks = [(0, rois.shape[0], sampling_ratio, sampling_ratio)]
    else:
        # Adaptive: ceil(roi / bins) samples per bin and axis, per RoI. RoIs are sorted by their larger grid side
        # so that each chunk pads its sample tables only to about its own largest grid.
        grid_h, grid_w = torch.ceil(_divide(roi_h, ph)), torch.ceil(_divide(roi_w, pw))
        count = (grid_h * grid_w).clamp(min=1)
        order = torch.argsort(torch.maximum(grid_h, grid_w), descending=True, stable=True)
        start_h, start_w, bin_h, bin_w, grid_h, grid_w, image = (
            t[order] for t in (start_h, start_w, bin_h, bin_w, grid_h, grid_w, image)
        )
        sizes = torch.stack([grid_h, grid_w], 1).clamp(min=1).long().tolist()
        chunks, first = [], 0
        while first < len(sizes):
            side = max(sizes[first])
            stop = first + max(1, _CHUNK_ELEMENTS // (ph * pw * 4 * side * side))
            chunk_h, chunk_w = (max(s) for s in zip(*sizes[first:stop]))
            chunks.append((first, stop, chunk_h, chunk_w))
            first = stop
    rows, cols, vals = [], [], []
    for first, stop, gh, gw in chunks:
        part = slice(first, stop)
        part_grid_h = grid_h[part] if isinstance(grid_h, Tensor) else grid_h
        part_grid_w = grid_w[part] if isinstance(grid_w, Tensor) else grid_w
        y, wy = _axis_samples(start_h[part], bin_h[part], part_grid_h, ph, gh, height)
        x, wx = _axis_samples(start_w[part], bin_w[part], part_grid_w, pw, gw, width)
        k = y.shape[0]
        # Every (y sample, neighbour) pairs with every (x sample, neighbour) of the same cell: [K, PH, PW, 2G, 2G].
        y, wy = y.reshape(k, ph, 1, -1, 1), wy.reshape(k, ph, 1, -1, 1)
        x, wx = x.reshape(k, 1, pw, 1, -1), wx.reshape(k, 1, pw, 1, -1)
        col = (image[part].view(k, 1, 1, 1, 1) * height + y) * width + x
        val = wy * wx
        if order is None:
            cols.append(col.reshape(-1))
            vals.append(val.reshape(-1))
            continue
        row = torch.arange(first * ph * pw, (first + k) * ph * pw, device=rois.device).view(k, ph, pw, 1, 1)
        keep = val != 0  # drop the padding of small grids (and samples outside the map)
        rows.append(row.expand_as(val)[keep])
        cols.append(col.expand_as(val)[keep])
        vals.append(val[keep])
    num_rows = rois.shape[0] * ph * pw
    col, val = (torch.cat(t) if len(t) > 1 else t[0] for t in (cols, vals))
    if order is None:
        per_row = 4 * grid_h * grid_w
        crow = torch.arange(0, num_rows * per_row + 1, per_row, device=rois.device)
    else:
        row = torch.cat(rows)
        crow = torch.zeros(num_rows + 1, dtype=torch.long, device=rois.device)
        crow[1:] = torch.bincount(row, minlength=num_rows).cumsum(0)
    if col.numel() < 2**31 and num_images * height * width < 2**31:
        crow, col = crow.int(), col.int()  # the sparse kernels' native index type
    with warnings.catch_warnings():  # sparse CSR tensors are "beta" in torch; the product used here is well served
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        matrix = torch.sparse_csr_tensor(
            crow, col, val, (num_rows, num_images * height * width), check_invariants=False
        )
    return matrix, count, order


@torch.fx.wrap
def roi_align(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Average-pools bilinearly sampled regions of ``input`` (RoIAlign, Mask R-CNN).

    Args:
        input: ``Tensor[N, C, H, W]`` feature maps.
        boxes: ``Tensor[K, 5]`` of (batch index, x1, y1, x2, y2), or a list of ``Tensor[L, 4]``, one per image.
        output_size: bins per RoI, ``(height, width)`` or one int for both.
        spatial_scale: factor from box coordinates to ``input`` coordinates (e.g. 1/16 for a stride-16 map).
        sampling_ratio: samples per bin and axis; ``<= 0`` uses ``ceil(roi size / bins)`` for each RoI.
        aligned: shift boxes by half a pixel (the corrected, Detectron2 version); ``False`` is the legacy one.

    Returns:
        ``Tensor[K, C, output_size[0], output_size[1]]``.

    Raises:
        ValueError, TypeError: for malformed input or boxes (including x2 < x1, y2 < y1, a bad batch index).
    """
    ph, pw = _output_size(output_size, "roi_align")
    rois = _as_rois(boxes, input, "roi_align")
    differentiable = torch.is_grad_enabled() and (input.requires_grad or rois.requires_grad)
    pool = _pool if differentiable and not _exporting() else _pool_operator
    return pool(input, rois, float(spatial_scale), ph, pw, int(sampling_ratio), bool(aligned))


def _exporting() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_exporting") and compiler.is_exporting())


def _pooled_shape(
    input: Tensor, rois: Tensor, spatial_scale: float, ph: int, pw: int, sampling_ratio: int, aligned: bool
) -> Tensor:
    return input.new_empty((rois.shape[0], input.shape[1], ph, pw))


def _pool(
    input: Tensor, rois: Tensor, spatial_scale: float, ph: int, pw: int, sampling_ratio: int, aligned: bool
) -> Tensor:
    """RoIAlign of the checked ``rois`` (``[K, 5]``) into ``[K, C, ph, pw]``; differentiable."""
    _check_roi_values(rois, input.shape[0], "roi_align")
    num_images, channels, height, width = input.shape
    if rois.shape[0] == 0:
        return input.new_zeros((0, channels, ph, pw)) + input.sum() * 0  # keeps the autograd graph connected
    # Sparse products run in float32 or float64 (the half types have no CPU kernel); positions as well.
    compute = input.dtype if input.dtype in (torch.float32, torch.float64) else torch.float32
    rois = rois.to(compute)
    matrix, count, order = _sampling_matrix(
        rois, num_images, height, width, spatial_scale, (ph, pw), sampling_ratio, aligned
    )
    pixels = input.to(compute).permute(0, 2, 3, 1).reshape(num_images * height * width, channels).contiguous()
    cells = _SparseProduct.apply(matrix, pixels).view(-1, ph * pw, channels)  # RoIs in matrix order
    if order is not None:
        cells = cells[torch.argsort(order)]
        count = count.view(-1, 1, 1, 1)
    output = cells.view(-1, ph, pw, channels).permute(0, 3, 1, 2).contiguous()
    return output.div_(_divisor(count, output)).to(input.dtype)


# For inference, and for torch.export and torch.compile: one operator whose output shape is known without data.
# (Training calls _pool itself, for autograd.)
_pool_operator = operator("roi_align", _pooled_shape)(_pool)


class _SparseProduct(torch.autograd.Function):
    """``matrix @ dense`` for a constant sparse CSR ``matrix``, written straight into a fresh tensor (the
    autograd-aware ``torch.mm`` zero-fills and copies a temporary); the gradient is ``matrix.T @ grad``."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, matrix: Tensor, dense: Tensor) -> Tensor:
        ctx.matrix = matrix  # type: ignore[attr-defined]
        return torch.mm(matrix, dense, out=dense.new_empty((matrix.shape[0], dense.shape[1])))

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[None, Tensor]:
        return None, torch.mm(ctx.matrix.t(), grad)  # type: ignore[attr-defined]


class RoIAlign(nn.Module):
    """:func:`roi_align` as a module."""

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        _output_size(output_size, "RoIAlign")
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned})"
        )


# ------------------------------------------------------------------------------------------------------ RoIPool


def _round_half_away(values: Tensor) -> Tensor:
    """``std::round``: halves away from zero (``torch.round`` rounds them to even)."""
    whole = values.trunc()
    return whole + torch.where((values - whole).abs() >= 0.5, values.sign(), 0)


def _bin_bounds(start: Tensor, length: Tensor, bins: int, size: int) -> tuple[Tensor, Tensor]:
    """First and one-past-last pixel of each bin along one axis, ``[K, bins]`` each, clipped to ``[0, size]``."""
    bin_size = _divide(length, bins)
    steps = torch.arange(bins + 1, device=start.device, dtype=start.dtype)
    edges = steps * bin_size[:, None]
    first = edges[:, :-1].floor() + start[:, None]
    last = edges[:, 1:].ceil() + start[:, None]
    return first.clamp(0, size).long(), last.clamp(0, size).long()


@torch.fx.wrap
def roi_pool(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """Max-pools regions of ``input`` over a grid of bins snapped to whole pixels (RoIPool, Fast R-CNN).

    Args:
        input: ``Tensor[N, C, H, W]`` feature maps.
        boxes: ``Tensor[K, 5]`` of (batch index, x1, y1, x2, y2), or a list of ``Tensor[L, 4]``, one per image.
        output_size: bins per RoI, ``(height, width)`` or one int for both.
        spatial_scale: factor from box coordinates to ``input`` coordinates.

    Returns:
        ``Tensor[K, C, output_size[0], output_size[1]]``; empty bins are 0.

    Raises:
        ValueError, TypeError: for malformed input or boxes (including x2 < x1, y2 < y1, a bad batch index).
    """
    ph, pw = _output_size(output_size, "roi_pool")
    rois = _as_rois(boxes, input, "roi_pool")
    _check_roi_values(rois, input.shape[0], "roi_pool")
    num_images, channels, height, width = input.shape
    if rois.shape[0] == 0:
        return input.new_zeros((0, channels, ph, pw)) + input.sum() * 0
    # Bin bounds in the input's own dtype, as the reference computes them (half precision moves some of them).
    start_w, start_h, end_w, end_h = _round_half_away(rois[:, 1:] * spatial_scale).unbind(1)
    roi_h = (end_h - start_h + 1).clamp(min=1)
    roi_w = (end_w - start_w + 1).clamp(min=1)
    top, bottom = _bin_bounds(start_h, roi_h, ph, height)
    left, right = _bin_bounds(start_w, roi_w, pw, width)
    window_h, window_w = (bottom - top).clamp(min=0), (right - left).clamp(min=0)
    # RoIs sorted by window size, so that each chunk pads its windows only to about its own largest.
    max_h, max_w = window_h.amax(1), window_w.amax(1)
    order = torch.argsort(max_h * max_w, descending=True, stable=True)
    sizes = torch.stack([max_h, max_w], 1)[order].clamp(min=1).tolist()
    pixels = input.permute(0, 2, 3, 1).reshape(num_images * height * width, channels)
    image = rois[:, 0].long()
    outputs, first = [], 0
    while first < len(sizes):
        stop = first + max(1, _CHUNK_ELEMENTS // (ph * pw * sizes[first][0] * sizes[first][1] * max(channels, 1)))
        bh, bw = (max(s) for s in zip(*sizes[first:stop]))
        part = order[first:stop]
        rows = top[part][:, :, None] + torch.arange(bh, device=input.device)  # [k, PH, bh]
        cols = left[part][:, :, None] + torch.arange(bw, device=input.device)  # [k, PW, bw]
        inside = (rows < bottom[part][:, :, None])[:, :, None, :, None] & (cols < right[part][:, :, None])[
            :, None, :, None, :
        ]  # [k, PH, PW, bh, bw]
        flat = (image[part].view(-1, 1, 1, 1, 1) * height + rows.clamp(max=height - 1)[:, :, None, :, None]) * width
        flat = flat + cols.clamp(max=width - 1)[:, None, :, None, :]
        k = part.shape[0]
        flat = torch.where(inside, flat, 0).view(k, ph, pw, bh * bw)
        values = pixels[flat].masked_fill(~inside.view(k, ph, pw, bh * bw, 1), float("-inf"))
        # The first maximum in row-major order takes the gradient, as in the reference.
        best = values.argmax(dim=3, keepdim=True)
        pooled = values.gather(3, best).squeeze(3)  # [k, PH, PW, C]
        empty = ~inside.flatten(3).any(3)
        outputs.append(pooled.masked_fill(empty[..., None], 0))
        first = stop
    output = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    output = output[torch.argsort(order)]
    return output.permute(0, 3, 1, 2).contiguous()


class RoIPool(nn.Module):
    """:func:`roi_pool` as a module."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float) -> None:
        super().__init__()
        _output_size(output_size, "RoIPool")
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale})"
