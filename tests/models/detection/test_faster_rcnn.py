"""Faster R-CNN against the reference, driven by the registry: eval parity of every builder on two images of
different sizes, training losses under one seed, weights entries and presets, a new ``num_classes`` with published
weights, the fine-tuning tutorial's custom model, and bad inputs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests import reference
from tests.models._parity import assert_same_weights, pair
from tests.models.detection._inputs import two_images, two_targets
from visionzoo import models
from visionzoo.models import detection
from visionzoo.models._api import WeightsEnum
from visionzoo.models.detection.anchor_utils import AnchorGenerator
from visionzoo.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor
from visionzoo.ops import MultiScaleRoIAlign
from visionzoo.transforms import ObjectDetection

DETECTORS = [
    name for name in models.list_models(module=detection) if models.get_model_info(name).family == "faster_rcnn"
]
# Small inputs and few proposals keep these fast; both sides get the same arguments.
SMALL = {
    "min_size": 256,
    "max_size": 400,
    "rpn_pre_nms_top_n_test": 200,
    "rpn_post_nms_top_n_test": 100,
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 100,
    "box_batch_size_per_image": 64,
}


def _pair(name: str, **kwargs: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    config = {"weights_backbone": None, **SMALL, **kwargs}
    ref, ours = pair(
        lambda: reference.models.get_model(name, weights=None, **config),
        lambda: models.get_model(name, weights=None, **config),
    )
    if "mobilenet" in name:
        # A randomly initialised MobileNetV3 shrinks its activations to ~1e-8, which leaves every detection the
        # same score (ties compare nothing): scale the pyramid's (linear) input convolutions in both models.
        for model in (ref, ours):
            with torch.no_grad():
                for block in model.backbone.fpn.inner_blocks.modules():
                    if isinstance(block, torch.nn.Conv2d):
                        block.weight.mul_(1e7)
                        block.bias.mul_(1e7)
    return ref, ours


@pytest.mark.parametrize("name", DETECTORS)
def test_eval_parity_on_images_of_different_sizes(name: str) -> None:
    ref, ours = _pair(name, box_score_thresh=0.0)
    images = two_images()
    with torch.inference_mode():
        expected, got = ref(images), ours(images)
    assert len(got) == 2
    for theirs, mine, image in zip(expected, got, images):
        assert list(mine) == ["boxes", "labels", "scores"]
        assert mine["boxes"].shape[0] > 10, "too little to compare"
        assert len(mine["scores"].unique()) > mine["scores"].numel() // 2, "tied scores compare nothing"
        torch.testing.assert_close(mine["boxes"], theirs["boxes"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(mine["scores"], theirs["scores"], atol=1e-4, rtol=1e-4)
        assert torch.equal(mine["labels"], theirs["labels"])
        # in the image's own coordinates
        assert mine["boxes"][:, 2].max() <= image.shape[2] and mine["boxes"][:, 3].max() <= image.shape[1]


@pytest.mark.parametrize("name", DETECTORS)
def test_training_losses_equal_the_reference_under_one_seed(name: str) -> None:
    ref, ours = _pair(name)
    losses = []
    for model in (ref, ours):
        model.train()
        torch.manual_seed(3)
        losses.append(model(two_images(), two_targets()))
    expected, got = losses
    assert list(got) == list(expected) == ["loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"]
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-4, msg=key)
    sum(got.values()).backward()
    assert ours.roi_heads.box_predictor.cls_score.weight.grad is not None


@pytest.mark.parametrize("name", DETECTORS)
def test_weights_entries_and_presets(name: str) -> None:
    from PIL import Image

    assert_same_weights(name)
    image = torch.randint(0, 256, (3, 45, 61), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for member in reference.models.get_model_weights(name):
        mine, theirs = models.get_model_weights(name)[member.name].transforms(), member.transforms()
        assert isinstance(mine, ObjectDetection) and repr(mine) == repr(theirs)
        pil = Image.fromarray(image.permute(1, 2, 0).numpy())
        for sample in (image, image.double() / 255, torch.stack([image, image.flip(-1)]), pil):
            out = mine(sample)
            assert out.dtype == torch.float32
            torch.testing.assert_close(out, theirs(sample), atol=0, rtol=0)


def test_new_num_classes_with_published_weights_rebuilds_only_the_box_predictor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    torch.manual_seed(0)
    built = reference.models.get_model(name, weights=None, weights_backbone=None).state_dict()
    # the published checkpoints hold frozen batch norms: no num_batches_tracked
    checkpoint = {k: v for k, v in built.items() if not k.endswith("num_batches_tracked")}
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(checkpoint))
    fresh = [
        f"roi_heads.box_predictor.{layer}.{kind}" for layer in ("cls_score", "bbox_pred") for kind in ("weight", "bias")
    ]
    with pytest.warns(UserWarning, match="num_classes=3 differs from the 91 categories") as caught:
        model = models.get_model(name, weights="DEFAULT", num_classes=3)
    assert all(key in str(caught[0].message) for key in fresh)
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.out_features == 3 and predictor.bbox_pred.out_features == 12
    state = model.state_dict()
    for key, tensor in checkpoint.items():
        if key not in fresh:
            assert torch.equal(state[key], tensor), key


def test_resnet50_coco_weights_use_no_batch_norm_epsilon(monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.device("meta"):
        full = models.get_model("fasterrcnn_resnet50_fpn", weights_backbone=None)
    checkpoint = {key: torch.zeros(t.shape, dtype=t.dtype) for key, t in full.state_dict().items()}
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(checkpoint))
    model = models.get_model("fasterrcnn_resnet50_fpn", weights="DEFAULT")
    frozen = [m for m in model.modules() if type(m).__name__ == "FrozenBatchNorm2d"]
    assert frozen and all(m.eps == 0.0 for m in frozen)


def test_tutorial_custom_model_builds_and_trains_a_step() -> None:
    """The reference's fine-tuning tutorial, with only the import prefix changed."""
    torch.manual_seed(0)
    backbone = models.mobilenet_v2(weights=None).features
    backbone.out_channels = 1280
    anchor_generator = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    roi_pooler = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    model = FasterRCNN(
        backbone, num_classes=2, rpn_anchor_generator=anchor_generator, box_roi_pool=roi_pooler, min_size=256
    )
    model.roi_heads.box_predictor = FastRCNNPredictor(1024, 3)  # the tutorial's predictor swap
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9)
    model.train()
    targets = [{**t, "labels": t["labels"].clamp(max=2)} for t in two_targets()]
    losses = model(two_images(), targets)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    optimizer.step()
    model.eval()
    with torch.inference_mode():
        detections = model(two_images())
    assert len(detections) == 2 and all(bool((d["labels"] <= 2).all()) for d in detections)


