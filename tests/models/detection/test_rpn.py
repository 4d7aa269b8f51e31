"""RegionProposalNetwork and RPNHead against the reference: initialisation, proposals, losses under one seed."""

from __future__ import annotations

import pytest
import torch

from tests import reference
from visionzoo.models.detection import rpn as ours
from visionzoo.models.detection.anchor_utils import AnchorGenerator
from visionzoo.models.detection.image_list import ImageList

theirs = reference.models.detection.rpn
ReferenceImageList = reference.models.detection.image_list.ImageList

SIZES, RATIOS = ((32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 3
SETTINGS = {
    "fg_iou_thresh": 0.7,
    "bg_iou_thresh": 0.3,
    "batch_size_per_image": 64,
    "positive_fraction": 0.5,
    "pre_nms_top_n": {"training": 300, "testing": 150},
    "post_nms_top_n": {"training": 100, "testing": 50},
    "nms_thresh": 0.7,
}


def build_pair(**overrides) -> tuple[torch.nn.Module, torch.nn.Module]:
    settings = {**SETTINGS, **overrides}
    torch.manual_seed(0)
    ref = theirs.RegionProposalNetwork(
        reference.models.detection.anchor_utils.AnchorGenerator(SIZES, RATIOS), theirs.RPNHead(16, 3), **settings
    )
    torch.manual_seed(0)
    mine = ours.RegionProposalNetwork(AnchorGenerator(SIZES, RATIOS), ours.RPNHead(16, 3), **settings)
    assert list(mine.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert torch.equal(mine.state_dict()[key], value), key  # the same initialisation, draw for draw
    with torch.no_grad():  # larger weights than the init's, so that scores spread and NMS has work to do
        for parameter in ref.parameters():
            parameter.normal_(0, 0.3)
    mine.load_state_dict(ref.state_dict())
    return mine, ref


def inputs() -> tuple[torch.Tensor, list[tuple[int, int]], dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(1)
    batch = torch.rand(2, 3, 128, 160, generator=generator)
    sizes = [(128, 150), (100, 160)]
    features = {str(i): torch.randn(2, 16, 128 // s, 160 // s, generator=generator) for i, s in enumerate((4, 8, 16))}
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [80.0, 20.0, 140.0, 120.0], [5.0, 5.0, 20.0, 14.0]])},
        {"boxes": torch.zeros(0, 4)},  # negatives only
    ]
    return batch, sizes, features, targets


@pytest.mark.parametrize("score_thresh", [0.0, 0.5])
def test_rpn_proposals_match_the_reference(score_thresh: float) -> None:
    mine, ref = build_pair(score_thresh=score_thresh)
    mine.eval(), ref.eval()
    batch, sizes, features, _ = inputs()
    with torch.no_grad():
        ours_boxes, ours_losses = mine(ImageList(batch, sizes), features)
        ref_boxes, _ = ref(ReferenceImageList(batch, sizes), features)
    assert ours_losses == {}
    for a, b in zip(ours_boxes, ref_boxes, strict=True):
        assert len(a) > 10 and torch.equal(a, b)


def test_rpn_losses_and_gradients_match_the_reference() -> None:
    mine, ref = build_pair()
    mine.train(), ref.train()
    batch, sizes, features, targets = inputs()
    torch.manual_seed(5)
    ours_boxes, ours_losses = mine(ImageList(batch, sizes), features, targets)
    torch.manual_seed(5)
    ref_boxes, ref_losses = ref(ReferenceImageList(batch, sizes), features, targets)
    assert list(ours_losses) == ["loss_objectness", "loss_rpn_box_reg"] == list(ref_losses)
    for key in ours_losses:
        assert torch.equal(ours_losses[key], ref_losses[key]), key
    for a, b in zip(ours_boxes, ref_boxes, strict=True):
        assert torch.equal(a, b)
    sum(ours_losses.values()).backward()
    sum(ref_losses.values()).backward()
    for (name, a), b in zip(mine.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_rpn_head_loads_the_version_1_layout() -> None:
    head = ours.RPNHead(8, 3)
    old = {k.replace("conv.0.0.", "conv."): v for k, v in head.state_dict().items()}
    fresh = ours.RPNHead(8, 3)
    old_metadata = {"": {"version": 1}}
    state = type(head.state_dict())(old)
    state._metadata = old_metadata
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), head.state_dict().values()))


def test_rpn_helpers_match_the_reference() -> None:
    cls = [torch.randn(2, 3 * 2, 5, 7), torch.randn(2, 3 * 2, 2, 3)]
    reg = [torch.randn(2, 3 * 4, 5, 7), torch.randn(2, 3 * 4, 2, 3)]
    for a, b in zip(ours.concat_box_prediction_layers(cls, reg), theirs.concat_box_prediction_layers(cls, reg)):
        assert torch.equal(a, b)


def test_rpn_errors() -> None:
    mine, _ = build_pair()
    batch, sizes, features, _ = inputs()
    with pytest.raises(ValueError, match="targets should not be None"):
        mine.train()(ImageList(batch, sizes), features)
    with pytest.raises(ValueError, match="'training' and 'testing'"):
        ours.RegionProposalNetwork(AnchorGenerator(), ours.RPNHead(8, 3), **{**SETTINGS, "pre_nms_top_n": {"train": 3}})
