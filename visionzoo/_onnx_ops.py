"""ONNX for visionzoo's own operators (``visionzoo.ops._library``), used by :func:`visionzoo.deploy.export_onnx`.

- ``nms`` (with or without categories) and SSD's row-wise ``nms_per_row`` map onto ONNX's NonMaxSuppression,
  ``roi_align`` onto RoiAlign;
- ``paste_masks`` (Mask R-CNN) and ``heatmaps_to_keypoints`` (Keypoint R-CNN) loop over the detections (an ONNX
  Loop), each resized with ONNX's Resize as the eager code does with ``F.interpolate``;
- ``aten.sort.stable`` (which the exporter lacks) becomes a TopK over every element, which keeps equal values in
  index order.

This module imports onnxscript (the ``deploy`` extra), so it is imported only when exporting to ONNX.
"""

from __future__ import annotations

from typing import Any

import torch
from onnxscript import FLOAT, script
from onnxscript import opset18 as op

__all__ = ["translations"]

_FLOAT, _INT64, _BOOL = 1, 7, 9  # ONNX element types


def _ints(*values: int) -> Any:
    return op.Constant(value_ints=list(values))


def _columns(matrix: Any, start: int, stop: int) -> Any:
    return op.Slice(matrix, _ints(start), _ints(stop), _ints(1))


def nms(boxes: Any, scores: Any, idxs: Any = None, iou_threshold: float = 0.5) -> Any:
    """Indices of the kept boxes by decreasing score; categories apart, each shifted beyond every box of the
    ones before (as far as the largest coordinate plus one)."""
    if idxs is not None:
        shift = op.Add(op.ReduceMax(boxes, keepdims=0), op.CastLike(op.Constant(value_float=1.0), boxes))
        boxes = op.Add(boxes, op.Unsqueeze(op.Mul(op.CastLike(idxs, boxes), shift), _ints(1)))
    selected = op.NonMaxSuppression(  # (K, 3): image, class, box
        op.Unsqueeze(boxes, _ints(0)),
        op.Unsqueeze(scores, _ints(0, 1)),
        op.Shape(scores),
        op.Constant(value_floats=[iou_threshold]),
    )
    return op.Reshape(_columns(selected, 2, 3), _ints(-1))


def nms_per_row(boxes: Any, candidate: Any, iou_threshold: float) -> Any:
    """The ``(R, k)`` mask of kept boxes. Each row is an image of its own for NonMaxSuppression; its boxes come
    in decreasing score order, so their negated positions serve as scores, and non-candidates score below the
    threshold."""
    rows, length = op.Shape(boxes, start=0, end=1), op.Shape(boxes, start=1, end=2)
    position = op.Cast(op.Range(op.Constant(value_int=0), op.Squeeze(length), op.Constant(value_int=1)), to=_FLOAT)
    scores = op.Where(candidate, op.Neg(op.Unsqueeze(position, _ints(0))), op.Constant(value_float=-1e30))
    selected = op.NonMaxSuppression(
        op.Cast(boxes, to=_FLOAT),
        op.Unsqueeze(scores, _ints(1)),
        length,
        op.Constant(value_floats=[iou_threshold]),
        op.Constant(value_floats=[-1e29]),
    )
    kept = op.Concat(_columns(selected, 0, 1), _columns(selected, 2, 3), axis=1)
    empty = op.Expand(op.Constant(value_int=0), op.Concat(rows, length, axis=0))
    mask = op.ScatterND(empty, kept, op.Expand(op.Constant(value_int=1), op.Shape(kept, start=0, end=1)))
    return op.Cast(mask, to=_BOOL)


