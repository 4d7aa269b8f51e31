"""RetinaNet and FCOS against the reference, driven by the registry: eval parity of every builder on two images of
different sizes and its training losses under one seed (one pair of models per builder, shared), weights entries
and presets, a new ``num_classes`` with published weights, builder arguments, and, on tiny custom models (cheap),
an image without boxes, bad targets and bad parts."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_weights, pair
from visionzoo import models
from visionzoo.models import detection
from visionzoo.models._api import WeightsEnum
from visionzoo.models.detection import FCOS, RetinaNet
from visionzoo.models.detection.anchor_utils import AnchorGenerator
from visionzoo.models.detection.retinanet import RetinaNetRegressionHead
from visionzoo.transforms import ObjectDetection

SINGLE_STAGE = [
    name for name in models.list_models(module=detection) if models.get_model_info(name).family in ("retinanet", "fcos")
]
SMALL = {"min_size": 256, "max_size": 400}


def _images(seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # Both landscape, so that the padded batch (256 x 384 at min_size 256) wastes little.
    return [torch.rand(3, 240, 320, generator=generator), torch.rand(3, 200, 300, generator=generator)]


def _targets() -> list[dict[str, torch.Tensor]]:
    return [
        {
            "boxes": torch.tensor([[10.0, 20.0, 120.0, 150.0], [150.0, 30.0, 300.0, 200.0], [40.0, 50.0, 70.0, 90.0]]),
            "labels": torch.tensor([1, 5, 7]),
        },
        {"boxes": torch.tensor([[20.0, 40.0, 260.0, 180.0]]), "labels": torch.tensor([3])},
    ]


def test_the_single_stage_builders_are_registered() -> None:
    assert SINGLE_STAGE == ["fcos_resnet50_fpn", "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2"]


@pytest.mark.parametrize("name", SINGLE_STAGE)
def test_eval_and_training_match_the_reference(name: str) -> None:
    config = {"weights_backbone": None, "score_thresh": 0.0, **SMALL}
    ref, ours = pair(
        lambda: reference.models.get_model(name, weights=None, **config),
        lambda: models.get_model(name, weights=None, **config),
    )
    images = _images()
    with torch.inference_mode():
        expected, got = ref(images), ours(images)
    assert len(got) == 2
    for theirs, mine, image in zip(expected, got, images):
        assert sorted(mine) == ["boxes", "labels", "scores"]
        assert mine["boxes"].shape[0] == ours.detections_per_img, "too little to compare"
        assert len(mine["scores"].unique()) > mine["scores"].numel() // 2, "tied scores compare nothing"
        torch.testing.assert_close(mine["boxes"], theirs["boxes"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mine["scores"], theirs["scores"], atol=1e-4, rtol=1e-4)
        assert torch.equal(mine["labels"], theirs["labels"])
        # in the image's own coordinates
        assert mine["boxes"][:, 2].max() <= image.shape[2] and mine["boxes"][:, 3].max() <= image.shape[1]

    # Gradients must reach the heads and the pyramid; the ResNet body (a plain classifier) is left out of the
    # backward pass, which halves its cost.
    ours.backbone.body.requires_grad_(False)
    losses = []
    for model in (ref, ours):
        model.train()
        torch.manual_seed(3)
        losses.append(model(images, _targets()))
    expected_losses, got_losses = losses
    keys = ["classification", "bbox_regression"] + (["bbox_ctrness"] if name.startswith("fcos") else [])
    assert list(got_losses) == list(expected_losses) == keys
    for key in keys:
        torch.testing.assert_close(got_losses[key], expected_losses[key], atol=1e-5, rtol=1e-4, msg=key)
    sum(got_losses.values()).backward()
    fpn = ours.backbone.fpn.inner_blocks[0][0]
    for layer in (ours.head.classification_head.cls_logits, ours.head.regression_head.bbox_reg, fpn):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", SINGLE_STAGE)
def test_weights_entries_and_presets(name: str) -> None:
    assert_same_weights(name)
    image = torch.randint(0, 256, (3, 45, 61), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for member in reference.models.get_model_weights(name):
        mine, theirs = models.get_model_weights(name)[member.name].transforms(), member.transforms()
        assert isinstance(mine, ObjectDetection) and repr(mine) == repr(theirs)
        torch.testing.assert_close(mine(image), theirs(image), atol=0, rtol=0)


@pytest.mark.parametrize("name", SINGLE_STAGE)
def test_published_weights_load_and_a_new_num_classes_rebuilds_only_the_class_logits(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with torch.device("meta"):
        full = models.get_model(name, weights_backbone=None)
    generator = torch.Generator().manual_seed(0)
    # The published checkpoints hold frozen batch norms (no num_batches_tracked), except v2's batch norms.
    checkpoint = {
        key: torch.randn(t.shape, generator=generator) if t.is_floating_point() else torch.zeros(t.shape, dtype=t.dtype)
        for key, t in full.state_dict().items()
        if name.endswith("v2") or not key.endswith("num_batches_tracked")
    }
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(checkpoint))

    model = models.get_model(name, weights="DEFAULT")
    assert model.head.classification_head.num_classes == 91
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, checkpoint[key]), key
    frozen = [m.eps for m in model.modules() if type(m).__name__ == "FrozenBatchNorm2d"]
    # The original RetinaNet checkpoint was trained with frozen batch norms without epsilon.
    assert set(frozen) == (set() if name.endswith("v2") else {0.0} if name.startswith("retinanet") else {1e-5})

    fresh = ["head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias"]
    with pytest.warns(UserWarning, match="num_classes=3 differs from the 91 categories") as caught:
        model = models.get_model(name, weights="DEFAULT", num_classes=3)
    assert all(key in str(caught[0].message) for key in fresh)
    logits = model.head.classification_head.cls_logits
    anchors = model.anchor_generator.num_anchors_per_location()[0]
    assert model.head.classification_head.num_classes == 3 and logits.out_channels == 3 * anchors
    # re-initialised as the head initialises it: small weights, the bias at the 1% prior
    assert logits.weight.std() < 0.02 and torch.allclose(logits.bias, torch.tensor(-4.59512), atol=1e-4)
    state = model.state_dict()
    for key, tensor in checkpoint.items():
        if key not in fresh:
            assert torch.equal(state[key], tensor), key


def test_builder_arguments_reach_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    options = {
        "score_thresh": 0.3,
        "nms_thresh": 0.4,
        "detections_per_img": 7,
        "topk_candidates": 50,
        "min_size": 300,
        "max_size": 500,
    }
    with torch.device("meta"):
        retina = detection.retinanet_resnet50_fpn(
            weights_backbone=None, fg_iou_thresh=0.6, bg_iou_thresh=0.3, **options
        )
        fcos = detection.fcos_resnet50_fpn(weights_backbone=None, num_classes=5, center_sampling_radius=2.0, **options)
        v2 = detection.retinanet_resnet50_fpn_v2(weights_backbone=None, num_classes=4)
    for model in (retina, fcos):
        assert (model.score_thresh, model.nms_thresh, model.detections_per_img, model.topk_candidates) == (
            0.3,
            0.4,
            7,
            50,
        )
        assert model.transform.min_size == (300,) and model.transform.max_size == 500
    assert (retina.proposal_matcher.high_threshold, retina.proposal_matcher.low_threshold) == (0.6, 0.3)
    assert retina.proposal_matcher.allow_low_quality_matches
    assert fcos.center_sampling_radius == 2.0 and fcos.head.classification_head.cls_logits.out_channels == 5
    assert v2.head.regression_head._loss_type == "giou" and retina.head.regression_head._loss_type == "l1"
    assert v2.head.classification_head.cls_logits.out_channels == 9 * 4
    assert {type(m).__name__ for m in v2.head.modules()} >= {"GroupNorm"}

    # trainable_backbone_layers with ImageNet backbone weights: frozen stem and first stages, frozen batch norms.
    with torch.device("meta"):
        imagenet = {
            k: torch.zeros(t.shape, dtype=t.dtype, device="cpu") for k, t in models.resnet50().state_dict().items()
        }
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(imagenet))
    model = detection.fcos_resnet50_fpn(trainable_backbone_layers=2)
    trainable = {n.split(".")[0] for n, p in model.backbone.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3", "layer4"}
    assert "BatchNorm2d" not in {type(m).__name__ for m in model.backbone.body.modules()}
    with pytest.raises(ValueError, match="Trainable backbone layers should be in the range"):
        detection.retinanet_resnet50_fpn(trainable_backbone_layers=6)
    with pytest.warns(UserWarning, match="falling back to trainable_backbone_layers=5"), torch.device("meta"):
        model = detection.retinanet_resnet50_fpn_v2(trainable_backbone_layers=1)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        detection.fcos_resnet50_fpn(weights_backbone=None, num_classes=0)


# --------------------------------------------------------------------------------------------------
# Tiny custom models: the classes on their own (the reference docstrings' way), cheap enough for the edge cases.
# --------------------------------------------------------------------------------------------------


def _tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Conv2d(3, 32, 3, stride=8, padding=1), nn.ReLU())
    backbone.out_channels = 32
    return backbone


def _tiny(module: Any, kind: str) -> nn.Module:
    if kind == "retinanet":
        anchors = module.anchor_utils.AnchorGenerator(((32, 64),), ((0.5, 1.0, 2.0),))
        return module.RetinaNet(_tiny_backbone(), num_classes=4, anchor_generator=anchors, min_size=64, max_size=96)
    anchors = module.anchor_utils.AnchorGenerator(((8,),), ((1.0,),))
    return module.FCOS(_tiny_backbone(), num_classes=4, anchor_generator=anchors, min_size=64, max_size=96)


@pytest.fixture(scope="module", params=["retinanet", "fcos"])
def tiny_pair(request: pytest.FixtureRequest) -> tuple[nn.Module, nn.Module]:
    return pair(lambda: _tiny(reference.models.detection, request.param), lambda: _tiny(detection, request.param))


def _tiny_images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return [torch.rand(3, 64, 80, generator=generator), torch.rand(3, 72, 64, generator=generator)]


def test_an_image_without_boxes_trains_as_the_reference_does(tiny_pair: tuple[nn.Module, nn.Module]) -> None:
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 8.0, 70.0, 30.0]]), "labels": torch.tensor([1, 3])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},
    ]
    losses = []
    for model in tiny_pair:
        model.train()
        torch.manual_seed(0)
        losses.append(model(_tiny_images(), targets))
    for key, value in losses[0].items():
        torch.testing.assert_close(losses[1][key], value, atol=1e-6, rtol=1e-5, msg=key)
    assert all(torch.isfinite(v) for v in losses[1].values())


def _bad(index: int, **changes: Any) -> list[dict[str, torch.Tensor]]:
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[1.0, 2.0, 30.0, 40.0], [8.0, 9.0, 20.0, 30.0]]), "labels": torch.tensor([2, 3])},
    ]
    targets[index] = {**targets[index], **changes}
    return targets


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        (None, ValueError, "targets should not be None"),
        ([{"labels": torch.tensor([1])}, _bad(0)[1]], ValueError, "target 0 has no boxes"),
        (_bad(1, boxes=torch.tensor([1.0, 2.0, 3.0, 4.0])), ValueError, r"target 1: boxes must have shape \(N, 4\)"),
        (
            _bad(1, boxes=torch.tensor([[1.0, 2.0, 30.0, 40.0], [50.0, 5.0, 40.0, 60.0]])),
            ValueError,
            r"target 1: box 1 .*x2 <= x1",
        ),
        (_bad(0, boxes=torch.tensor([[1.0, 20.0, 30.0, 20.0]])), ValueError, r"target 0: box 0 .*y2 <= y1"),
        (_bad(0, labels=torch.tensor([1.0])), TypeError, "target 0: labels must be an integer Tensor"),
    ],
)
def test_bad_targets_raise_clear_errors(
    tiny_pair: tuple[nn.Module, nn.Module], targets: Any, error: type, match: str
) -> None:
    model = tiny_pair[1].train()
    with pytest.raises(error, match=match):
        model(_tiny_images(), targets)


def test_bad_calls_and_parts_raise_clear_errors(tiny_pair: tuple[nn.Module, nn.Module]) -> None:
    model = tiny_pair[1].eval()
    with pytest.raises(ValueError, match="targets were given in eval mode"):
        model(_tiny_images(), _bad(0))
    with pytest.raises(TypeError, match="list"):
        model(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"image 1"):
        model([torch.rand(3, 64, 64), torch.rand(64, 64)])
    for cls in (RetinaNet, FCOS):
        with pytest.raises(ValueError, match="out_channels"):
            cls(nn.Sequential(nn.Conv2d(3, 8, 3)), num_classes=2)
        with pytest.raises(TypeError, match="anchor_generator should be of type AnchorGenerator"):
            cls(_tiny_backbone(), num_classes=2, anchor_generator=nn.Identity())
    with pytest.raises(ValueError, match=r"num_anchors_per_location\(\)\[0\] should be 1 instead of 3"):
        FCOS(_tiny_backbone(), num_classes=2, anchor_generator=AnchorGenerator(((8,),), ((0.5, 1.0, 2.0),)))
    with pytest.raises(ValueError, match="loss_type must be one of l1, smooth_l1, giou, diou, ciou"):
        RetinaNetRegressionHead(32, 9, loss_type="l2")


@pytest.mark.parametrize("loss_type", ["smooth_l1", "diou", "ciou"])
def test_other_box_losses_match_the_reference(loss_type: str) -> None:
    ref, ours = pair(
        lambda: _tiny(reference.models.detection, "retinanet"), lambda: _tiny(detection, "retinanet"), check_init=False
    )
    targets = _bad(0)
    losses = []
    for model in (ref, ours):
        model.head.regression_head._loss_type = loss_type
        model.train()
        torch.manual_seed(0)
        losses.append(model(_tiny_images(), targets)["bbox_regression"])
    torch.testing.assert_close(losses[1], losses[0], atol=1e-6, rtol=1e-5)
