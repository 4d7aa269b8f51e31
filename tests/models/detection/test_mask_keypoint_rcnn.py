"""Mask R-CNN and Keypoint R-CNN against the reference: eval parity of every builder on two images of different
sizes (masks pasted into each image, keypoints), training losses under one seed, weights entries, the mask and
keypoint post-processing functions on their own (boxes at the image border included), new ``num_classes`` /
``num_keypoints`` with published weights, the model classes' arguments, and bad targets."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_weights, pair
from visionzoo import models
from visionzoo.models._api import WeightsEnum
from visionzoo.models.detection import roi_heads
from visionzoo.models.detection.anchor_utils import AnchorGenerator
from visionzoo.models.detection.faster_rcnn import FastRCNNPredictor
from visionzoo.models.detection.keypoint_rcnn import KeypointRCNN, KeypointRCNNHeads, KeypointRCNNPredictor
from visionzoo.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from visionzoo.ops import MultiScaleRoIAlign

MASK = ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"]
BUILDERS = [*MASK, "keypointrcnn_resnet50_fpn"]
# Small inputs, few proposals and few detections keep these fast (the keypoint head is 8 convolutions of 512
# channels per detection); both sides get the same arguments.
SMALL = {
    "min_size": 256,
    "max_size": 400,
    "rpn_pre_nms_top_n_test": 200,
    "rpn_post_nms_top_n_test": 100,
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 100,
    "box_batch_size_per_image": 32,
    "box_detections_per_img": 6,
    "box_score_thresh": 0.0,
}
SIZES = [(240, 320), (300, 200)]


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(3, *size, generator=generator) for size in SIZES]


def _targets(num_keypoints: int = 17) -> list[dict[str, torch.Tensor]]:
    """Boxes with a mask (a filled ellipse-ish blob inside the box) and keypoints inside the box, some hidden."""
    boxes = [
        torch.tensor([[10.0, 20.0, 120.0, 150.0], [150.0, 30.0, 300.0, 200.0]]),
        torch.tensor([[20.0, 40.0, 180.0, 260.0]]),
    ]
    generator = torch.Generator().manual_seed(2)
    targets = []
    for image_boxes, (height, width) in zip(boxes, SIZES):
        masks = torch.zeros((len(image_boxes), height, width), dtype=torch.uint8)
        keypoints = torch.zeros((len(image_boxes), num_keypoints, 3))
        for i, (x1, y1, x2, y2) in enumerate(image_boxes.tolist()):
            rows = torch.arange(height)[:, None].float()
            columns = torch.arange(width)[None].float()
            centre_x, centre_y, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            masks[i] = (((columns - centre_x) / half_w) ** 2 + ((rows - centre_y) / half_h) ** 2 <= 1).byte()
            keypoints[i, :, 0] = x1 + torch.rand(num_keypoints, generator=generator) * (x2 - x1)
            keypoints[i, :, 1] = y1 + torch.rand(num_keypoints, generator=generator) * (y2 - y1)
            keypoints[i, :, 2] = (torch.rand(num_keypoints, generator=generator) > 0.3).float()
        targets.append({"boxes": image_boxes, "labels": torch.ones(len(image_boxes), dtype=torch.int64)})
        targets[-1].update(masks=masks, keypoints=keypoints)
    return targets


_PAIRS: dict[str, tuple[nn.Module, nn.Module]] = {}


@pytest.fixture(scope="module")
def pairs() -> Any:
    yield _PAIRS
    _PAIRS.clear()


def _pair(pairs: dict[str, tuple[nn.Module, nn.Module]], name: str) -> tuple[nn.Module, nn.Module]:
    if name not in pairs:
        config = {"weights_backbone": None, **SMALL}
        pairs[name] = pair(
            lambda: reference.models.get_model(name, weights=None, **config),
            lambda: models.get_model(name, weights=None, **config),
        )
    ref, ours = pairs[name]
    return ref.eval(), ours.eval()


@pytest.mark.parametrize("name", BUILDERS)
def test_eval_parity_on_images_of_different_sizes(pairs: Any, name: str) -> None:
    ref, ours = _pair(pairs, name)
    images = _images()
    with torch.inference_mode():
        expected, got = ref(images), ours(images)
    extra = ["masks"] if name in MASK else ["keypoints", "keypoints_scores"]
    for theirs, mine, (height, width) in zip(expected, got, SIZES):
        assert list(mine) == list(theirs) == ["boxes", "labels", "scores", *extra]
        count = mine["boxes"].shape[0]
        assert count == SMALL["box_detections_per_img"]
        for key in ("boxes", "scores", *extra):
            torch.testing.assert_close(mine[key], theirs[key], atol=1e-4, rtol=1e-4, msg=key)
        assert torch.equal(mine["labels"], theirs["labels"])
        if name in MASK:
            masks = mine["masks"]
            assert masks.shape == (count, 1, height, width)  # each image's own size
            assert masks.min() >= 0 and masks.max() <= 1 and masks.max() > 0
        else:
            assert mine["keypoints"].shape == (count, 17, 3) and mine["keypoints_scores"].shape == (count, 17)
            assert bool((mine["keypoints"][..., 2] == 1).all())


@pytest.mark.parametrize("name", BUILDERS)
def test_training_losses_equal_the_reference_under_one_seed(pairs: Any, name: str) -> None:
    ref, ours = _pair(pairs, name)
    losses = []
    for model in (ref, ours):
        model.train()
        torch.manual_seed(3)
        losses.append(model(_images(), _targets()))
    expected, got = losses
    branch = "loss_mask" if name in MASK else "loss_keypoint"
    assert (
        list(got)
        == list(expected)
        == ["loss_classifier", "loss_box_reg", branch, "loss_objectness", "loss_rpn_box_reg"]
    )
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=1e-5, rtol=1e-4, msg=key)
    predictor = ours.roi_heads.mask_predictor if name in MASK else ours.roi_heads.keypoint_predictor
    # only as far back as the branch's predictor: a backward through the whole backbone would double the cost
    gradients = torch.autograd.grad(got[branch], list(predictor.parameters()))
    assert all(g.abs().sum() > 0 for g in gradients)
    ours.eval()
    ref.eval()


@pytest.mark.parametrize("name", BUILDERS)
def test_weights_entries(name: str) -> None:
    assert_same_weights(name)
    weights = models.get_model_weights(name)
    metric = "mask_map" if name in MASK else "kp_map"
    assert all(metric in entry.meta["_metrics"]["COCO-val2017"] for entry in weights)
    if name not in MASK:
        assert len(weights.DEFAULT.meta["keypoint_names"]) == 17 and weights.DEFAULT.meta["categories"][1] == "person"


# ------------------------------------------------------------------------------------------------------------
# The post-processing functions on their own
# ------------------------------------------------------------------------------------------------------------


def test_paste_masks_matches_the_reference_including_boxes_at_the_image_border() -> None:
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(7, 1, 28, 28, generator=generator)
    boxes = torch.tensor(
        [
            [10.3, 12.7, 40.2, 33.9],  # inside
            [-8.0, -5.5, 20.0, 18.0],  # over the top-left corner
            [50.0, 30.0, 75.0, 48.0],  # past the right and bottom edges
            [-20.0, 10.0, 90.0, 20.0],  # wider than the image
            [5.0, 5.0, 5.2, 5.1],  # under a pixel
            [0.0, 0.0, 64.0, 48.0],  # the whole image
            [63.5, 47.5, 70.0, 60.0],  # only its corner pixel inside
        ]
    )
    expected = reference.models.detection.roi_heads.paste_masks_in_image(masks, boxes, (48, 64))
    got = roi_heads.paste_masks_in_image(masks, boxes, (48, 64))
    assert got.shape == (7, 1, 48, 64)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    empty = roi_heads.paste_masks_in_image(masks[:0], boxes[:0], (48, 64))
    assert empty.shape == (0, 1, 48, 64)
    with pytest.raises(ValueError, match=r"masks of shape \(N, 1, M, M\)"):
        roi_heads.paste_masks_in_image(masks[:, 0], boxes, (48, 64))


def test_keypoint_heatmaps_and_mask_targets_match_the_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    rois = torch.tensor([[10.0, 20.0, 50.5, 70.0], [0.0, 0.0, 12.0, 7.3], [5.0, 5.0, 5.5, 5.4]])
    maps = torch.randn(3, 5, 56, 56, generator=generator)
    ref_functions = reference.models.detection.roi_heads
    for mine, theirs in zip(
        roi_heads.heatmaps_to_keypoints(maps, rois), ref_functions.heatmaps_to_keypoints(maps, rois)
    ):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    keypoints = torch.rand(3, 5, 3, generator=generator) * 60
    keypoints[0, 0, :2] = rois[0, 2:]  # exactly on the far corner: the last cell
    keypoints[1, 1, 2] = 0  # hidden
    for mine, theirs in zip(
        roi_heads.keypoints_to_heatmap(keypoints, rois, 56), ref_functions.keypoints_to_heatmap(keypoints, rois, 56)
    ):
        assert torch.equal(mine, theirs)
    gt_masks = (torch.rand(2, 40, 60, generator=generator) > 0.5).byte()
    matched = torch.tensor([1, 0, 1])
    torch.testing.assert_close(
        roi_heads.project_masks_on_boxes(gt_masks, rois, matched, 28),
        ref_functions.project_masks_on_boxes(gt_masks, rois, matched, 28),
        atol=1e-6,
        rtol=1e-5,
    )


# ------------------------------------------------------------------------------------------------------------
# Builders with published weights, the classes' arguments
# ------------------------------------------------------------------------------------------------------------


def _fake_checkpoint(
    monkeypatch: pytest.MonkeyPatch, name: str, served: list[WeightsEnum] | None = None
) -> dict[str, torch.Tensor]:
    """A checkpoint of the right layout (random values) served in place of every published file (the entries
    asked for are appended to ``served``)."""
    with torch.device("meta"):
        full = models.get_model(name, weights_backbone=None)
    generator = torch.Generator().manual_seed(0)
    checkpoint = {
        key: torch.randn(t.shape, generator=generator).to(t.dtype)
        for key, t in full.state_dict().items()
        if not key.endswith("num_batches_tracked")
    }

    def serve(self: WeightsEnum, progress: bool = True, check_hash: bool = True) -> dict[str, torch.Tensor]:
        (served if served is not None else []).append(self)
        return dict(checkpoint)

    monkeypatch.setattr(WeightsEnum, "get_state_dict", serve)
    return checkpoint


def _assert_loaded_except(model: nn.Module, checkpoint: dict[str, torch.Tensor], fresh: list[str]) -> None:
    state = model.state_dict()
    for key, tensor in checkpoint.items():
        if key not in fresh:
            assert torch.equal(state[key], tensor), key


def test_new_num_classes_with_published_weights_rebuilds_the_box_and_mask_predictors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checkpoint = _fake_checkpoint(monkeypatch, "maskrcnn_resnet50_fpn_v2")
    fresh = [
        *(
            f"roi_heads.box_predictor.{layer}.{kind}"
            for layer in ("cls_score", "bbox_pred")
            for kind in ("weight", "bias")
        ),
        "roi_heads.mask_predictor.mask_fcn_logits.weight",
        "roi_heads.mask_predictor.mask_fcn_logits.bias",
    ]
    with pytest.warns(UserWarning, match="num_classes=3 differs from the 91 categories") as caught:
        model = models.get_model("maskrcnn_resnet50_fpn_v2", weights="DEFAULT", num_classes=3)
    assert all(key in str(caught[0].message) for key in fresh)
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3
    assert model.roi_heads.box_predictor.cls_score.out_features == 3
    _assert_loaded_except(model, checkpoint, fresh)


def test_keypoint_weights_new_num_keypoints_and_the_legacy_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[WeightsEnum] = []
    checkpoint = _fake_checkpoint(monkeypatch, "keypointrcnn_resnet50_fpn", served)
    with pytest.warns(UserWarning, match="num_keypoints=5 differs from the 17 keypoints"):
        model = models.get_model("keypointrcnn_resnet50_fpn", weights="DEFAULT", num_keypoints=5)
    predictor = model.roi_heads.keypoint_predictor
    assert isinstance(predictor, KeypointRCNNPredictor) and predictor.kps_score_lowres.out_channels == 5
    assert not any(t.is_meta for t in predictor.state_dict().values())
    frozen = [m for m in model.modules() if type(m).__name__ == "FrozenBatchNorm2d"]
    assert frozen and all(m.eps == 0.0 for m in frozen)  # COCO_V1 was trained without the epsilon
    _assert_loaded_except(model, checkpoint, [k for k in checkpoint if k.startswith("roi_heads.keypoint_predictor")])
    with pytest.warns(UserWarning, match="pretrained=legacy"):
        legacy = models.get_model("keypointrcnn_resnet50_fpn", pretrained="legacy")
    assert [entry.name for entry in served] == ["COCO_V1", "COCO_LEGACY"]
    assert all(m.eps != 0.0 for m in legacy.modules() if type(m).__name__ == "FrozenBatchNorm2d")


def test_old_mask_head_checkpoints_load() -> None:
    torch.manual_seed(0)
    head = MaskRCNNHeads(8, [4, 4], 1)
    old = {
        f"mask_fcn{i + 1}.{kind}": head.state_dict()[f"{i}.0.{kind}"] for i in range(2) for kind in ("weight", "bias")
    }
    fresh = MaskRCNNHeads(8, [4, 4], 1)
    fresh.load_state_dict(old)  # no metadata: a version 1 checkpoint
    for key, tensor in head.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], tensor)


def _tiny_backbone() -> nn.Module:
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=8, padding=1), nn.ReLU())
    backbone.out_channels = 16
    return backbone


def _tiny(cls: type, **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    anchors = AnchorGenerator(sizes=((32, 64),), aspect_ratios=((0.5, 1.0, 2.0),))
    pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    branch = MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=2)
    branch_pool = {"mask_roi_pool": branch} if cls is MaskRCNN else {"keypoint_roi_pool": branch}
    config = {"rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20, "box_batch_size_per_image": 16}
    config.update(rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20, box_detections_per_img=5, min_size=256)
    config.update(kwargs)
    return cls(_tiny_backbone(), rpn_anchor_generator=anchors, box_roi_pool=pool, **branch_pool, **config)


def _tiny_mask() -> nn.Module:
    # The fine-tuning tutorial's way: own predictors for both branches, so no num_classes.
    return _tiny(
        MaskRCNN,
        box_predictor=FastRCNNPredictor(1024, 2),
        mask_head=MaskRCNNHeads(16, [8, 8], 1),
        mask_predictor=MaskRCNNPredictor(8, 8, 2),
    )


def _tiny_keypoint(**kwargs: Any) -> nn.Module:
    return _tiny(
        KeypointRCNN,
        num_classes=2,
        keypoint_head=KeypointRCNNHeads(16, [8, 8]),
        keypoint_predictor=KeypointRCNNPredictor(8, 4),
        **kwargs,
    )


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, nn.Module]:
    return {"mask": _tiny_mask(), "keypoint": _tiny_keypoint()}


def test_tutorial_style_custom_models_train_a_step_and_predict(tiny_models: dict[str, nn.Module]) -> None:
    for kind, model in tiny_models.items():
        model.train()
        targets = _targets(num_keypoints=4)
        losses = model(_images(), targets)
        assert ("loss_mask" if kind == "mask" else "loss_keypoint") in losses
        sum(losses.values()).backward()
        # an image without objects is valid too
        empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)}
        empty.update(masks=torch.zeros((0, *SIZES[1]), dtype=torch.uint8), keypoints=torch.zeros((0, 4, 3)))
        losses = model(_images(), [targets[0], empty])
        assert all(torch.isfinite(v) for v in losses.values())
        model.eval()
        with torch.inference_mode():
            outputs = model(_images())
        for output, (height, width) in zip(outputs, SIZES):
            if kind == "mask":
                assert output["masks"].shape[1:] == (1, height, width)
            else:
                assert output["keypoints"].shape[1:] == (4, 3)
    assert KeypointRCNN.__init__.__kwdefaults__["min_size"] is None
    assert _tiny_keypoint(min_size=None).transform.min_size == (640, 672, 704, 736, 768, 800)


def test_no_detections_give_empty_masks_and_keypoints(tiny_models: dict[str, nn.Module]) -> None:
    for kind, model in tiny_models.items():
        model.eval()
        model.roi_heads.score_thresh = 1.0  # no class probability exceeds it
        try:
            with torch.inference_mode():
                output = model(_images())[1]
        finally:
            model.roi_heads.score_thresh = 0.05
        assert output["boxes"].shape == (0, 4)
        if kind == "mask":
            assert output["masks"].shape == (0, 1, *SIZES[1])
        else:
            assert output["keypoints"].shape == (0, 4, 3) and output["keypoints_scores"].shape == (0, 4)


def test_bad_class_arguments_raise_clear_errors() -> None:
    backbone = _tiny_backbone()
    with pytest.raises(ValueError, match="num_classes should be None when mask_predictor is specified"):
        MaskRCNN(backbone, num_classes=3, mask_predictor=MaskRCNNPredictor(256, 256, 3))
    with pytest.raises(TypeError, match="mask_roi_pool should be of type MultiScaleRoIAlign"):
        MaskRCNN(backbone, num_classes=3, mask_roi_pool=nn.Identity())
    with pytest.raises(ValueError, match="num_keypoints should be None when keypoint_predictor is specified"):
        KeypointRCNN(backbone, num_classes=2, num_keypoints=3, keypoint_predictor=KeypointRCNNPredictor(512, 3))
    with pytest.raises(TypeError, match="keypoint_roi_pool should be of type MultiScaleRoIAlign"):
        KeypointRCNN(backbone, num_classes=2, keypoint_roi_pool=nn.Identity())
    with pytest.raises(ValueError, match="num_keypoints must be a positive int"):
        models.get_model("keypointrcnn_resnet50_fpn", weights_backbone=None, num_keypoints=0)


def _bad(index: int, **changes: Any) -> list[dict[str, torch.Tensor]]:
    targets = _targets(num_keypoints=4)
    targets[index] = {**targets[index], **changes}
    return targets


@pytest.mark.parametrize(
    ("kind", "targets", "error", "match"),
    [
        (
            "mask",
            _bad(1, masks=torch.zeros((1, 240, 320), dtype=torch.uint8)),
            ValueError,
            r"target 1: masks are \(240, 320\)",
        ),
        (
            "mask",
            _bad(0, masks=torch.zeros((3, 240, 320), dtype=torch.uint8)),
            ValueError,
            r"target 0: masks must have shape \(N, H, W\)",
        ),
        (
            "mask",
            [{k: v for k, v in t.items() if k != "masks"} for t in _targets()],
            ValueError,
            "should have a masks key",
        ),
        (
            "keypoint",
            _bad(0, keypoints=torch.zeros((2, 4, 2))),
            ValueError,
            r"target 0: keypoints must have shape \(N, K, 3\)",
        ),
        ("keypoint", _bad(1, keypoints=torch.zeros((2, 4, 3))), ValueError, r"target 1: keypoints must have shape"),
        (
            "keypoint",
            _bad(1, keypoints=torch.zeros((1, 4, 3), dtype=torch.float64)),
            TypeError,
            "keypoints must of float",
        ),
        (
            "keypoint",
            [{k: v for k, v in t.items() if k != "keypoints"} for t in _targets()],
            ValueError,
            "keypoints key",
        ),
    ],
)
def test_bad_targets_raise_clear_errors(
    tiny_models: dict[str, nn.Module], kind: str, targets: Any, error: type, match: str
) -> None:
    model = tiny_models[kind].train()
    with pytest.raises(error, match=match):
        model(_images(), targets)
