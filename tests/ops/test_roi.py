"""Parity of RoIAlign, RoIPool and MultiScaleRoIAlign with the reference's compiled operators: values and gradients."""

from __future__ import annotations

import inspect
from collections import OrderedDict
from functools import partial

import pytest
import torch

import visionzoo.ops as ops
from tests.reference import ops as ref_ops


def _boxes(num: int, dtype: torch.dtype = torch.float32, images: int = 2, seed: int = 0) -> torch.Tensor:
    """``Tensor[num, 5]`` RoIs around a 13x17 map: some out of the map, the first three of zero size."""
    gen = torch.Generator().manual_seed(seed)
    corner = torch.rand(num, 2, generator=gen) * 30 - 5
    size = torch.rand(num, 2, generator=gen) * 25
    size[:3] = 0
    index = torch.randint(0, images, (num, 1), generator=gen).float()
    return torch.cat([index, corner, corner + size], dim=1).to(dtype)


def _assert_op_parity(ours, theirs, x, boxes, atol, **kwargs) -> None:
    x_ours = x.detach().clone().requires_grad_()
    x_theirs = x.detach().clone().requires_grad_()
    out_ours, out_theirs = ours(x_ours, boxes, **kwargs), theirs(x_theirs, boxes, **kwargs)
    torch.testing.assert_close(out_ours, out_theirs, atol=atol, rtol=atol)
    grad = torch.randn(out_theirs.shape, generator=torch.Generator().manual_seed(1)).to(x.dtype)
    out_ours.backward(grad)
    out_theirs.backward(grad)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, atol=atol, rtol=atol)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.3])
def test_roi_align_parity(aligned: bool, sampling_ratio: int, spatial_scale: float) -> None:
    x = torch.randn(2, 3, 13, 17, generator=torch.Generator().manual_seed(0))
    kwargs = dict(output_size=(5, 4), spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, aligned=aligned)
    _assert_op_parity(ops.roi_align, ref_ops.roi_align, x, _boxes(40), atol=1e-5, **kwargs)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float16, 2e-2)])
def test_roi_align_dtypes(dtype: torch.dtype, atol: float) -> None:
    x = torch.randn(2, 3, 13, 17, generator=torch.Generator().manual_seed(0)).to(dtype)
    for sampling_ratio in (-1, 2):
        out = ops.roi_align(x, _boxes(20, dtype), 3, 0.5, sampling_ratio, True)
        assert out.dtype == dtype
        torch.testing.assert_close(
            out, ref_ops.roi_align(x, _boxes(20, dtype), 3, 0.5, sampling_ratio, True), atol=atol, rtol=atol
        )


def test_roi_align_gradcheck() -> None:
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0, 0.3, 0.6, 4.2, 5.1], [0, -1.5, 2.0, 8.0, 3.0]], dtype=torch.float64)
    for sampling_ratio, aligned in [(-1, False), (2, True)]:
        assert torch.autograd.gradcheck(
            partial(ops.roi_align, boxes=boxes, output_size=3, sampling_ratio=sampling_ratio, aligned=aligned), (x,)
        )


def test_roi_align_box_formats_and_edge_cases() -> None:
    x = torch.randn(2, 3, 13, 17, generator=torch.Generator().manual_seed(0))
    rois = _boxes(12)
    as_list = [rois[rois[:, 0] == i, 1:] for i in range(2)]
    rois_sorted = torch.cat([rois[rois[:, 0] == i] for i in range(2)])
    torch.testing.assert_close(ops.roi_align(x, as_list, 2, 1.0, 2), ref_ops.roi_align(x, rois_sorted, 2, 1.0, 2))
    torch.testing.assert_close(ops.roi_align(x, [as_list[0]], 2), ref_ops.roi_align(x, [as_list[0]], 2))
    one = rois[3:4]
    torch.testing.assert_close(ops.roi_align(x, one, 4, 0.5), ref_ops.roi_align(x, one, 4, 0.5))
    # No boxes: an empty result that still backpropagates (zeros).
    xg = x.clone().requires_grad_()
    empty = ops.roi_align(xg, torch.zeros(0, 5), 7)
    assert empty.shape == (0, 3, 7, 7)
    empty.sum().backward()
    assert torch.equal(xg.grad, torch.zeros_like(x))
    assert ops.roi_align(x, [torch.zeros(0, 4), torch.zeros(0, 4)], 2).shape == (0, 3, 2, 2)
    # Boxes entirely off the map pool zeros, as in the reference.
    far = torch.tensor([[0, 100.0, 100.0, 120.0, 130.0]])
    torch.testing.assert_close(ops.roi_align(x, far, 3), ref_ops.roi_align(x, far, 3))


