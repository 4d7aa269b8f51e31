"""Detectors (a list of images in, a list of dicts out, a data-dependent number of boxes) through
optimize_for_inference: folded and eager for every kind's pipeline, and compiled in one graph for SSD."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionzoo import models
from visionzoo.models import optimize_for_inference

RCNN = {"min_size": 256, "max_size": 320, "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 50}
SMALL = {
    "fasterrcnn_mobilenet_v3_large_fpn": {
        "min_size": 256,
        "max_size": 320,
        "box_score_thresh": 0.0,
        "box_detections_per_img": 10,
    },
    "maskrcnn_resnet50_fpn": {**RCNN, "box_score_thresh": 0.0, "box_detections_per_img": 10},
    "ssd300_vgg16": {"score_thresh": 0.0, "detections_per_img": 10, "topk_candidates": 50},
}


def _detector(name: str) -> nn.Module:
    """Randomly initialised, with BatchNorm statistics that are not the identity (so that folding changes weights)."""
    torch.manual_seed(0)
    model = models.get_model(name, weights=None, weights_backbone=None, **SMALL[name])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        # Randomly initialised R-CNN class scores are all about 1/num_classes, so float rounding alone would
        # reorder them; spread the logits so that the best detections are well apart. SSD's VGG features (no
        # BatchNorm) are so large that its random logits saturate instead: its ten best scores were all exactly
        # 1.0, and a channels-last AVX2 convolution's rounding reordered the tied boxes (AMD EPYC Zen 3), so its
        # logits shrink (best ten scores 0.06-0.09, at least 3e-4 apart).
        scale = 0.1 if name == "ssd300_vgg16" else 50.0
        for path, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and ("classification_head" in path or "cls_score" in path):
                m.weight.mul_(scale)
    return model.eval()


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.rand(3, 200, 240, generator=generator), torch.rand(3, 180, 160, generator=generator)]


def _assert_same(actual: list[dict[str, torch.Tensor]], expected: list[dict[str, torch.Tensor]]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert set(got) == set(want)
        for key in want:
            if key == "masks":  # a box moved by rounding can move a pasted mask's truncated edge by a pixel
                assert got[key].shape == want[key].shape
                assert ((got[key] - want[key]).abs() > 1e-3).float().mean() < 0.01
                continue
            # As optimize_for_inference checks itself: 1e-3 of the output's scale (boxes are hundreds of pixels).
            scale = max(1.0, want[key].abs().max().item()) if want[key].numel() else 1.0
            torch.testing.assert_close(got[key], want[key], atol=1e-3 * scale, rtol=0)


@pytest.mark.parametrize("name", ["fasterrcnn_mobilenet_v3_large_fpn", "maskrcnn_resnet50_fpn"])
def test_a_folded_detector_detects_what_it_did(name: str) -> None:
    model = _detector(name)
    with torch.no_grad():
        expected = model(_images())
    optimised = optimize_for_inference(model, (_images(),), compile=False)
    assert optimised.folded > 0 and not optimised.compiled
    _assert_same(optimised(_images()), expected)


def test_a_compiled_detector_detects_what_it_did() -> None:
    # (Randomly initialised MobileNets score every box alike, and ties may break another way once compiled.)
    model = _detector("ssd300_vgg16")
    with torch.no_grad():
        expected = model(_images())
    optimised = optimize_for_inference(model, (_images(),), keep_faster=False)
    assert optimised.compiled and optimised.compile_seconds is not None
    _assert_same(optimised(_images()), expected)
    assert len(expected[0]["boxes"]) == 10


def test_a_graph_that_freezing_cannot_compile_is_compiled_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # In torch 2.14 Inductor's freezing fails on Faster R-CNN's graph (its unbacked sizes) where a plain compile
    # works; a stand-in failure keeps this test quick.
    from visionzoo import inference

    class FreezingFailed(Exception):
        pass

    compile_with_freezing = inference._compile_with_freezing

    tried: list[tuple[bool, bool]] = []

    def freezing_fails(module: nn.Module, freezing: bool = True, cpp_wrapper: bool = False) -> object:
        tried.append((freezing, cpp_wrapper))
        if freezing:

            def fail(*args: object, **kwargs: object) -> None:
                raise FreezingFailed("freezing cannot handle this graph")

            return fail
        return compile_with_freezing(module, freezing=False)

    monkeypatch.setattr(inference, "_compile_with_freezing", freezing_fails)
    monkeypatch.setattr(inference, "_compile_failures", lambda: (FreezingFailed,))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    x = torch.randn(1, 3, 8, 8)
    optimised = optimize_for_inference(model, x, keep_faster=False)
    assert optimised.compiled and not optimised.frozen and not optimised.cpp_wrapper
    # Generated C++ first, then Python calling the kernels, then no freezing.
    assert tried == [(True, True), (True, False), (False, False)]
    torch.testing.assert_close(optimised(x), model(x), atol=1e-5, rtol=1e-5)