@pytest.fixture(scope="module")
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.get_model("fasterrcnn_mobilenet_v3_large_320_fpn", weights_backbone=None, **SMALL)


def test_an_image_without_boxes_is_valid_in_training(small_model: torch.nn.Module) -> None:
    small_model.train()
    targets = two_targets()
    targets[1] = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}
    losses = small_model(two_images(), targets)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize(
    ("images", "targets", "error", "match"),
    [
        ([torch.rand(1, 3, 64, 64)], None, ValueError, r"3d tensors of shape \[C, H, W\].*image 0"),
        ([torch.rand(3, 64, 64), torch.rand(64, 64)], None, ValueError, "image 1"),
        (torch.rand(2, 3, 64, 64), None, TypeError, "list"),
    ],
)
def test_bad_images_raise_clear_errors(
    small_model: torch.nn.Module, images: Any, targets: Any, error: type, match: str
) -> None:
    small_model.eval()
    with pytest.raises(error, match=match):
        small_model(images, targets)


def _bad(index: int, **changes: Any) -> list[dict[str, torch.Tensor]]:
    targets = two_targets()
    targets[index] = {**targets[index], **changes}
    return targets


@pytest.mark.parametrize(
    ("targets", "error", "match"),
    [
        (None, ValueError, "targets should not be None"),
        ([{"labels": torch.tensor([1])}, two_targets()[1]], ValueError, "target 0 has no boxes"),
        ([two_targets()[0], {"boxes": torch.zeros(0, 4)}], ValueError, "target 1 has no labels"),
        (_bad(1, boxes=torch.tensor([1.0, 2.0, 3.0, 4.0])), ValueError, r"target 1: boxes must have shape \(N, 4\)"),
        (
            _bad(0, boxes=torch.tensor([[1.0, 2.0, 30.0, 40.0], [50.0, 5.0, 40.0, 60.0]])),
            ValueError,
            r"target 0: box 1 .*x2 <= x1",
        ),
        (_bad(1, boxes=torch.tensor([[1.0, 20.0, 30.0, 20.0]])), ValueError, r"target 1: box 0 .*y2 <= y1"),
    ],
)
def test_bad_targets_raise_clear_errors(small_model: torch.nn.Module, targets: Any, error: type, match: str) -> None:
    small_model.train()
    with pytest.raises(error, match=match):
        small_model(two_images(), targets)