def test_roi_align_module() -> None:
    module = ops.RoIAlign((3, 2), 0.5, 2, aligned=True)
    theirs = ref_ops.RoIAlign((3, 2), 0.5, 2, aligned=True)
    assert repr(module) == repr(theirs)
    x = torch.randn(2, 3, 13, 17)
    torch.testing.assert_close(module(x, _boxes(9)), theirs(x, _boxes(9)))


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25, 0.3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_roi_pool_parity(spatial_scale: float, dtype: torch.dtype) -> None:
    x = torch.randn(2, 3, 13, 17, generator=torch.Generator().manual_seed(0)).to(dtype)
    boxes = _boxes(40, dtype)
    boxes[3:6, 1:3] = torch.tensor([2.5, 3.5], dtype=dtype)  # halves: std::round goes away from zero
    atol = 1e-2 if dtype == torch.float16 else 1e-6  # gradients sum in a different order; values are exact
    _assert_op_parity(
        ops.roi_pool, ref_ops.roi_pool, x, boxes, atol=atol, output_size=(5, 4), spatial_scale=spatial_scale
    )


def test_roi_pool_ties_and_empty() -> None:
    x = torch.randint(0, 3, (1, 2, 9, 9), generator=torch.Generator().manual_seed(0)).float()
    boxes = torch.tensor([[0, 0, 0, 8, 8.0], [0, 30, 30, 40, 40]])  # ties everywhere; a box off the map (empty bins)
    _assert_op_parity(ops.roi_pool, ref_ops.roi_pool, x, boxes, atol=0, output_size=3)
    assert ops.roi_pool(x, torch.zeros(0, 5), 3).shape == (0, 2, 3, 3)
    assert repr(ops.RoIPool(3, 0.5)) == repr(ref_ops.RoIPool(3, 0.5))
    torch.testing.assert_close(ops.RoIPool(3, 0.5)(x, boxes), ref_ops.RoIPool(3, 0.5)(x, boxes))


@pytest.mark.parametrize("name", ["roi_align", "roi_pool", "RoIAlign", "RoIPool", "MultiScaleRoIAlign"])
def test_signatures(name: str) -> None:
    ours, theirs = getattr(ops, name), getattr(ref_ops, name)
    if inspect.isclass(ours):
        ours, theirs = ours.__init__, theirs.__init__
    assert [(p.name, p.default, p.kind) for p in inspect.signature(ours).parameters.values()] == [
        (p.name, p.default, p.kind) for p in inspect.signature(theirs).parameters.values()
    ]


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda x: ops.roi_align(x[0], torch.zeros(1, 5), 2), ValueError, r"Tensor\[N, C, H, W\]"),
        (lambda x: ops.roi_align(x.long(), torch.zeros(1, 5), 2), TypeError, "floating point"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 4), 2), ValueError, r"\[K, 5\]"),
        (lambda x: ops.roi_align(x, [torch.zeros(1, 5)], 2), ValueError, r"boxes\[0\] must have shape \[L, 4\]"),
        (lambda x: ops.roi_align(x, "boxes", 2), TypeError, "list of Tensor"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5, dtype=torch.float64), 2), TypeError, "dtype of input"),
        (lambda x: ops.roi_align(x, torch.tensor([[0, 5.0, 0, 2, 4]]), 2), ValueError, "box 0 .* x1 <= x2"),
        (lambda x: ops.roi_align(x, torch.tensor([[0, 0, 0, 2, 4.0], [2, 0, 0, 2, 4]]), 2), ValueError, "box 1"),
        (lambda x: ops.roi_align(x, torch.tensor([[0.5, 0, 0, 2, 4]]), 2), ValueError, "integer batch index"),
        (lambda x: ops.roi_align(x, torch.tensor([[0, float("nan"), 0, 2, 4]]), 2), ValueError, "finite"),
        (lambda x: ops.roi_align(x, torch.zeros(1, 5), 0), ValueError, "output_size"),
        (lambda x: ops.roi_pool(x, torch.tensor([[0, 0, 3.0, 2, 2]]), 2), ValueError, "y1 <= y2"),
        (lambda x: ops.roi_pool(x, [torch.zeros(1, 4)] * 3, 2), ValueError, "3 box tensors for a batch of 2"),
    ],
)
def test_bad_input(call, error, match) -> None:
    with pytest.raises(error, match=match):
        call(torch.randn(2, 3, 8, 8))


