"""Box operators: areas, the IoU family, format conversion, clipping, and non-maximum suppression.

Boxes are ``(x1, y1, x2, y2)`` unless a ``fmt`` says otherwise, in tensors of shape ``[..., 4]``.
``nms`` and ``batched_nms`` give exactly the greedy result of the classic algorithm (the same kept indices as the
reference's compiled kernel) but never compare two boxes that cannot overlap: a sweep along one axis lists the
pairs whose extents meet, their IoU is computed in one vectorised pass, and the greedy order is resolved on
that sparse overlap graph a wave at a time. The reference's CPU kernel compares every kept box with every later
box, which is quadratic in the number of boxes when few of them overlap.
"""

from __future__ import annotations

import math
import struct

import torch
from torch import Tensor

from ._library import operator, tracing, unbacked_size

__all__ = [
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "distance_box_iou",
    "complete_box_iou",
    "box_convert",
    "clip_boxes_to_image",
    "remove_small_boxes",
    "masks_to_boxes",
    "nms",
    "batched_nms",
]

_FORMATS = ("xyxy", "xywh", "cxcywh")


# ---------------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------------


def _check_boxes(
    boxes: Tensor, name: str = "boxes", fmt: str = "xyxy", leading: bool = True, values: bool = True
) -> None:
    """Raise unless ``boxes`` is a real tensor of shape ``[..., 4]`` (``[N, 4]`` without ``leading``) whose boxes
    are well formed: x2 >= x1 and y2 >= y1 in ``xyxy``, non-negative width and height otherwise."""
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {boxes.dtype}")
    if (boxes.dim() < 1 if leading else boxes.dim() != 2) or boxes.shape[-1] != 4:
        expected = "[..., 4]" if leading else "[N, 4]"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(boxes.shape)}")
    if not values or tracing() or boxes.numel() == 0:  # a traced graph does not branch on values
        return
    _check_box_values(boxes, name, fmt)


def _check_box_values(boxes: Tensor, name: str = "boxes", fmt: str = "xyxy") -> None:
    if fmt == "xyxy":
        bad = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
        what = "x2 < x1 or y2 < y1"
    else:
        bad = (boxes[..., 2] < 0) | (boxes[..., 3] < 0)
        what = "a negative width or height"
    if bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        index = where[0] if len(where) == 1 else where
        raise ValueError(f"{name}[{index}] = {boxes[where].tolist()} has {what} (format {fmt})")


def _check_format(fmt: str, name: str = "fmt") -> None:
    if fmt not in _FORMATS:
        raise ValueError(f"{name} must be one of {', '.join(_FORMATS)}, got {fmt!r}")


def _upcast(t: Tensor) -> Tensor:
    """Widen types whose products overflow or lose too much (float16, bfloat16, small integers), as the reference
    does, so that areas and IoUs come out in float32/float64 or int32/int64."""
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


# ---------------------------------------------------------------------------------------------------------------
# Areas, conversion, clipping
# ---------------------------------------------------------------------------------------------------------------


def _to_xyxy(boxes: Tensor, fmt: str) -> Tensor:
    if fmt == "xyxy":
        return boxes
    a, b, w, h = boxes.unbind(-1)
    if fmt == "xywh":
        return torch.stack((a, b, a + w, b + h), dim=-1)
    return torch.stack((a - 0.5 * w, b - 0.5 * h, a + 0.5 * w, b + 0.5 * h), dim=-1)