def test_targets_in_eval_mode_raise(small_model: torch.nn.Module) -> None:
    small_model.eval()
    with pytest.raises(ValueError, match="targets were given in eval mode"):
        small_model(two_images(), two_targets())


def test_bad_builder_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights_backbone=None, num_classes=0)
    with pytest.raises(ValueError, match="Trainable backbone layers should be in the range"):
        # checked before anything is built or downloaded
        detection.fasterrcnn_mobilenet_v3_large_fpn(weights_backbone="IMAGENET1K_V1", trainable_backbone_layers=9)
    backbone = models.mobilenet_v2(weights=None).features
    with pytest.raises(ValueError, match="out_channels"):
        FasterRCNN(backbone, num_classes=2)
    backbone.out_channels = 1280
    with pytest.raises(ValueError, match="num_classes should be None when box_predictor is specified"):
        FasterRCNN(backbone, num_classes=2, box_predictor=FastRCNNPredictor(1024, 2))
    with pytest.raises(TypeError, match="box_roi_pool should be of type MultiScaleRoIAlign"):
        FasterRCNN(backbone, num_classes=2, box_roi_pool=torch.nn.Identity())


def test_weights_backbone_loads_the_imagenet_backbone_and_freezes_the_first_stages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    torch.manual_seed(0)
    imagenet = reference.models.mobilenet_v3_large(weights=None).state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, progress=True, check_hash=True: dict(imagenet))
    model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights_backbone="IMAGENET1K_V1")
    body = model.backbone.body.state_dict()
    for key, tensor in body.items():
        torch.testing.assert_close(tensor, imagenet[f"features.{key}"], atol=0, rtol=0, msg=key)
    frozen = {type(m).__name__ for m in model.backbone.body.modules()}
    assert "FrozenBatchNorm2d" in frozen and "BatchNorm2d" not in frozen
    trainable = {name.split(".")[0] for name, p in model.backbone.body.named_parameters() if p.requires_grad}
    assert trainable and "0" not in trainable  # the stem is frozen with the default 3 trainable stages


def test_backbone_options_without_pretrained_weights() -> None:
    with pytest.warns(UserWarning, match="falling back to trainable_backbone_layers=6"):
        model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights_backbone=None, trainable_backbone_layers=2)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.warns(UserWarning, match="pretrained_backbone=False is deprecated"):
        model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(pretrained_backbone=False, box_detections_per_img=7)
    assert model.roi_heads.detections_per_img == 7 and model.transform.min_size == (320,)
