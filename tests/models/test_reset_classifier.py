"""``reset_classifier`` on one model of every classification family and on every segmentation, detection and video
builder, and ``num_classes`` with published weights for every task (checkpoints made here, served from a
``VISIONZOO_WEIGHTS_DIR`` mirror).

A reset must change exactly the tensors that depend on the number of classes (those whose shapes differ between
the builder's default and the new ``num_classes``), leave every other tensor as it was, and give a state_dict that
loads strictly into the builder called with the new ``num_classes``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.models.video.test_video import BUILD_KWARGS as VIDEO_KWARGS
from tests.models.video.test_video import SMALLEST as VIDEO_CLIPS
from visionzoo import models
from visionzoo.models import detection, quantization, reset_classifier, segmentation, video
from visionzoo.models._heads import NoHead
from visionzoo.models._utils import _SkipInPlaceOnMeta

NEW = 5  # the new number of classes: no builder's default


def _smallest_per_family() -> list[str]:
    """One classification builder per family: the one whose default weights have the fewest parameters."""
    smallest: dict[str, tuple[int, str]] = {}
    for name in models.list_models(module=models):
        info = models.get_model_info(name)
        size = models.get_model_weights(name).DEFAULT.meta["num_params"]
        if info.family not in smallest or size < smallest[info.family][0]:
            smallest[info.family] = (size, name)
    return sorted(name for _, name in smallest.values())


CLASSIFIERS = _smallest_per_family()
SEGMENTERS = models.list_models(module=segmentation)
DETECTORS = models.list_models(module=detection)
VIDEO_MODELS = models.list_models(module=video)

# Small configurations where a builder takes one (models built for one input size), and the input sizes.
SMALL_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_b_16": {"image_size": 32},
    "maxvit_t": {"input_size": 64, "partition_size": 2},
    **VIDEO_KWARGS,
}


def _config(name: str) -> dict[str, Any]:
    task = models.get_model_info(name).task
    extra = {"weights_backbone": None} if task in ("segmentation", "detection") else {}
    return {**extra, **SMALL_CONFIGS.get(name, {})}


def _input(name: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if name in VIDEO_CLIPS:
        return torch.randn(1, 3, *VIDEO_CLIPS[name], generator=generator)
    side = 80 if name == "inception_v3" else 32 if name == "vit_b_16" else 64
    return torch.randn(1, 3, side, side, generator=generator)


def _on_meta(name: str, **kwargs: Any) -> nn.Module:
    with torch.device("meta"), _SkipInPlaceOnMeta():
        return models.get_model(name, **_config(name), **kwargs)


# Larger siblings of builders checked on real tensors, with the same model classes and heads: built on ``meta``
# (no memory, no initialisation), where the checks on tensors reduce to which tensors are new.
ON_META = {
    "swin3d_s",
    "swin3d_b",
    "mvit_v1_b",
    "fcn_resnet101",
    "deeplabv3_resnet101",
    "fasterrcnn_resnet50_fpn_v2",
    "maskrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
}


def _build(name: str) -> nn.Module:
    if name in ON_META:
        return _on_meta(name).eval()
    torch.manual_seed(0)
    return models.get_model(name, **_config(name)).eval()


def _class_outputs(name: str, model: nn.Module) -> list[torch.Tensor]:
    """What scores classes, each with its class axis at dim 1: the model's output for classifiers and segmenters;
    for detectors (whose outputs are boxes), their class-scoring layers on feature-shaped inputs; for S3D (whose
    smallest clip is costly), its head on a pooled feature map."""
    with torch.inference_mode():
        if name == "s3d":
            return [model.classifier(torch.randn(1, 1024, 1, 1, 1)).mean(dim=(2, 3, 4))]
        if name in DETECTORS:
            return list(_detector_scores(model))
        out = model(_input(name))
    return list(out.values()) if isinstance(out, dict) else [out]


def _detector_scores(model: nn.Module) -> Iterator[torch.Tensor]:
    roi_heads = getattr(model, "roi_heads", None)
    if roi_heads is not None:
        predictor = roi_heads.box_predictor
        logits, deltas = predictor(torch.randn(3, predictor.cls_score.in_features))
        yield logits
        yield deltas.unflatten(1, (-1, 4))  # (R, classes, 4)
        if getattr(roi_heads, "mask_predictor", None) is not None:
            yield roi_heads.mask_predictor(torch.randn(2, 256, 7, 7))
        return
    head = model.head.classification_head
    if hasattr(head, "module_list"):  # SSD: one layer per feature map (SSDlite: a block ending in a 1x1 conv)
        channels = [(block if isinstance(block, nn.Conv2d) else block[-1]).in_channels for block in head.module_list]
    else:  # RetinaNet, FCOS: one tower for every level
        channels = [head.cls_logits.in_channels] * 2
    yield head([torch.randn(1, c, 4, 4) for c in channels]).transpose(1, 2)  # (N, classes, anchors)


def _check_reset(name: str, model: nn.Module) -> None:
    """Exactly the builder's class-dependent tensors are new; every other one is the same tensor with the same
    values; the result loads strictly into the builder given ``num_classes``; the class scores have ``NEW``."""
    before = model.state_dict(keep_vars=True)
    values = {k: v.detach().clone() for k, v in before.items() if not v.is_meta}
    wanted = _on_meta(name, num_classes=NEW)
    heads = {k for k, v in wanted.state_dict().items() if v.shape != before[k].shape}
    assert heads, "the builder's num_classes changes no tensor"

    assert reset_classifier(model, NEW) is model
    after = model.state_dict(keep_vars=True)
    assert {k for k in after if after[k] is not before[k]} == heads
    assert all(torch.equal(after[k].detach(), v) for k, v in values.items() if k not in heads)
    wanted.load_state_dict(after, strict=True, assign=True)  # the builder's keys, in its order, and shapes
    assert list(wanted.state_dict()) == list(after)
    if name not in ON_META:
        assert all(not after[k].is_meta for k in heads)
        for out in _class_outputs(name, model.eval()):
            assert out.shape[1] == NEW and torch.isfinite(out).all()


@pytest.mark.parametrize("name", CLASSIFIERS + VIDEO_MODELS)
def test_classifier_reset_and_removal(name: str) -> None:
    model = _build(name)
    _check_reset(name, model)
    # num_classes=0 removes the head: the model returns the features the head scored.
    with_head = set(model.state_dict())
    reset_classifier(model, 0)
    removed = [m for m in model.modules() if isinstance(m, NoHead)]
    assert removed and set(model.state_dict()) < with_head  # the head's tensors are gone
    if name not in ON_META:
        for out in _class_outputs(name, model):
            assert out.shape == (1, removed[-1].in_features)
    reset_classifier(model, NEW)  # and a head can come back
    assert not any(isinstance(m, NoHead) for m in model.modules())


@pytest.mark.parametrize("name", SEGMENTERS + DETECTORS)
def test_segmentation_and_detection_heads_reset(name: str) -> None:
    model = _build(name)
    _check_reset(name, model)
    with pytest.raises(ValueError, match="needs at least one class"):
        reset_classifier(model, 0)


def test_aux_heads_follow_and_initialise_as_built() -> None:
    """GoogLeNet's auxiliary heads are reset with the main one, on the old head's dtype, and every fresh head
    starts as its family's builder starts it (ViT: zeros; SqueezeNet: small normal weights, zero biases)."""
    model = models.googlenet(aux_logits=True, init_weights=True).double().train()
    reset_classifier(model, NEW)
    assert model.fc.weight.dtype == torch.float64 and model.aux1.fc2.weight.dtype == torch.float64
    outputs = model(torch.randn(2, 3, 64, 64, dtype=torch.float64))
    assert [t.shape for t in outputs] == [(2, NEW)] * 3

    vit = reset_classifier(models.vit_b_16(image_size=32), NEW)
    assert not vit.heads.head.weight.any() and vit.num_classes == NEW
    squeeze = reset_classifier(models.squeezenet1_1(), 300)
    conv = squeeze.classifier[1]
    assert abs(conv.weight.std().item() - 0.01) < 0.001 and not conv.bias.any() and squeeze.num_classes == 300


