"""AnchorGenerator against the reference: cell anchors, anchors per image and feature map, dtypes, errors."""

from __future__ import annotations

import pytest
import torch

from tests import reference
from visionzoo.models.detection.anchor_utils import AnchorGenerator
from visionzoo.models.detection.image_list import ImageList

ReferenceAnchorGenerator = reference.models.detection.anchor_utils.AnchorGenerator
ReferenceImageList = reference.models.detection.image_list.ImageList

FPN_SIZES = ((32,), (64,), (128,), (256,), (512,))
FPN_RATIOS = ((0.5, 1.0, 2.0),) * 5


def anchors_of(generator: torch.nn.Module, image_list_type: type, batch: torch.Tensor, features: list) -> list:
    sizes = [(batch.shape[-2] - 5, batch.shape[-1]), (batch.shape[-2], batch.shape[-1] - 30)]
    return generator(image_list_type(batch, sizes), features)


@pytest.mark.parametrize(
    ("sizes", "ratios", "strides"),
    [
        (((128, 256, 512),), ((0.5, 1.0, 2.0),), [16]),  # the single-map default (e.g. the tutorial's MobileNetV2)
        (FPN_SIZES, FPN_RATIOS, [4, 8, 16, 32, 64]),  # Faster R-CNN with FPN
        (((32, 64, 128, 256, 512),) * 3, ((0.5, 1.0, 2.0),) * 3, [8, 16, 32]),  # MobileNetV3 FPN
        ((16, 40, 100), (0.25, 1.0, 3.0, 7.5), [8, 16, 32]),  # flat sizes and ratios
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_anchors_match_the_reference(sizes: tuple, ratios: tuple, strides: list[int], dtype: torch.dtype) -> None:
    mine, ref = AnchorGenerator(sizes, ratios), ReferenceAnchorGenerator(sizes, ratios)
    assert mine.num_anchors_per_location() == ref.num_anchors_per_location()
    for a, b in zip(mine.cell_anchors, ref.cell_anchors, strict=True):
        assert torch.equal(a, b)
    batch = torch.zeros(2, 3, 320, 416, dtype=dtype)
    features = [torch.zeros(2, 8, 320 // s, 416 // s, dtype=dtype) for s in strides]
    ours_out = anchors_of(mine, ImageList, batch, features)
    theirs_out = anchors_of(ref, ReferenceImageList, batch, features)
    assert len(ours_out) == len(theirs_out) == 2
    for a, b in zip(ours_out, theirs_out, strict=True):
        assert a.dtype == b.dtype == dtype and torch.equal(a, b)


def test_anchors_for_a_feature_map_not_dividing_the_image() -> None:
    """Strides come from integer division of the padded batch's size by the map's; odd sizes follow the reference."""
    mine, ref = AnchorGenerator(), ReferenceAnchorGenerator()
    batch, features = torch.zeros(1, 3, 100, 75), [torch.zeros(1, 4, 7, 5)]
    sizes = [(100, 75)]
    assert torch.equal(mine(ImageList(batch, sizes), features)[0], ref(ReferenceImageList(batch, sizes), features)[0])


def test_anchor_generator_is_stateless_in_the_state_dict() -> None:
    generator = AnchorGenerator(FPN_SIZES, FPN_RATIOS)
    assert generator.state_dict() == {} and list(generator.parameters()) == []


def test_anchor_generator_errors() -> None:
    with pytest.raises(ValueError, match="as many feature maps"):
        AnchorGenerator(FPN_SIZES, ((0.5, 1.0),) * 3)
    with pytest.raises(ValueError, match="positive"):
        AnchorGenerator(((32, -64),), ((1.0,),))
    with pytest.raises(ValueError, match="positive"):
        AnchorGenerator(((32,),), ((0.0,),))
    generator = AnchorGenerator(FPN_SIZES, FPN_RATIOS)
    batch = torch.zeros(1, 3, 64, 64)
    with pytest.raises(ValueError, match="got 2 feature maps for an AnchorGenerator built for 5"):
        generator(ImageList(batch, [(64, 64)]), [torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 8, 8)])