# ----------------------------------------------------------------------------------------------- multi-scale


def _pyramid() -> OrderedDict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    sizes = {"0": (64, 48), "1": (32, 24), "2": (16, 12), "3": (8, 6), "pool": (4, 3)}
    return OrderedDict((k, torch.randn(2, 4, *s, generator=gen)) for k, s in sizes.items())


def _image_boxes(counts: tuple[int, ...]) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    boxes = []
    for n in counts:
        corner, size = torch.rand(n, 2, generator=gen) * 200, torch.rand(n, 2, generator=gen) * 150
        boxes.append(torch.cat([corner, corner + size], dim=1))
    return boxes


@pytest.mark.parametrize("names", [["0", "1", "2", "3"], ["0", "2"], ["1"], ["0", "1", "missing"]], ids=str)
@pytest.mark.parametrize("counts", [(20, 0), (1, 3), (0, 0)], ids=str)
def test_multiscale_roi_align_parity(names: list[str], counts: tuple[int, ...]) -> None:
    ours, theirs = ops.MultiScaleRoIAlign(names, 7, 2), ref_ops.MultiScaleRoIAlign(names, 7, 2)
    assert repr(ours) == repr(theirs)
    features, boxes, shapes = _pyramid(), _image_boxes(counts), [(256, 190), (250, 192)]
    xs_ours = OrderedDict((k, v.clone().requires_grad_()) for k, v in features.items())
    xs_theirs = OrderedDict((k, v.clone().requires_grad_()) for k, v in features.items())
    out_ours, out_theirs = ours(xs_ours, boxes, shapes), theirs(xs_theirs, boxes, shapes)
    torch.testing.assert_close(out_ours, out_theirs)
    assert ours.scales == theirs.scales
    assert (ours.map_levels.k_min, ours.map_levels.k_max) == (theirs.map_levels.k_min, theirs.map_levels.k_max)
    torch.testing.assert_close(ours.map_levels(boxes), theirs.map_levels(boxes))
    grad = torch.randn(out_theirs.shape, generator=torch.Generator().manual_seed(2))
    (out_ours * grad).sum().backward()
    (out_theirs * grad).sum().backward()
    for key in features:
        if xs_theirs[key].grad is not None:
            torch.testing.assert_close(xs_ours[key].grad, xs_theirs[key].grad)


def test_multiscale_roi_align_options_and_errors() -> None:
    kwargs = dict(canonical_scale=112, canonical_level=3)
    ours, theirs = (
        ops.MultiScaleRoIAlign(["0", "1", "2"], (5, 3), -1, **kwargs),
        ref_ops.MultiScaleRoIAlign(["0", "1", "2"], (5, 3), -1, **kwargs),
    )
    features, boxes, shapes = _pyramid(), _image_boxes((15, 6)), [(256, 192), (256, 192)]
    torch.testing.assert_close(ours(features, boxes, shapes), theirs(features, boxes, shapes))
    with pytest.raises(ValueError, match="none of the feature maps"):
        ops.MultiScaleRoIAlign(["x"], 7, 2)(features, boxes, shapes)
    with pytest.raises(ValueError, match="image_shapes"):
        ops.MultiScaleRoIAlign(["0"], 7, 2)(features, boxes, [])
    with pytest.raises(TypeError, match="featmap_names"):
        ops.MultiScaleRoIAlign("0", 7, 2)