def test_bad_calls_raise_clear_errors() -> None:
    with pytest.raises(TypeError, match="does not know the heads of Linear"):
        reset_classifier(nn.Linear(3, 4), 2)
    with pytest.raises(TypeError, match="expects an nn.Module"):
        reset_classifier("resnet18", 2)  # type: ignore[arg-type]
    model = models.squeezenet1_1()
    with pytest.raises(ValueError, match="num_classes must be positive.*got -1"):
        reset_classifier(model, -1)
    with pytest.raises(TypeError, match="num_classes must be an int, got 2.0"):
        reset_classifier(model, 2.0)  # type: ignore[arg-type]
    with torch.device("meta"):
        raft = models.optical_flow.raft_small()
    with pytest.raises(TypeError, match="optical flow models have no classes"):
        reset_classifier(raft, 2)
    with pytest.raises(TypeError, match="RAFT predicts optical flow and has no classes"):
        models.optical_flow.raft_small(num_classes=2)
    quantized = quantization.shufflenet_v2_x0_5(quantize=True)
    with pytest.raises(ValueError, match="is quantized .* reset the head of the float model"):
        reset_classifier(quantized, 2)


# --------------------------------------------------------------------------------------------------
# num_classes with published weights, for every task
# --------------------------------------------------------------------------------------------------

