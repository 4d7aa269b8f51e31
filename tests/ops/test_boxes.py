"""Parity of ``visionzoo.ops.boxes`` with the reference: values, gradients, edge cases, and exact NMS results."""

from __future__ import annotations

import pytest
import torch

import visionzoo.ops as ops
from tests.reference import ops as ref_ops

PAIRWISE = ["box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou"]


def _random_boxes(n: int, seed: int = 0, dtype: torch.dtype = torch.float32, image: float = 100.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * image
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * image / 2 + 0.5
    return torch.cat([xy, xy + wh], 1).to(dtype)


def _clustered(n: int, seed: int = 0, objects: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Many jittered boxes around a few objects, as a detector emits before NMS."""
    gen = torch.Generator().manual_seed(seed)
    centre = torch.rand(objects, 2, generator=gen) * 300
    size = 20 + torch.rand(objects, 2, generator=gen) * 100
    which = torch.randint(0, objects, (n,), generator=gen)
    c = centre[which] + torch.randn(n, 2, generator=gen) * size[which] * 0.1
    s = size[which] * (1 + 0.15 * torch.randn(n, 2, generator=gen)).clamp(min=0.3)
    return torch.cat([c - s / 2, c + s / 2], 1), torch.rand(n, generator=gen)


# ---------------------------------------------------------------------------------------------------------------
# Pairwise IoU family
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_pairwise_matches_reference(name: str, dtype: torch.dtype) -> None:
    a, b = _random_boxes(7, 0, dtype), _random_boxes(5, 1, dtype)
    # Edge cases: identical, degenerate (zero width), disjoint and out-of-image boxes.
    a[0], b[0] = torch.tensor([1, 1, 5, 5]), torch.tensor([1, 1, 5, 5])
    a[1] = torch.tensor([3, 3, 3, 9])
    b[1] = torch.tensor([-20, -30, -10, -15])
    ours, theirs = getattr(ops, name)(a, b), getattr(ref_ops, name)(a, b)
    assert ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs, equal_nan=True)


@pytest.mark.parametrize("name", PAIRWISE)
def test_pairwise_batched_and_empty(name: str) -> None:
    a, b = _random_boxes(6, 2).view(2, 3, 4), _random_boxes(8, 3).view(2, 4, 4)
    torch.testing.assert_close(getattr(ops, name)(a, b), getattr(ref_ops, name)(a, b))
    for n, m in ((0, 3), (3, 0), (0, 0)):
        out = getattr(ops, name)(_random_boxes(n), _random_boxes(m))
        assert out.shape == (n, m)


@pytest.mark.parametrize("name", PAIRWISE)
def test_pairwise_gradients(name: str) -> None:
    a = _random_boxes(4, 4, torch.float64).requires_grad_()
    b = _random_boxes(3, 5, torch.float64).requires_grad_()
    b.data[0] = a.data[0] + 1.0  # an overlapping pair, so that every term has a gradient
    if name != "complete_box_iou":  # its penalty weight is held constant on purpose: not the numerical gradient
        assert torch.autograd.gradcheck(getattr(ops, name), (a, b))
    ours_grads = torch.autograd.grad(getattr(ops, name)(a, b).sum(), (a, b))
    theirs_grads = torch.autograd.grad(getattr(ref_ops, name)(a, b).sum(), (a, b))
    for ours, theirs in zip(ours_grads, theirs_grads):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_box_iou_and_area_formats(fmt: str) -> None:
    a, b = _random_boxes(5, 6), _random_boxes(4, 7)
    a_fmt, b_fmt = ref_ops.box_convert(a, "xyxy", fmt), ref_ops.box_convert(b, "xyxy", fmt)
    torch.testing.assert_close(ops.box_iou(a_fmt, b_fmt, fmt=fmt), ref_ops.box_iou(a_fmt, b_fmt, fmt=fmt))
    torch.testing.assert_close(ops.box_area(a_fmt, fmt=fmt), ref_ops.box_area(a_fmt, fmt=fmt))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int64, torch.float16])
def test_box_area_upcasts_like_the_reference(dtype: torch.dtype) -> None:
    boxes = torch.tensor([[0, 0, 200, 250], [10, 20, 30, 40]]).to(dtype)
    ours, theirs = ops.box_area(boxes), ref_ops.box_area(boxes)
    assert ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs)


# ---------------------------------------------------------------------------------------------------------------
# Conversion, clipping, filtering, masks
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_fmt", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("out_fmt", ["xyxy", "xywh", "cxcywh"])
def test_box_convert(in_fmt: str, out_fmt: str) -> None:
    boxes = _random_boxes(6, 8).view(2, 3, 4)
    ours = ops.box_convert(boxes, in_fmt, out_fmt)
    torch.testing.assert_close(ours, ref_ops.box_convert(boxes, in_fmt, out_fmt))
    assert ours.data_ptr() != boxes.data_ptr()
    torch.testing.assert_close(ops.box_convert(ours, out_fmt, in_fmt), boxes)


def test_clip_and_remove_small_boxes() -> None:
    boxes = torch.tensor([[-5.0, -5, 20, 30], [10, 10, 10.5, 40], [50, 60, 200, 300], [0, 0, 0, 0]])
    torch.testing.assert_close(ops.clip_boxes_to_image(boxes, (40, 100)), ref_ops.clip_boxes_to_image(boxes, (40, 100)))
    batched = boxes.view(2, 2, 4)
    torch.testing.assert_close(
        ops.clip_boxes_to_image(batched, (40, 100)), ref_ops.clip_boxes_to_image(batched, (40, 100))
    )
    for min_size in (0.0, 1.0, 25.0):
        assert torch.equal(ops.remove_small_boxes(boxes, min_size), ref_ops.remove_small_boxes(boxes, min_size))
    assert ops.remove_small_boxes(torch.zeros(0, 4), 1.0).shape == (0,)


def test_masks_to_boxes() -> None:
    masks = torch.zeros(4, 9, 12, dtype=torch.uint8)
    masks[0, 2:5, 3:8] = 1
    masks[1, 4, 6] = 255  # a single pixel
    masks[2, 0, :] = 1  # one row, full width
    # masks[3] stays empty: [0, 0, 0, 0]
    for m in (masks, masks.bool(), masks.float()):
        torch.testing.assert_close(ops.masks_to_boxes(m), ref_ops.masks_to_boxes(m))
    assert ops.masks_to_boxes(torch.zeros(0, 5, 5)).shape == (0, 4)


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------


def test_bad_boxes_raise_clear_errors() -> None:
    good = _random_boxes(3)
    inverted = good.clone()
    inverted[1, 2] = inverted[1, 0] - 1
    with pytest.raises(ValueError, match=r"boxes1\[1\].*x2 < x1"):
        ops.box_iou(inverted, good)
    with pytest.raises(ValueError, match=r"boxes\[1\]"):
        ops.nms(inverted, torch.rand(3), 0.5)
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        ops.box_area(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="fmt"):
        ops.box_convert(good, "xyxy", "yxyx")
    with pytest.raises(ValueError, match="fmt"):
        ops.box_iou(good, good, fmt="polar")
    with pytest.raises(ValueError, match="scores"):
        ops.nms(good, torch.rand(4), 0.5)
    with pytest.raises(TypeError, match="dtype"):
        ops.nms(good, torch.rand(3, dtype=torch.float64), 0.5)
    with pytest.raises(TypeError, match="floating"):
        ops.nms(good.long(), torch.rand(3).long(), 0.5)
    with pytest.raises(ValueError, match="idxs"):
        ops.batched_nms(good, torch.rand(3), torch.zeros(2, dtype=torch.long), 0.5)
    with pytest.raises(TypeError, match="idxs"):
        ops.batched_nms(good, torch.rand(3), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        ops.masks_to_boxes(torch.ones(4, 4))


# ---------------------------------------------------------------------------------------------------------------
# NMS: the same kept indices as the reference
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0, -0.1])
@pytest.mark.parametrize("layout", ["uniform", "clustered", "dense"])
def test_nms_matches_reference(layout: str, threshold: float) -> None:
    if layout == "clustered":
        boxes, scores = _clustered(600)
    else:  # "dense": every box overlaps many others; "uniform": few overlap, so the sparse phase does the work
        boxes = _random_boxes(500, 9, image=100.0 if layout == "dense" else 2000.0)
        scores = torch.rand(500, generator=torch.Generator().manual_seed(1))
    assert torch.equal(ops.nms(boxes, scores, threshold), ref_ops.nms(boxes, scores, threshold))


def test_nms_edge_cases() -> None:
    empty = ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    assert ops.nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    # Equal scores: the earlier box wins, as in the reference.
    same = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    scores = torch.ones(4)
    assert torch.equal(ops.nms(same, scores, 0.5), ref_ops.nms(same, scores, 0.5))
    # Degenerate (zero-area) and out-of-image boxes.
    odd = torch.tensor([[5.0, 5, 5, 5], [5, 5, 5, 5], [-10, -10, -2, -3], [-9, -9, -2, -3], [0, 0, 4, 0]])
    odd_scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    for threshold in (0.0, 0.5, -1.0):
        assert torch.equal(ops.nms(odd, odd_scores, threshold), ref_ops.nms(odd, odd_scores, threshold))


def test_nms_ties_with_the_threshold() -> None:
    """An IoU that equals the threshold once both are rounded to float32 must not suppress (the reference
    compares the float32 IoU with the double threshold)."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 7], [0, 0, 10, 3]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    for threshold in (0.7, 0.3, 0.69999999, 0.70000001):
        assert torch.equal(ops.nms(boxes, scores, threshold), ref_ops.nms(boxes, scores, threshold))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_large_and_float64(dtype: torch.dtype) -> None:
    boxes, scores = _clustered(3000, seed=3, objects=40)
    boxes = torch.cat([boxes, _random_boxes(3000, 4, image=3000.0)]).to(dtype)
    scores = torch.cat([scores, torch.rand(3000, generator=torch.Generator().manual_seed(5))]).to(dtype)
    assert torch.equal(ops.nms(boxes, scores, 0.5), ref_ops.nms(boxes, scores, 0.5))


def test_nms_float16_matches_float32_kernel() -> None:
    """The reference's CPU kernel has no float16; ours computes half boxes in float32."""
    boxes, scores = _clustered(300)
    half = ops.nms(boxes.half(), scores.half(), 0.5)
    assert torch.equal(half, ref_ops.nms(boxes.half().float(), scores.half().float(), 0.5))


@pytest.mark.parametrize("n", [300, 2000])  # the reference switches strategy above 1000 boxes on CPU
def test_batched_nms_matches_reference(n: int) -> None:
    boxes, scores = _clustered(n, seed=n)
    idxs = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(0))
    ours = ops.batched_nms(boxes, scores, idxs, 0.5)
    theirs = ref_ops.batched_nms(boxes, scores, idxs, 0.5)
    if n > 1000:  # the reference's per-class path: exactly the per-class NMS
        assert torch.equal(ours, theirs)
    else:  # the coordinate trick shifts boxes, which can round an IoU across the threshold: compare as sets
        assert set(ours.tolist()) == set(theirs.tolist())
        assert torch.all(scores[ours][:-1] >= scores[ours][1:])
    # No two kept boxes of a class overlap beyond the threshold; classes never suppress each other.
    for c in idxs.unique():
        kept = ours[idxs[ours] == c]
        assert torch.equal(kept, torch.where(idxs == c)[0][ops.nms(boxes[idxs == c], scores[idxs == c], 0.5)])
    assert ops.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).shape == (0,)
