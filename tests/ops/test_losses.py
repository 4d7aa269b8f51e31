"""Parity of ``visionzoo.ops.losses`` with the reference: values, gradients, reductions, errors."""

from __future__ import annotations

import pytest
import torch

import visionzoo.ops as ops
from tests.reference import ops as ref_ops

BOX_LOSSES = ["generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"]


def _matched_boxes(n: int, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(n)
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 10
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 5 + 0.5
    pred = torch.cat([xy, xy + wh], 1)
    target = pred + torch.randn(n, 4, generator=gen, dtype=torch.float64) * 0.8
    target[:, 2:] = torch.maximum(target[:, 2:], target[:, :2] + 0.1)
    target[0] = pred[0]  # identical pair
    target[1] = pred[1] + 20  # disjoint pair
    return pred.to(dtype), target.to(dtype)


@pytest.mark.parametrize("name", BOX_LOSSES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_box_losses_match_reference(name: str, reduction: str, dtype: torch.dtype) -> None:
    pred, target = _matched_boxes(6, dtype)
    ours = getattr(ops, name)(pred, target, reduction=reduction)
    theirs = getattr(ref_ops, name)(pred, target, reduction=reduction)
    assert ours.dtype == theirs.dtype
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("name", BOX_LOSSES)
def test_box_losses_gradients(name: str) -> None:
    pred, target = _matched_boxes(5)
    pred.requires_grad_()
    target.requires_grad_()
    if name != "complete_box_iou_loss":  # its penalty weight is held constant on purpose
        assert torch.autograd.gradcheck(lambda a, b: getattr(ops, name)(a, b, reduction="sum"), (pred, target))
    ours = torch.autograd.grad(getattr(ops, name)(pred, target, reduction="mean"), (pred, target))
    theirs = torch.autograd.grad(getattr(ref_ops, name)(pred, target, reduction="mean"), (pred, target))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", BOX_LOSSES)
def test_box_losses_empty_and_degenerate(name: str) -> None:
    empty = torch.zeros(0, 4, requires_grad=True)
    for reduction in ("none", "mean", "sum"):
        ours = getattr(ops, name)(empty, empty, reduction=reduction)
        torch.testing.assert_close(ours, getattr(ref_ops, name)(empty, empty, reduction=reduction))
    degenerate = torch.tensor([[2.0, 2, 2, 2], [1, 1, 4, 1]])
    target = torch.tensor([[2.0, 2, 2, 2], [0, 0, 3, 3]])
    torch.testing.assert_close(
        getattr(ops, name)(degenerate, target), getattr(ref_ops, name)(degenerate, target), equal_nan=True
    )


@pytest.mark.parametrize("alpha", [0.25, 0.0, 1.0, -1])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_focal_loss(alpha: float, gamma: float, reduction: str) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = (torch.rand(3, 7, generator=gen) > 0.7).double()
    ours = ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    theirs = ref_ops.sigmoid_focal_loss(logits, targets, alpha, gamma, reduction)
    torch.testing.assert_close(ours, theirs)
    (ours_grad,) = torch.autograd.grad(ours.sum(), logits)
    (theirs_grad,) = torch.autograd.grad(theirs.sum(), logits)
    torch.testing.assert_close(ours_grad, theirs_grad)
    assert torch.autograd.gradcheck(lambda x: ops.sigmoid_focal_loss(x, targets, alpha, gamma, "sum"), (logits,))


def test_bad_loss_input() -> None:
    pred, target = _matched_boxes(3)
    with pytest.raises(ValueError, match="reduction"):
        ops.generalized_box_iou_loss(pred, target, reduction="avg")
    with pytest.raises(ValueError, match="same shape"):
        ops.distance_box_iou_loss(pred, target[:2])
    inverted = pred.clone()
    inverted[2, 3] = inverted[2, 1] - 1
    with pytest.raises(ValueError, match=r"boxes1\[2\]"):
        ops.complete_box_iou_loss(inverted, target)
    with pytest.raises(ValueError, match="alpha"):
        ops.sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), alpha=1.5)
    with pytest.raises(ValueError, match="same shape"):
        ops.sigmoid_focal_loss(torch.zeros(2), torch.zeros(3))