def _from_xyxy(boxes: Tensor, fmt: str) -> Tensor:
    if fmt == "xyxy":
        return boxes
    x1, y1, x2, y2 = boxes.unbind(-1)
    w, h = x2 - x1, y2 - y1
    if fmt == "xywh":
        return torch.stack((x1, y1, w, h), dim=-1)
    return torch.stack(((x1 + x2) / 2, (y1 + y2) / 2, w, h), dim=-1)


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between the ``xyxy`` (corners), ``xywh`` (top-left corner and size) and ``cxcywh`` (centre
    and size) formats.

    Args:
        boxes: Tensor[..., 4] in ``in_fmt``.
        in_fmt: format of ``boxes``.
        out_fmt: format of the result.

    Returns:
        Tensor[..., 4] in ``out_fmt`` (a copy, even when the formats agree).

    Raises:
        ValueError: an unknown format or a shape other than ``[..., 4]``.
    """
    _check_format(in_fmt, "in_fmt")
    _check_format(out_fmt, "out_fmt")
    if not isinstance(boxes, Tensor):
        raise TypeError(f"boxes must be a torch.Tensor, got {type(boxes).__name__}")
    if boxes.dim() < 1 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [..., 4], got {tuple(boxes.shape)}")
    if in_fmt == out_fmt:
        return boxes.clone()
    return _from_xyxy(_to_xyxy(boxes, in_fmt), out_fmt)


def box_area(boxes: Tensor, fmt: str = "xyxy") -> Tensor:
    """Area of each box.

    Args:
        boxes: Tensor[..., 4].
        fmt: ``xyxy``, ``xywh`` or ``cxcywh``.

    Returns:
        Tensor[...]: areas, in float32/float64 (or int32/int64 for integer boxes).
    """
    _check_format(fmt)
    _check_boxes(boxes, fmt=fmt)
    boxes = _upcast(boxes)
    if fmt == "xyxy":
        return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return boxes[..., 2] * boxes[..., 3]


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip boxes so that they lie inside an image of ``size = (height, width)``.

    Args:
        boxes: Tensor[..., 4] in ``xyxy`` format.
        size: the image's (height, width).

    Returns:
        Tensor[..., 4]: x clamped to [0, width], y to [0, height].
    """
    _check_boxes(boxes)
    if len(size) != 2:
        raise ValueError(f"size must be (height, width), got {size!r}")
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both at least ``min_size``.

    Args:
        boxes: Tensor[N, 4] in ``xyxy`` format.
        min_size: the smallest side length kept.

    Returns:
        Tensor[K]: int64 indices of the boxes kept, in increasing order.
    """
    _check_boxes(boxes)
    wide = boxes[..., 2] - boxes[..., 0] >= min_size
    tall = boxes[..., 3] - boxes[..., 1] >= min_size
    return torch.where(wide & tall)[0]


def masks_to_boxes(masks: Tensor) -> Tensor:
    """The tightest ``xyxy`` box around the non-zero pixels of each mask.

    Args:
        masks: Tensor[N, H, W].

    Returns:
        Tensor[N, 4] (float32): pixel indices of the first and last non-zero column and row; an empty mask gives
        ``[0, 0, 0, 0]``. A mask one pixel wide or tall gives x1 == x2 or y1 == y2.
    """
    if not isinstance(masks, Tensor):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
    if masks.numel() == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    if masks.dim() != 3:
        raise ValueError(f"masks must have shape [N, H, W], got {tuple(masks.shape)}")
    n, h, w = masks.shape
    filled = masks.bool()
    rows, cols = filled.any(dim=2), filled.any(dim=1)  # [N, H], [N, W]

    def first_and_last(occupied: Tensor, length: int) -> tuple[Tensor, Tensor]:
        position = torch.arange(length, device=occupied.device).expand_as(occupied)
        first = torch.where(occupied, position, length).amin(dim=1)
        last = torch.where(occupied, position, -1).amax(dim=1)
        return first, last

    y1, y2 = first_and_last(rows, h)
    x1, x2 = first_and_last(cols, w)
    boxes = torch.stack((x1, y1, x2, y2), dim=1).float()
    return boxes.masked_fill(~rows.any(dim=1, keepdim=True), 0.0)


# ---------------------------------------------------------------------------------------------------------------
# The IoU family (pairwise, [..., N, 4] x [..., M, 4] -> [..., N, M])
# ---------------------------------------------------------------------------------------------------------------


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas of two sets of ``xyxy`` boxes."""
    wide1, wide2 = _upcast(boxes1), _upcast(boxes2)
    area1 = (wide1[..., 2] - wide1[..., 0]) * (wide1[..., 3] - wide1[..., 1])
    area2 = (wide2[..., 2] - wide2[..., 0]) * (wide2[..., 3] - wide2[..., 1])
    # The overlap is taken in the boxes' own dtype, then widened, as the reference does.
    top_left = torch.max(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.min(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    overlap = _upcast(bottom_right - top_left).clamp(min=0)
    inter = overlap[..., 0] * overlap[..., 1]
    return inter, area1[..., :, None] + area2[..., None, :] - inter


def _enclosing_size(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Width and height ([..., N, M, 2]) of the smallest box enclosing each pair."""
    top_left = torch.min(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
    bottom_right = torch.max(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
    return _upcast(bottom_right - top_left).clamp(min=0)


def _check_pair(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> None:
    _check_boxes(boxes1, "boxes1", fmt)
    _check_boxes(boxes2, "boxes2", fmt)
    if boxes1.dim() < 2 or boxes2.dim() < 2:
        raise ValueError(
            f"boxes1 and boxes2 must have shape [..., N, 4] and [..., M, 4], got {tuple(boxes1.shape)} and "
            f"{tuple(boxes2.shape)}"
        )


def box_iou(boxes1: Tensor, boxes2: Tensor, fmt: str = "xyxy") -> Tensor:
    """Intersection over union of every pair of boxes.

    Args:
        boxes1: Tensor[..., N, 4].
        boxes2: Tensor[..., M, 4].
        fmt: ``xyxy``, ``xywh`` or ``cxcywh``, for both sets.

    Returns:
        Tensor[..., N, M].
    """
    _check_format(fmt)
    _check_pair(boxes1, boxes2, fmt)
    inter, union = _inter_union(_to_xyxy(boxes1, fmt), _to_xyxy(boxes2, fmt))
    return inter / union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU (Rezatofighi et al., https://arxiv.org/abs/1902.09630) of every pair of ``xyxy`` boxes:
    the IoU minus the share of the enclosing box that neither box covers.

    Returns:
        Tensor[..., N, M], in [-1, 1].
    """
    _check_pair(boxes1, boxes2)
    inter, union = _inter_union(boxes1, boxes2)
    enclosing = _enclosing_size(boxes1, boxes2)
    enclosing_area = enclosing[..., 0] * enclosing[..., 1]
    return inter / union - (enclosing_area - union) / enclosing_area


def _distance_iou_and_iou(boxes1: Tensor, boxes2: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / union
    enclosing = _enclosing_size(boxes1, boxes2)
    diagonal_squared = enclosing[..., 0] ** 2 + enclosing[..., 1] ** 2 + eps
    centre1 = (boxes1[..., :2] + boxes1[..., 2:]) / 2
    centre2 = (boxes2[..., :2] + boxes2[..., 2:]) / 2
    offset = _upcast(centre1[..., :, None, :] - centre2[..., None, :, :])
    centre_distance_squared = offset[..., 0] ** 2 + offset[..., 1] ** 2
    return iou - centre_distance_squared / diagonal_squared, iou


def distance_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Distance IoU (Zheng et al., https://arxiv.org/abs/1911.08287) of every pair of ``xyxy`` boxes: the IoU
    minus the squared distance of the centres over the squared diagonal of the enclosing box.

    Args:
        eps: added to the squared diagonal, so that coinciding degenerate boxes do not divide by zero.

    Returns:
        Tensor[..., N, M].
    """
    _check_pair(boxes1, boxes2)
    return _distance_iou_and_iou(_upcast(boxes1), _upcast(boxes2), eps)[0]


def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU (Zheng et al., https://arxiv.org/abs/1911.08287) of every pair of ``xyxy`` boxes: the distance
    IoU minus a penalty on the difference of aspect ratios, whose weight is not differentiated (as in the paper).

    Returns:
        Tensor[..., N, M].
    """
    _check_pair(boxes1, boxes2)
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    diou, iou = _distance_iou_and_iou(boxes1, boxes2, eps)
    angle1 = torch.atan((boxes1[..., 2] - boxes1[..., 0]) / (boxes1[..., 3] - boxes1[..., 1]))
    angle2 = torch.atan((boxes2[..., 2] - boxes2[..., 0]) / (boxes2[..., 3] - boxes2[..., 1]))
    v = (4 / torch.pi**2) * (angle1[..., :, None] - angle2[..., None, :]) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


# ---------------------------------------------------------------------------------------------------------------
# Non-maximum suppression
# ---------------------------------------------------------------------------------------------------------------

# Candidate pairs examined per vectorised pass: bounds the temporary memory (about 100 bytes a pair).
_PAIRS_PER_PASS = 1 << 21
# Boxes per dense block: the block's overlap matrix packs into one int64 bitmask per row.
_BLOCK = 63
# The dense phase goes on while each box it keeps removes at least this many later boxes on average, or while
# so few boxes are left that listing their pairs would cost more than finishing block by block.
_REMOVED_PER_KEPT = 4
_FEW_LEFT = 256


def _strict_threshold(iou_threshold: float, dtype: torch.dtype) -> float:
    """A threshold ``t`` in ``dtype`` such that ``iou > t`` in ``dtype`` equals ``iou > iou_threshold`` compared
    exactly (as a float32 IoU against a double threshold in the reference's kernel): rounding the threshold up
    to the IoU's precision would otherwise keep a box whose IoU equals the rounded value."""
    if dtype == torch.float64 or not math.isfinite(iou_threshold):
        return iou_threshold
    (rounded,) = struct.unpack("<f", struct.pack("<f", iou_threshold))
    if rounded > iou_threshold:  # step down to the next float32, by its bit pattern
        (bits,) = struct.unpack("<i", struct.pack("<f", rounded))
        (rounded,) = struct.unpack(
            "<f", struct.pack("<i", bits - 1 if rounded > 0 else (bits + 1 if bits < 0 else -(2**31) + 1))
        )
    return rounded


def _pair_iou(first: Tensor, second: Tensor, first_area: Tensor, second_area: Tensor) -> Tensor:
    """IoU of boxes paired by broadcasting, computed operation for operation as the classic kernel does, so that
    values equal to the threshold compare the same way."""
    w = (torch.min(first[..., 2], second[..., 2]) - torch.max(first[..., 0], second[..., 0])).clamp(min=0)
    h = (torch.min(first[..., 3], second[..., 3]) - torch.max(first[..., 1], second[..., 1])).clamp(min=0)
    inter = w * h
    return inter / (first_area + second_area - inter)


class _SortedBoxes:
    """Boxes in decreasing score order, with what both phases of the suppression need."""

    def __init__(self, boxes: Tensor, groups: Tensor | None, iou_threshold: float) -> None:
        self.boxes = boxes
        self.area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        self.groups = groups
        self.iou_threshold = iou_threshold
        self.threshold = _strict_threshold(iou_threshold, boxes.dtype)

    def suppresses(self, rows: Tensor, cols: Tensor) -> Tensor:
        """[R, C]: whether box rows[r] would suppress box cols[c] (IoU above the threshold, same group)."""
        iou = _pair_iou(self.boxes[rows, None], self.boxes[None, cols], self.area[rows, None], self.area[None, cols])
        hit = iou > self.threshold
        if self.groups is not None:
            hit &= self.groups[rows, None] == self.groups[None, cols]
        return hit


def _greedy_in_block(overlaps: Tensor) -> list[int]:
    """Positions greedy NMS keeps in a block of at most 63 boxes (score order, none suppressed by an earlier kept
    box), given the block's [B, B] suppression matrix: each row packed into one int64 bitmask, then one cheap
    sequential pass."""
    n = overlaps.shape[0]
    bits = torch.arange(n, device=overlaps.device)
    rows = (overlaps.triu(diagonal=1).long() << bits).sum(1).tolist()
    dropped, kept = 0, []
    for i, row in enumerate(rows):
        if not dropped >> i & 1:
            kept.append(i)
            dropped |= row
    return kept


def _strips(y1: Tensor, y2: Tensor) -> tuple[Tensor, Tensor, float]:
    """Cut the y axis into strips about one typical box tall; return each box's first strip, its number of
    strips, and the strip height. Two boxes that overlap share the strip holding the top of their intersection."""
    height = float((y2 - y1).median())
    span = float(y2.max() - y1.min())
    strip = max(height, span / max(y1.numel(), 1), 1e-6 * max(span, 1.0))
    while True:
        first = torch.floor(y1.double() / strip)
        count = (torch.floor(y2.double() / strip) - first).long() + 1
        if int(count.sum()) <= 4 * y1.numel():  # tall boxes would be listed in many strips: widen them
            return first.long(), count, strip
        strip *= 2


def _overlapping_pairs(boxes: _SortedBoxes, subset: Tensor) -> tuple[Tensor, Tensor]:
    """The pairs (i, j), i < j, of positions in ``subset`` (score order) where box subset[i] suppresses subset[j].

    The y axis is cut into strips, each box listed in the strips it spans; within each strip (and group) the
    boxes are swept along x, and a box is compared only with the later ones whose x interval starts before its
    own ends. A pair is counted in the strip holding the top of its intersection, so once.
    """
    device = subset.device
    coords, area = boxes.boxes[subset], boxes.area[subset]
    x1, y1, x2, y2 = coords.unbind(1)
    n = subset.numel()
    everything = boxes.iou_threshold < 0  # even disjoint boxes suppress: every pair of a group is a candidate
    if everything:
        first_strip, count, strip = torch.zeros(n, dtype=torch.long, device=device), None, 1.0
        entry_box = torch.arange(n, device=device)
        entry_strip = first_strip
    else:
        first_strip, count, strip = _strips(y1, y2)
        entries = int(count.sum())
        entry_box = torch.repeat_interleave(torch.arange(n, device=device), count, output_size=entries)
        entry_first = torch.repeat_interleave(torch.cumsum(count, 0) - count, count, output_size=entries)
        entry_strip = first_strip[entry_box] + torch.arange(entries, device=device) - entry_first
    # Strips (and groups) are laid end to end along x with gaps between them, so a sweep never crosses one.
    key = entry_strip - entry_strip.min()
    if boxes.groups is not None:
        group = boxes.groups[subset][entry_box]
        key = (group - group.min()) * (int(key.max()) + 1) + key
    lo, hi = x1.double()[entry_box], x2.double()[entry_box]
    if everything:
        hi = hi.max().expand_as(hi)
    low = lo.min()
    shift = key.double() * (2 * (hi.max() - low) + 1) - low
    lo, hi = lo + shift, hi + shift
    order = torch.sort(lo, stable=True).indices
    # Rounding the shifted coordinates is monotonic, so searching with ``right=True`` keeps every true overlap.
    end = torch.searchsorted(lo[order], hi[order], right=True)
    counts = (end - torch.arange(1, order.numel() + 1, device=device)).clamp(min=0)
    total = int(counts.sum())
    empty = torch.empty(0, dtype=torch.long, device=device)
    if total == 0:
        return empty, empty
    # Everything per entry in sweep order, so that the later entry of a pair is read from a contiguous run.
    sorted_box = entry_box[order]
    sorted_coords, sorted_area, sorted_strip = coords[sorted_box], area[sorted_box], entry_strip[order]
    ends = torch.cumsum(counts, 0)
    starts = ends - counts
    marks = torch.tensor(range(_PAIRS_PER_PASS, total, _PAIRS_PER_PASS), dtype=torch.long, device=device)
    bounds = [0, *(int(c) + 1 for c in torch.searchsorted(ends, marks)), order.numel()]
    firsts, seconds = [empty], [empty]
    for begin, stop in zip(bounds[:-1], bounds[1:]):
        pairs = int(ends[stop - 1] - starts[begin]) if stop > begin else 0
        if pairs == 0:
            continue
        pass_counts = counts[begin:stop]
        # Pair k of the pass joins entry a[k] with the (k - first pair of a[k])-th entry after it.
        a = torch.repeat_interleave(torch.arange(begin, stop, device=device), pass_counts, output_size=pairs)
        first_pair = torch.repeat_interleave(starts[begin:stop] - starts[begin], pass_counts, output_size=pairs)
        b = torch.arange(pairs, device=device).sub_(first_pair).add_(a).add_(1)
        if not everything:
            # Most candidates miss on y, or meet in another strip: drop them before the full IoU.
            ca, cb = sorted_coords[a], sorted_coords[b]
            top = torch.max(ca[:, 1], cb[:, 1])
            meet = (torch.min(ca[:, 3], cb[:, 3]) > top) & (
                torch.min(ca[:, 2], cb[:, 2]) > torch.max(ca[:, 0], cb[:, 0])
            )
            meet &= torch.floor(top.double() / strip).long() == sorted_strip[a]
            a, b = a[meet], b[meet]
        hit = _pair_iou(sorted_coords[a], sorted_coords[b], sorted_area[a], sorted_area[b]) > boxes.threshold
        firsts.append(sorted_box[a[hit]])
        seconds.append(sorted_box[b[hit]])
    a, b = torch.cat(firsts), torch.cat(seconds)
    return torch.minimum(a, b), torch.maximum(a, b)


def _greedy_keep(n: int, first: Tensor, second: Tensor) -> Tensor:
    """Which of ``n`` score-sorted boxes greedy NMS keeps, given the suppressing pairs (first[k] < second[k]).

    A box is kept exactly when no kept box before it suppresses it. Resolved in waves rather than box by box:
    a box whose suppressors are all settled and suppressed is kept, a box with a kept suppressor is suppressed.
    Each wave settles at least the first unsettled box, and in practice a handful of waves settle everything
    (the chains of "suppressed by a box that was itself suppressed" are short).
    """
    undecided, kept, suppressed = 0, 1, 2
    state = torch.zeros(n, dtype=torch.int8, device=first.device)
    blocked = torch.zeros(n, dtype=torch.bool, device=first.device)
    while True:
        blocked.zero_()
        blocked[second] = True
        state[~blocked & (state == undecided)] = kept
        state[second[state[first] == kept]] = suppressed
        # Pairs from or to a settled box no longer matter.
        live = (state[first] == undecided) & (state[second] == undecided)
        first, second = first[live], second[live]
        if first.numel() == 0:
            state[state == undecided] = kept
            return state == kept


def _nms(boxes: Tensor, scores: Tensor, groups: Tensor | None, iou_threshold: float) -> Tensor:
    """Greedy NMS in two phases. Dense: take the best 63 boxes still alive, settle them among themselves, and
    drop every later box that a kept one suppresses; on clustered boxes (a detector's raw output) a few such
    blocks remove nearly everything. Sparse, once blocks stop paying (each kept box removes few others): list
    the suppressing pairs among the boxes left by a sweep and settle them in waves."""
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    if sorted_boxes.dtype not in (torch.float32, torch.float64):
        sorted_boxes = sorted_boxes.float()
    state = _SortedBoxes(sorted_boxes, None if groups is None else groups[order], iou_threshold)
    alive = torch.arange(n, device=boxes.device)
    kept = []
    while alive.numel() > 0:
        # One pass gives both the block's own overlaps and what its boxes would remove further down.
        hits = state.suppresses(alive[:_BLOCK], alive)
        keep = _greedy_in_block(hits[:, :_BLOCK])
        kept.append(alive[keep])
        hit = hits[keep, _BLOCK:].any(0)
        alive = alive[_BLOCK:][~hit]
        if alive.numel() > _FEW_LEFT and int(hit.sum()) < _REMOVED_PER_KEPT * len(keep):
            first, second = _overlapping_pairs(state, alive)
            kept.append(alive[_greedy_keep(alive.numel(), first, second)])
            break
    return order[torch.cat(kept)]


def _kept_indices(boxes: Tensor, scores: Tensor, idxs: Tensor | None, iou_threshold: float) -> Tensor:
    return boxes.new_empty((unbacked_size(boxes.shape[0]),), dtype=torch.long)


@operator("nms", _kept_indices)
def _suppress(boxes: Tensor, scores: Tensor, idxs: Tensor | None, iou_threshold: float) -> Tensor:
    """:func:`batched_nms` (:func:`nms` without ``idxs``) as one operator: the boxes' values are checked here, when
    the operator runs, since a traced graph (``torch.export``, ``torch.compile``) holds no checks on values."""
    if boxes.numel():
        _check_box_values(boxes)
    return _nms(boxes, scores, idxs, iou_threshold)


def _check_nms_inputs(boxes: Tensor, scores: Tensor, iou_threshold: float) -> None:
    _check_boxes(boxes, leading=False, values=False)  # the values: in _suppress, once, eager or exported
    if not boxes.is_floating_point():
        raise TypeError(f"boxes must be floating point, got dtype {boxes.dtype}")
    if not isinstance(scores, Tensor) or scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"scores must have shape [{boxes.shape[0]}] (one per box), got {shape}")
    if scores.dtype != boxes.dtype:
        raise TypeError(f"scores must have the dtype of boxes ({boxes.dtype}), got {scores.dtype}")
    if scores.device != boxes.device:
        raise ValueError(f"scores are on {scores.device} but boxes on {boxes.device}")
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)):
        raise TypeError(f"iou_threshold must be a float, got {type(iou_threshold).__name__}")


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: going down the scores, drop every box whose IoU with a kept box exceeds
    ``iou_threshold``.

    Equal scores keep their input order. The result equals the classic one-box-at-a-time algorithm's; only pairs
    of boxes that meet are compared (see the module docstring), so sparse scenes cost far less than N^2.

    Args:
        boxes: Tensor[N, 4] in ``xyxy`` format, floating point.
        scores: Tensor[N], same dtype and device as ``boxes``.
        iou_threshold: boxes overlapping a kept box by more than this are discarded.

    Returns:
        Tensor[K]: int64 indices of the kept boxes, by decreasing score.

    Raises:
        ValueError, TypeError: malformed shapes, dtypes or devices, or a box with x2 < x1 or y2 < y1.
    """
    _check_nms_inputs(boxes, scores, iou_threshold)
    return _suppress(boxes, scores, None, float(iou_threshold))


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression within each category: boxes of different ``idxs`` never suppress each other.

    Args:
        boxes: Tensor[N, 4] in ``xyxy`` format, floating point.
        scores: Tensor[N].
        idxs: Tensor[N] of integer category indices.
        iou_threshold: as in :func:`nms`.

    Returns:
        Tensor[K]: int64 indices of the kept boxes, by decreasing score (equal scores in input order).
    """
    _check_nms_inputs(boxes, scores, iou_threshold)
    if not isinstance(idxs, Tensor) or idxs.shape != scores.shape:
        shape = tuple(idxs.shape) if isinstance(idxs, Tensor) else type(idxs).__name__
        raise ValueError(f"idxs must have shape [{boxes.shape[0]}] (one per box), got {shape}")
    if idxs.is_floating_point() or idxs.is_complex():
        raise TypeError(f"idxs must hold integer category indices, got dtype {idxs.dtype}")
    if idxs.device != boxes.device:
        raise ValueError(f"idxs are on {idxs.device} but boxes on {boxes.device}")
    return _suppress(boxes, scores, idxs, float(iou_threshold))