def roi_align(input: Any, rois: Any, spatial_scale: float, ph: int, pw: int, sampling_ratio: int, aligned: bool) -> Any:
    """RoIAlign of ``rois`` (``(K, 5)``: batch index, x1, y1, x2, y2); ONNX's ``output_half_pixel`` is the legacy
    (not aligned) version, which also makes every RoI at least one pixel wide."""
    return op.RoiAlign(
        input,
        _columns(rois, 1, 5),
        op.Cast(op.Reshape(_columns(rois, 0, 1), _ints(-1)), to=_INT64),
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg",
        output_height=ph,
        output_width=pw,
        sampling_ratio=max(sampling_ratio, 0),
        spatial_scale=spatial_scale,
    )


def stable_sort(values: Any, stable: bool | None = None, dim: int = -1, descending: bool = False) -> Any:
    """``torch.sort(..., stable=True)``: ONNX's TopK over every element puts equal values in index order."""
    count = op.Shape(values, start=dim, end=None if dim == -1 else dim + 1)
    return op.TopK(values, count, axis=dim, largest=int(descending), sorted=1)


# The two loops below are ONNX Script (a restricted Python that compiles to ONNX): ``for`` becomes a Loop, and
# attributes reach tensors only through op.Constant.


@script()
def paste_masks(masks: FLOAT, boxes: FLOAT, height: int, width: int, padding: int) -> FLOAT:
    """Each ``(1, M, M)`` mask, padded, resized bilinearly over its box grown by the padding's proportion
    (corners truncated to whole pixels, ``x1..x2`` inclusive), pasted into an empty ``height x width`` image."""
    vector = op.Constant(value_ints=[1])
    image_h = op.Reshape(op.Constant(value_int=height), vector)
    image_w = op.Reshape(op.Constant(value_int=width), vector)
    pad = op.Reshape(op.Constant(value_int=padding), vector)
    zero = op.Constant(value_ints=[0])
    one = op.Constant(value_ints=[1])
    two = op.Constant(value_ints=[2])
    three = op.Constant(value_ints=[3])
    four = op.Constant(value_ints=[4])
    side = op.Cast(op.Shape(masks, start=3, end=4), to=1)
    scale = (side + 2.0 * op.Cast(pad, to=1)) / side
    padded = op.Pad(masks, op.Concat(zero, zero, pad, pad, zero, zero, pad, pad, axis=0))
    x1 = op.Slice(boxes, zero, one, one, one)
    y1 = op.Slice(boxes, one, two, one, one)
    x2 = op.Slice(boxes, two, three, one, one)
    y2 = op.Slice(boxes, three, four, one, one)
    half_w = (x2 - x1) * 0.5 * scale
    half_h = (y2 - y1) * 0.5 * scale
    centre_x = (x2 + x1) * 0.5
    centre_y = (y2 + y1) * 0.5
    corners = op.Cast(
        op.Concat(centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h, axis=1), to=7
    )
    count = op.Squeeze(op.Shape(masks, start=0, end=1))
    result = op.Expand(op.Constant(value_float=0.0), op.Concat(zero, one, image_h, image_w, axis=0))
    for i in range(count):
        index = op.Reshape(i, one)
        box = op.Reshape(op.Gather(corners, index, axis=0), four)
        left_edge = op.Slice(box, zero, one)
        top_edge = op.Slice(box, one, two)
        right_edge = op.Slice(box, two, three)
        bottom_edge = op.Slice(box, three, four)
        size = op.Concat(one, one, bottom_edge - top_edge + 1, right_edge - left_edge + 1, axis=0)
        stretched = op.Resize(
            op.Gather(padded, index, axis=0),
            None,
            None,
            size,
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        )
        top = op.Max(top_edge, zero)
        left = op.Max(left_edge, zero)
        bottom = op.Max(op.Min(bottom_edge + 1, image_h), top)
        right = op.Max(op.Min(right_edge + 1, image_w), left)
        part = op.Slice(
            stretched,
            op.Concat(top - top_edge, left - left_edge, axis=0),
            op.Concat(bottom - top_edge, right - left_edge, axis=0),
            op.Constant(value_ints=[2, 3]),
        )
        pads = op.Concat(zero, zero, top, left, zero, zero, image_h - bottom, image_w - right, axis=0)
        result = op.Concat(result, op.Pad(part, pads), axis=0)
    return result


