"""RoIHeads (box branch) against the reference: detections in eval, losses and gradients under one seed."""

from __future__ import annotations

import pytest
import torch

from tests import reference
from visionzoo.models.detection import roi_heads as ours

theirs = reference.models.detection.roi_heads
faster_rcnn = reference.models.detection.faster_rcnn
SETTINGS = (0.5, 0.5, 32, 0.25, None, 0.0, 0.5, 20)  # thresholds, sampling, weights, score/nms/detections
NUM_CLASSES = 4


def make(roi_heads_type: type, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    pool = reference.ops.MultiScaleRoIAlign(["0", "1"], 7, 2)  # the pooling and heads are inputs of RoIHeads
    head = faster_rcnn.TwoMLPHead(8 * 7 * 7, 32)
    predictor = faster_rcnn.FastRCNNPredictor(32, NUM_CLASSES)
    with torch.no_grad():
        predictor.bbox_pred.weight.normal_(0, 0.5)  # spread the boxes so that NMS and clipping have work
    return roi_heads_type(pool, head, predictor, *SETTINGS, **overrides)


def inputs() -> tuple[dict[str, torch.Tensor], list[torch.Tensor], list[tuple[int, int]], list[dict]]:
    generator = torch.Generator().manual_seed(2)
    features = {
        "0": torch.randn(2, 8, 32, 40, generator=generator),
        "1": torch.randn(2, 8, 16, 20, generator=generator),
    }
    corner = torch.rand(2, 60, 2, generator=generator) * 100
    proposals = list(torch.cat((corner, corner + 5 + torch.rand(2, 60, 2, generator=generator) * 60), dim=2))
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0], [70.0, 30.0, 120.0, 110.0]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    return features, proposals, [(128, 150), (110, 160)], targets


def test_detections_match_the_reference() -> None:
    mine, ref = make(ours.RoIHeads).eval(), make(theirs.RoIHeads).eval()
    assert list(mine.state_dict()) == list(ref.state_dict())
    features, proposals, shapes, _ = inputs()
    with torch.no_grad():
        ours_result, ours_losses = mine(features, proposals, shapes)
        ref_result, _ = ref(features, proposals, shapes)
    assert ours_losses == {}
    for a, b in zip(ours_result, ref_result, strict=True):
        assert list(a) == ["boxes", "labels", "scores"] and len(a["boxes"]) == 20
        for key in a:
            assert torch.equal(a[key], b[key]), key


def test_losses_and_gradients_match_the_reference() -> None:
    mine, ref = make(ours.RoIHeads).train(), make(theirs.RoIHeads).train()
    features, proposals, shapes, targets = inputs()
    torch.manual_seed(4)
    _, ours_losses = mine(features, proposals, shapes, targets)
    torch.manual_seed(4)
    _, ref_losses = ref(features, proposals, shapes, targets)
    assert list(ours_losses) == ["loss_classifier", "loss_box_reg"] == list(ref_losses)
    for key in ours_losses:
        assert torch.equal(ours_losses[key], ref_losses[key]), key
    assert ours_losses["loss_box_reg"] > 0
    sum(ours_losses.values()).backward()
    sum(ref_losses.values()).backward()
    for (name, a), b in zip(mine.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_fastrcnn_loss_matches_the_reference() -> None:
    logits, regression = torch.randn(10, 5), torch.randn(10, 20)
    labels, targets = (
        [torch.tensor([0, 1, 4, 2, 0]), torch.tensor([3, 0, 0, 0, 1])],
        [torch.randn(5, 4), torch.randn(5, 4)],
    )
    for a, b in zip(
        ours.fastrcnn_loss(logits, regression, labels, targets),
        theirs.fastrcnn_loss(logits, regression, labels, targets),
    ):
        assert torch.equal(a, b)


def test_roi_heads_errors() -> None:
    mine = make(ours.RoIHeads).train()
    features, proposals, shapes, targets = inputs()
    with pytest.raises(ValueError, match="targets should not be None"):
        mine(features, proposals, shapes)
    with pytest.raises(ValueError, match="labels key"):
        mine(features, proposals, shapes, [{"boxes": t["boxes"]} for t in targets])
    with pytest.raises(TypeError, match="int64"):
        mine(features, proposals, shapes, [{**t, "labels": t["labels"].int()} for t in targets])