# One builder per task and per kind of class head. ``arguments`` build the model whose state plays the
# published checkpoint (segmentation checkpoints hold the auxiliary classifier).
PUBLISHED: dict[str, dict[str, Any]] = {
    "mobilenet_v3_small": {},
    "squeezenet1_1": {},  # a 1x1 convolution scores the classes
    "quantized_shufflenet_v2_x0_5": {},  # the float model of a quantizable family
    "deeplabv3_mobilenet_v3_large": {"aux_loss": True},
    "lraspp_mobilenet_v3_large": {},
    "fasterrcnn_mobilenet_v3_large_320_fpn": {},
    "maskrcnn_resnet50_fpn": {},
    "keypointrcnn_resnet50_fpn": {},
    "retinanet_resnet50_fpn": {},
    "fcos_resnet50_fpn": {},
    "ssd300_vgg16": {},
    "ssdlite320_mobilenet_v3_large": {},
    "r3d_18": {},
    "s3d": {},
}


def _float_builder(name: str) -> str:
    return name.removeprefix("quantized_")


def _publish(name: str, directory: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, torch.Tensor]:
    """Save a checkpoint of ``name``'s architecture under a name of the official kind (<stem>-<sha256>.pth) in
    ``directory``, point the weights entry at it and serve ``directory`` as the mirror."""
    builder = _float_builder(name)
    state = _build_published(builder, **PUBLISHED[name]).state_dict()
    if models.get_model_info(builder).task == "detection" and not builder.endswith("_v2"):
        # The published detectors were trained with frozen batch norms (no num_batches_tracked), except SSDlite's.
        if not builder.startswith("ssdlite"):
            state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    staging = directory / "staging.pth"
    torch.save(state, staging)
    entry = models.get_model_weights(name).DEFAULT
    if name.startswith("quantized_"):
        entry = entry.meta["unquantized"]
    stem = entry.url.rsplit("/", 1)[-1].rsplit("-", 1)[0]
    file = f"{stem}-{hashlib.sha256(staging.read_bytes()).hexdigest()[:8]}.pth"
    staging.rename(directory / file)
    monkeypatch.setattr(type(entry), "url", property(lambda self: f"http://127.0.0.1:9/{file}"), raising=False)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_DIR", str(directory))
    return state


def _build_published(name: str, **kwargs: Any) -> nn.Module:
    torch.manual_seed(1)
    task = models.get_model_info(name).task
    extra = {"weights_backbone": None} if task in ("segmentation", "detection") else {}
    return models.get_model(name, **extra, **kwargs)


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_new_num_classes_with_published_weights(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pretrained tensor loads except the class heads, which are rebuilt (as the builder builds them: the
    same keys as the builder given that num_classes) and named in the warning."""
    checkpoint = _publish(name, tmp_path, monkeypatch)
    default = len(models.get_model_weights(name).DEFAULT.meta["categories"])
    with pytest.warns(UserWarning, match=f"num_classes={NEW} differs from the {default} categories") as caught:
        model = models.get_model(name, weights="DEFAULT", num_classes=NEW)
    message = str(caught[0].message)
    state = model.state_dict()
    fresh = {k for k in checkpoint if k in state and state[k].shape != checkpoint[k].shape}
    assert fresh and all(key in message for key in fresh)
    for key, tensor in state.items():
        if key not in fresh and key in checkpoint:
            assert torch.equal(tensor, checkpoint[key]), key
    wanted = _on_meta(name, num_classes=NEW, **PUBLISHED[name])
    wanted.load_state_dict(state, strict=True, assign=True)
    assert not any(t.is_meta for t in state.values())
    if name == "squeezenet1_1":  # the fresh head starts as SqueezeNet's builder starts it, not at the conv default
        weight, bias = state["classifier.1.weight"], state["classifier.1.bias"]
        assert weight.std() < 0.02 and not bias.any()


def test_new_num_keypoints_with_published_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keypoint R-CNN takes a new num_keypoints and a new num_classes together: both predictors are rebuilt."""
    checkpoint = _publish("keypointrcnn_resnet50_fpn", tmp_path, monkeypatch)
    with pytest.warns(UserWarning) as caught:
        model = detection.keypointrcnn_resnet50_fpn(weights="DEFAULT", num_classes=3, num_keypoints=4)
    messages = " ".join(str(w.message) for w in caught)
    assert "roi_heads.keypoint_predictor.kps_score_lowres.weight" in messages
    assert "roi_heads.box_predictor.cls_score.weight" in messages
    state = model.state_dict()
    assert state["roi_heads.keypoint_predictor.kps_score_lowres.weight"].shape[1] == 4
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 3
    kept = [k for k in checkpoint if "predictor" not in k]
    assert all(torch.equal(state[k], checkpoint[k]) for k in kept)
