"""SSD300 and SSDlite320 against the reference: eval parity of every SSD builder on two images of different sizes,
training losses under one seed (and the hard negative mining at other ratios), the default boxes and the
fixed-size transform, weights entries and presets, a new ``num_classes`` with published weights, trainable
backbone stages, builder arguments and bad targets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_weights, pair
from tests.models.detection._inputs import two_images, two_targets
from visionzoo import models
from visionzoo.models import detection
from visionzoo.models._api import WeightsEnum
from visionzoo.models.detection.anchor_utils import DefaultBoxGenerator
from visionzoo.models.detection.image_list import ImageList
from visionzoo.models.detection.ssd import SSD, _nms_per_row, _vgg_extractor
from visionzoo.ops import batched_nms
from visionzoo.transforms import ObjectDetection

SSD_MODELS = models.list_models(module=detection, include="ssd*")
# Score threshold 0 (every class of every box is a candidate); few candidates per class keep NMS quick.
EVAL = {"weights_backbone": None, "score_thresh": 0.0, "topk_candidates": 20}


def _randomise(ref: nn.Module, ours: nn.Module, *, rescale_convs: bool) -> None:
    """Give the zero-initialised biases random values, and (``rescale_convs``) every convolution He-scaled weights:
    SSDlite's own initialisation (std 0.03 everywhere) shrinks the features to ~1e-20, which leaves every box the
    same score. Done in the reference, then loaded into ours."""
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for module in ref.modules():
            if rescale_convs and isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            bias = getattr(module, "bias", None)
            if isinstance(bias, torch.Tensor) and not bias.any():
                bias.copy_(torch.randn(bias.shape, generator=generator) * 0.1)
    ours.load_state_dict(ref.state_dict(), strict=True)


@pytest.fixture(scope="module", params=SSD_MODELS)
def models_pair(request: pytest.FixtureRequest) -> tuple[str, nn.Module, nn.Module]:
    name = request.param
    ref, ours = pair(
        lambda: reference.models.get_model(name, weights=None, **EVAL),
        lambda: models.get_model(name, weights=None, **EVAL),
    )
    _randomise(ref, ours, rescale_convs="mobilenet" in name)
    return name, ref, ours


def test_eval_parity_on_images_of_different_sizes(models_pair: tuple[str, nn.Module, nn.Module]) -> None:
    _, ref, ours = models_pair
    ref.eval(), ours.eval()
    images = two_images()
    with torch.inference_mode():
        expected, got = ref(images), ours(images)
    assert len(got) == 2
    for theirs, mine, image in zip(expected, got, images):
        assert sorted(mine) == ["boxes", "labels", "scores"]
        assert mine["boxes"].shape[0] > 10, "too little to compare"
        assert len(mine["scores"].unique()) > mine["scores"].numel() // 2, "tied scores compare nothing"
        torch.testing.assert_close(mine["boxes"], theirs["boxes"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mine["scores"], theirs["scores"], atol=1e-4, rtol=1e-4)
        assert torch.equal(mine["labels"], theirs["labels"])
        # in the image's own coordinates
        assert mine["boxes"][:, 2].max() <= image.shape[2] + 1e-3 and mine["boxes"][:, 3].max() <= image.shape[1] + 1e-3


def test_training_losses_equal_the_reference_under_one_seed(models_pair: tuple[str, nn.Module, nn.Module]) -> None:
    _, ref, ours = models_pair
    losses = []
    for model in (ref, ours):
        model.train()
        torch.manual_seed(3)
        losses.append(model(two_images(), two_targets()))
        model.eval()
    expected, got = losses
    assert list(got) == list(expected) == ["bbox_regression", "classification"]
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-4, msg=key)
    sum(got.values()).backward()
    for part in (ours.head.classification_head, ours.head.regression_head, ours.backbone.extra):
        assert all(p.grad is not None for p in part.parameters()) and any(p.grad.any() for p in part.parameters())
    ours.zero_grad(set_to_none=True)


@pytest.mark.parametrize("positive_fraction", [0.25, 0.5, 0.01, 1.0])
def test_hard_negative_mining_equals_the_reference(positive_fraction: float) -> None:
    """The loss on made-up head outputs, with ratios up to more negatives than there are."""
    theirs = reference.models.detection.ssd.SSD.compute_loss
    generator = torch.Generator().manual_seed(5)
    num_boxes, num_classes = 40, 6
    anchors = [torch.rand(num_boxes, 2, generator=generator) * 50] * 2
    anchors = [torch.cat((a, a + 5 + torch.rand(num_boxes, 2, generator=generator) * 30), dim=1) for a in anchors]
    head = {
        "bbox_regression": torch.randn(2, num_boxes, 4, generator=generator),
        "cls_logits": torch.randn(2, num_boxes, num_classes, generator=generator),
    }
    matched = [torch.randint(-1, 3, (num_boxes,), generator=generator), torch.full((num_boxes,), -1)]
    targets = [
        {"boxes": torch.tensor([[0.0, 0.0, 20.0, 30.0], [10.0, 5.0, 60.0, 40.0], [30.0, 30.0, 70.0, 80.0]]),
         "labels": torch.tensor([2, 0, 5])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},
    ]  # fmt: skip
    tiny = nn.Conv2d(3, 4, kernel_size=1)
    tiny.out_channels = [4]
    ours = SSD(tiny, DefaultBoxGenerator([[2]]), (32, 32), num_classes, positive_fraction=positive_fraction)
    # The reference's loss reads only these two attributes of its model.
    holder = SimpleNamespace(
        neg_to_pos_ratio=ours.neg_to_pos_ratio, box_coder=reference.models.detection._utils.BoxCoder((10, 10, 5, 5))
    )
    expected = theirs(holder, targets, head, anchors, matched)
    got = ours.compute_loss(targets, head, anchors, matched)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-6, rtol=1e-6, msg=key)


@pytest.mark.parametrize("k", [1, 2, 40, 300])
def test_nms_per_class_row_keeps_what_batched_nms_keeps(k: int) -> None:
    generator = torch.Generator().manual_seed(2)
    rows = 5
    corners = torch.rand(rows, k, 2, generator=generator) * 100
    boxes = torch.cat((corners, corners + 5 + torch.rand(rows, k, 2, generator=generator) * 40), dim=2)
    scores = ((torch.rand(rows, k, generator=generator) * 20).round() / 20).sort(dim=1, descending=True).values
    candidate = torch.rand(rows, k, generator=generator) > 0.2
    labels = torch.arange(rows)[:, None].expand(rows, k)
    for threshold in (0.45, 0.0, 1.0):
        kept = batched_nms(boxes[candidate], scores[candidate], labels[candidate], threshold)
        expected = torch.zeros(int(candidate.sum()), dtype=torch.bool)
        expected[kept] = True
        assert torch.equal(_nms_per_row(boxes, candidate, threshold)[candidate], expected)


def test_post_processing_takes_the_general_nms_for_long_candidate_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    from visionzoo.models.detection import ssd

    generator = torch.Generator().manual_seed(4)
    tiny = nn.Conv2d(3, 4, kernel_size=1)
    tiny.out_channels = [4]
    model = SSD(tiny, DefaultBoxGenerator([[2]]), (32, 32), 5, score_thresh=0.1, topk_candidates=30)
    model.detections_per_img = 25
    anchors = [torch.rand(60, 2, generator=generator) * 20]
    anchors = [torch.cat((anchors[0], anchors[0] + 4 + torch.rand(60, 2, generator=generator) * 10), dim=1)]
    head = {"bbox_regression": torch.randn(1, 60, 4, generator=generator), "cls_logits": torch.randn(1, 60, 5)}
    rowwise = model.postprocess_detections(head, anchors, [(32, 32)])
    monkeypatch.setattr(ssd, "_ROW_NMS_MAX", 0)
    general = model.postprocess_detections(head, anchors, [(32, 32)])
    assert len(rowwise[0]["scores"]) == 25
    for key in ("boxes", "scores", "labels"):
        assert torch.equal(rowwise[0][key], general[0][key]), key


@pytest.mark.parametrize(
    ("args", "kwargs", "size", "grids"),
    [
        (
            [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
            {"scales": [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05], "steps": [8, 16, 32, 64, 100, 300]},
            (300, 300),
            [38, 19, 10, 5, 3, 1],
        ),
        ([[2, 3]] * 6, {"min_ratio": 0.2, "max_ratio": 0.95}, (320, 320), [20, 10, 5, 3, 2, 1]),
        ([[2, 3]], {"clip": False}, (200, 120), [7]),
        ([[1.5], [2, 4]], {"min_ratio": 0.1, "max_ratio": 0.6, "steps": [16, 32]}, (96, 160), [6, 3]),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_boxes_equal_the_reference(
    args: list, kwargs: dict[str, Any], size: tuple[int, int], grids: list[int], dtype: torch.dtype
) -> None:
    theirs = reference.models.detection.anchor_utils.DefaultBoxGenerator(args, **kwargs)
    ours = DefaultBoxGenerator(args, **kwargs)
    assert repr(ours) == repr(theirs) and ours.scales == theirs.scales
    assert ours.num_anchors_per_location() == theirs.num_anchors_per_location()
    batch = torch.zeros(2, 3, *size, dtype=dtype)
    features = [torch.zeros(2, 8, g, g + 1, dtype=dtype) for g in grids]
    expected = theirs(reference.models.detection.image_list.ImageList(batch, [size, size]), features)
    got = ours(ImageList(batch, [size, size]), features)
    assert len(got) == len(expected) == 2
    for mine, their in zip(got, expected):
        assert mine.dtype == their.dtype
        torch.testing.assert_close(mine, their, atol=0, rtol=0)


def test_default_box_generator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="aspect_ratios and steps should have the same length"):
        DefaultBoxGenerator([[2], [2]], steps=[8])
    with pytest.raises(ValueError, match="scales must hold 3 positive numbers"):
        DefaultBoxGenerator([[2], [2]], scales=[0.1, 0.2])
    generator = DefaultBoxGenerator([[2], [2]])
    with pytest.raises(ValueError, match="got 1 feature maps for a DefaultBoxGenerator built for 2"):
        generator(ImageList(torch.zeros(1, 3, 32, 32), [(32, 32)]), [torch.zeros(1, 4, 4, 4)])


@pytest.mark.parametrize("name", SSD_MODELS)
def test_fixed_size_transform_equals_the_reference(name: str) -> None:
    with torch.device("meta"):
        ours = models.get_model(name, weights_backbone=None)
        theirs = reference.models.get_model(name, weights_backbone=None)
    for training in (False, True):
        ours.transform.train(training), theirs.transform.train(training)
        targets = two_targets() if training else None
        torch.manual_seed(0)
        expected = theirs.transform(two_images(), targets)
        torch.manual_seed(0)
        got = ours.transform(two_images(), targets)
        assert got[0].image_sizes == expected[0].image_sizes == [ours.transform.fixed_size[::-1]] * 2
        torch.testing.assert_close(got[0].tensors, expected[0].tensors, atol=1e-5, rtol=1e-6)
        for mine, their in zip(got[1] or [], expected[1] or []):
            torch.testing.assert_close(mine["boxes"], their["boxes"], atol=0, rtol=0)


@pytest.mark.parametrize("name", SSD_MODELS)
def test_weights_entries_and_presets(name: str) -> None:
    assert_same_weights(name)
    image = torch.randint(0, 256, (3, 45, 61), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for member in reference.models.get_model_weights(name):
        mine, theirs = models.get_model_weights(name)[member.name].transforms(), member.transforms()
        assert isinstance(mine, ObjectDetection) and repr(mine) == repr(theirs)
        torch.testing.assert_close(mine(image), theirs(image), atol=0, rtol=0)


def test_published_weights_load_and_a_new_num_classes_rebuilds_only_the_class_logits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "ssdlite320_mobilenet_v3_large"
    torch.manual_seed(0)
    checkpoint = reference.models.get_model(name, weights=None, weights_backbone=None).state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(checkpoint))
    model = models.get_model(name, weights="DEFAULT", topk_candidates=5).eval()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in checkpoint.items())
    with torch.inference_mode():  # built on meta for loading: nothing may stay there
        (found,) = model([torch.rand(3, 50, 70)])
    assert found["boxes"].shape[1] == 4 and len(found["boxes"]) == len(found["scores"]) > 0
    fresh = [f"head.classification_head.module_list.{i}.1.{kind}" for i in range(6) for kind in ("weight", "bias")]
    with pytest.warns(UserWarning, match="num_classes=3 differs from the 91 categories") as caught:
        model = models.get_model(name, weights="DEFAULT", num_classes=3)
    assert all(key in str(caught[0].message) for key in fresh)
    assert model.head.classification_head.num_columns == 3
    assert [layer[1].out_channels for layer in model.head.classification_head.module_list] == [18] * 6
    state = model.state_dict()
    for key, tensor in checkpoint.items():
        if key not in fresh:
            assert torch.equal(state[key], tensor), key


def test_ssd300_vgg16_trainable_layers_freeze_what_the_reference_freezes() -> None:
    for trainable in range(6):
        frozen = []
        for build, extractor in (
            (reference.models.vgg16, reference.models.detection.ssd._vgg_extractor),
            (models.vgg16, _vgg_extractor),
        ):
            with torch.device("meta"):
                backbone = extractor(build(weights=None), False, trainable)
            frozen.append([n for n, p in backbone.named_parameters() if not p.requires_grad])
        assert frozen[0] == frozen[1]
        assert len(frozen[1]) == 2 * [13, 10, 7, 4, 2, 0][trainable]
    with pytest.raises(ValueError, match=r"\[0,5\], got 6"):
        detection.ssd300_vgg16(weights_backbone="IMAGENET1K_FEATURES", trainable_backbone_layers=6)


def test_ssdlite_weights_backbone_keeps_the_full_tail_and_freezes_the_first_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    imagenet = reference.models.mobilenet_v3_large(weights=None).state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(imagenet))
    model = detection.ssdlite320_mobilenet_v3_large(weights_backbone="IMAGENET1K_V1", trainable_backbone_layers=2)
    assert model.backbone.out_channels == [672, 960, 512, 256, 256, 128]  # no reduced tail with ImageNet weights
    first = model.backbone.features[0]
    torch.testing.assert_close(first[0][0].weight, imagenet["features.0.0.weight"], atol=0, rtol=0)
    trainable = [name for name, p in model.backbone.features.named_parameters() if p.requires_grad]
    # The last two stages: from block 13 (whose expansion ends the first map) onwards.
    assert trainable and all(name.startswith(("0.13.", "1.")) for name in trainable)
    assert all(p.requires_grad for p in model.backbone.extra.parameters())


def test_builder_arguments_reach_the_model() -> None:
    kwargs = {
        "score_thresh": 0.2,
        "nms_thresh": 0.3,
        "detections_per_img": 7,
        "topk_candidates": 11,
        "iou_thresh": 0.4,
        "positive_fraction": 0.5,
    }
    with torch.device("meta"):
        model = detection.ssd300_vgg16(weights_backbone=None, num_classes=4, **kwargs)
        with pytest.warns(UserWarning, match="ignoring size=\\(512, 512\\)"):
            lite = detection.ssdlite320_mobilenet_v3_large(weights_backbone=None, size=(512, 512))
    assert (model.score_thresh, model.nms_thresh, model.detections_per_img, model.topk_candidates) == (0.2, 0.3, 7, 11)
    assert model.proposal_matcher.high_threshold == 0.4 and model.neg_to_pos_ratio == 1.0
    assert model.head.classification_head.num_classes == 4
    assert model.transform.fixed_size == (300, 300) and model.transform.size_divisible == 1
    assert lite.transform.fixed_size == (320, 320) and lite.transform.image_mean == [0.5, 0.5, 0.5]
    assert (lite.score_thresh, lite.nms_thresh, lite.detections_per_img) == (0.001, 0.55, 300)
    assert lite.topk_candidates == 300
    with pytest.warns(UserWarning, match="pretrained_backbone=False is deprecated"), torch.device("meta"):
        detection.ssd300_vgg16(pretrained_backbone=False)


def test_bad_builder_and_model_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        detection.ssdlite320_mobilenet_v3_large(weights_backbone=None, num_classes=0)
    with torch.device("meta"):
        backbone = _vgg_extractor(models.vgg16(weights=None), False, 5)
        anchors = DefaultBoxGenerator([[2]] * 6)
        with pytest.raises(ValueError, match="positive_fraction must be in"):
            SSD(backbone, anchors, (300, 300), 3, positive_fraction=0.0)
        with pytest.raises(ValueError, match="size must be"):
            SSD(backbone, anchors, (300,), 3)
        with pytest.raises(TypeError, match=r"it takes no min_size: pass size=\(W, H\) instead"):
            SSD(backbone, anchors, (300, 300), 3, min_size=128)
        with pytest.raises(ValueError, match=r"output channels from the backbone \(6\).*aspect ratios \(2\)"):
            SSD(backbone, DefaultBoxGenerator([[2]] * 2), (300, 300), 3)


@pytest.fixture(scope="module")
def small_model() -> nn.Module:
    torch.manual_seed(0)
    return detection.ssdlite320_mobilenet_v3_large(weights_backbone=None, topk_candidates=10)


def test_an_image_without_boxes_is_valid_in_training(small_model: nn.Module) -> None:
    small_model.train()
    targets = two_targets()
    targets[1] = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}
    losses = small_model(two_images(), targets)
    assert all(torch.isfinite(v) for v in losses.values())


def _bad(index: int, **changes: Any) -> list[dict[str, torch.Tensor]]:
    targets = two_targets()
    targets[index] = {**targets[index], **changes}
    return targets


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        (None, ValueError, "targets should not be None"),
        ([{"labels": torch.tensor([1])}, two_targets()[1]], ValueError, "target 0 has no boxes"),
        (_bad(1, boxes=torch.tensor([1.0, 2.0, 3.0, 4.0])), ValueError, r"target 1: boxes must have shape \(N, 4\)"),
        (_bad(1, labels=torch.tensor([1.0])), TypeError, "target 1: labels must be an integer Tensor"),
        (
            _bad(0, boxes=torch.tensor([[1.0, 2.0, 30.0, 40.0], [50.0, 5.0, 40.0, 60.0]])),
            ValueError,
            r"target 0: box 1 .*x2 <= x1",
        ),
        (_bad(1, boxes=torch.tensor([[1.0, 20.0, 30.0, 20.0]])), ValueError, r"target 1: box 0 .*y2 <= y1"),
    ],
)
def test_bad_targets_raise_clear_errors(small_model: nn.Module, targets: Any, error: type, match: str) -> None:
    small_model.train()
    with pytest.raises(error, match=match):
        small_model(two_images(), targets)


def test_bad_images_and_eval_targets_raise_clear_errors(small_model: nn.Module) -> None:
    small_model.eval()
    with pytest.raises(ValueError, match="targets were given in eval mode"):
        small_model(two_images(), two_targets())
    with pytest.raises(ValueError, match="image 1"):
        small_model([torch.rand(3, 64, 64), torch.rand(64, 64)])
    with pytest.raises(TypeError, match="list"):
        small_model(torch.rand(2, 3, 64, 64))