@script()
def keypoints_from_heatmaps(maps: FLOAT, rois: FLOAT) -> tuple[FLOAT, FLOAT]:
    """Each RoI's ``(K, H, W)`` heatmaps resized bicubically to the RoI's size in pixels (rounded up, at least
    one); each keypoint at the centre of its best cell, in the RoI's coordinates, with that cell's value."""
    zero = op.Constant(value_ints=[0])
    one = op.Constant(value_ints=[1])
    two = op.Constant(value_ints=[2])
    three = op.Constant(value_ints=[3])
    four = op.Constant(value_ints=[4])
    least = op.Constant(value_floats=[1.0])
    num_keypoints = op.Shape(maps, start=1, end=2)
    count = op.Squeeze(op.Shape(maps, start=0, end=1))
    keypoints = op.Expand(op.Constant(value_float=0.0), op.Concat(zero, num_keypoints, three, axis=0))
    scores = op.Expand(op.Constant(value_float=0.0), op.Concat(zero, num_keypoints, axis=0))
    for i in range(count):
        index = op.Reshape(i, one)
        roi = op.Reshape(op.Gather(rois, index, axis=0), four)
        x1 = op.Slice(roi, zero, one)
        y1 = op.Slice(roi, one, two)
        width = op.Max(op.Slice(roi, two, three) - x1, least)
        height = op.Max(op.Slice(roi, three, four) - y1, least)
        map_w = op.Cast(op.Ceil(width), to=7)
        map_h = op.Cast(op.Ceil(height), to=7)
        heatmaps = op.Unsqueeze(op.Squeeze(op.Gather(maps, index, axis=0), zero), one)  # (K, 1, H, W)
        upsampled = op.Resize(
            heatmaps,
            None,
            None,
            op.Concat(num_keypoints, one, map_h, map_w, axis=0),
            mode="cubic",
            cubic_coeff_a=-0.75,
            coordinate_transformation_mode="half_pixel",
        )
        flat = op.Reshape(upsampled, op.Concat(num_keypoints, op.Constant(value_ints=[-1]), axis=0))
        best = op.ArgMax(flat, axis=1, keepdims=1)  # (K, 1), the first maximum
        score = op.Reshape(op.GatherElements(flat, best, axis=1), op.Constant(value_ints=[1, -1]))
        row = op.Cast(op.Div(best, map_w), to=1)
        column = op.Cast(op.Mod(best, map_w), to=1)
        x = (column + 0.5) * (width / op.Cast(map_w, to=1)) + x1
        y = (row + 0.5) * (height / op.Cast(map_h, to=1)) + y1
        visible = op.Expand(op.Constant(value_float=1.0), op.Shape(x))
        keypoints = op.Concat(keypoints, op.Unsqueeze(op.Concat(x, y, visible, axis=1), zero), axis=0)
        scores = op.Concat(scores, score, axis=0)
    return keypoints, scores


def translations() -> dict[Any, Any]:
    """The ``custom_translation_table`` for ``torch.onnx.export``: our operators (once registered) to ONNX."""
    from .models import detection  # noqa: F401  (defines the detectors' operators)
    from .ops._library import HAS_CUSTOM_OPS

    table: dict[Any, Any] = {torch.ops.aten.sort.stable: stable_sort}
    if HAS_CUSTOM_OPS:
        ops = torch.ops.visionzoo
        table.update(
            {
                ops.nms.default: nms,
                ops.nms_per_row.default: nms_per_row,
                ops.roi_align.default: roi_align,
                ops.paste_masks.default: paste_masks,
                ops.heatmaps_to_keypoints.default: keypoints_from_heatmaps,
            }
        )
    return table
