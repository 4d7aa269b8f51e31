"""Deployment of the detectors: ``torch.export`` of all 12 detection builders (the number of detections an
unbacked size, not padding), ONNX Runtime for one model of each single- and two-stage kind, and ``torch.compile``
in one graph.

Inputs are small: one 200x240 image, resized to a shorter side of 256 (SSD and SSDlite: their fixed 300 and 320),
with few proposals and detections; a score threshold of 0 keeps detections even for randomly initialised heads.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from visionzoo import deploy, models
from visionzoo.models import detection  # noqa: F401  (registers them)

DETECTORS = models.list_models(task="detection")
RCNN = {"min_size": 256, "max_size": 320, "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 50}
SMALL = {
    "faster_rcnn": {**RCNN, "box_score_thresh": 0.0, "box_detections_per_img": 8},
    "ssd": {"score_thresh": 0.0, "topk_candidates": 20, "detections_per_img": 8},
    "one_stage": {
        "min_size": 256,
        "max_size": 320,
        "score_thresh": 0.0,
        "topk_candidates": 50,
        "detections_per_img": 8,
    },
}
KIND = {"mask_rcnn": "faster_rcnn", "keypoint_rcnn": "faster_rcnn", "faster_rcnn": "faster_rcnn", "ssd": "ssd"}
KIND["ssdlite"] = "ssd"
# ONNX Runtime: a model of each kind (boxes from two stages, from one stage, from SSD; masks; keypoints).
ONNX_CHECKED = [
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "maskrcnn_resnet50_fpn",
    "keypointrcnn_resnet50_fpn",
]


def _image(seed: int, size: tuple[int, int] = (200, 240)) -> torch.Tensor:
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed))


def _build(name: str, **overrides: Any) -> torch.nn.Module:
    family = models.get_model_info(name).family
    torch.manual_seed(0)
    config = {**SMALL[KIND.get(family, "one_stage")], **overrides}
    model = models.get_model(name, weights=None, weights_backbone=None, **config).eval()
    if "mobilenet" in name and hasattr(model.backbone, "fpn"):
        # A randomly initialised MobileNetV3 shrinks its activations to ~1e-8, which leaves every detection the same
        # score; ties would make the order of equal-score boxes decide (tests/models/detection does the same).
        with torch.no_grad():
            for block in model.backbone.fpn.inner_blocks.modules():
                if isinstance(block, torch.nn.Conv2d):
                    block.weight.mul_(1e7)
                    block.bias.mul_(1e7)
    return model


def test_the_matrix_covers_every_detection_builder() -> None:
    assert len(DETECTORS) == 12
    families = {models.get_model_info(name).family for name in ONNX_CHECKED}
    assert {"faster_rcnn", "retinanet", "fcos", "ssd", "mask_rcnn", "keypoint_rcnn"} <= families


@pytest.mark.parametrize("name", DETECTORS)
def test_export_matches_eager(name: str) -> None:
    model = _build(name)
    program = deploy.export_program(model, ([_image(1)],))
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert any(target.startswith("visionzoo.nms") for target in targets), "NMS should stay one operator"
    for seed in (1, 2):  # the traced image, and another one
        deviation = deploy.check_program(model, program, ([_image(seed)],), atol=1e-4, rtol=1e-4)
        assert deviation <= 1e-4


def test_the_number_of_detections_is_decided_when_the_program_runs() -> None:
    model = _build("fcos_resnet50_fpn")
    with torch.no_grad():
        scores = model([_image(1)])[0]["scores"]
    model.score_thresh = float(scores.median())  # about half of the first image's candidates pass
    model.detections_per_img = 100
    program = deploy.export_program(model, ([_image(1)],))
    counts = set()
    for image in (_image(1), _image(2), torch.zeros(3, 200, 240), torch.ones(3, 200, 240)):
        with torch.no_grad():
            expected = model([image])[0]
            actual = program.module()([image])[0]
        assert set(actual) == set(expected)
        for key in expected:
            torch.testing.assert_close(actual[key], expected[key], atol=1e-4, rtol=1e-4)
        counts.add(len(expected["boxes"]))
    assert len(counts) > 1, counts  # the same program returned different numbers of detections


def test_a_detector_exports_at_the_size_it_was_traced_with() -> None:
    model = _build("fcos_resnet50_fpn")
    program = deploy.export_program(model, ([_image(1)],), dynamic=True)  # the resize specialises on the size
    deploy.check_program(model, program, ([_image(3)],))
    with pytest.raises(Exception, match="200"):
        program.module()([_image(3, (180, 300))])


@pytest.mark.parametrize("name", ONNX_CHECKED)
def test_onnx_runtime_matches_eager(name: str, tmp_path: Any) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = _build(name)
    path = deploy.export_onnx(model, ([_image(1)],), tmp_path / f"{name}.onnx", optimize=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for seed in (1, 2):
        image = _image(seed)
        with torch.no_grad():
            expected = model([image])[0]
        actual = dict(zip(expected, session.run(None, {session.get_inputs()[0].name: image.numpy()})))
        for key, value in expected.items():
            got = torch.from_numpy(actual[key])
            assert got.shape == value.shape, key
            if key == "masks":
                # ONNX Runtime's RoiAlign sums in another order: boxes move by ~1e-3 pixels, which can move a
                # pasted mask's truncated corner by one pixel. Nearly every mask pixel still agrees.
                assert ((got - value).abs() > 1e-3).float().mean() < 2e-3
            else:  # box coordinates are pixels (hundreds)
                torch.testing.assert_close(got, value, atol=0.05, rtol=1e-4)


def test_onnx_names_an_operator_without_an_onnx_form(tmp_path: Any) -> None:
    pytest.importorskip("onnxscript")

    @torch.library.custom_op("visionzoo::test_only_double", mutates_args=())
    def double(x: torch.Tensor) -> torch.Tensor:
        return x * 2

    double.register_fake(lambda x: torch.empty_like(x))

    class Doubler(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return double(x)

    with pytest.raises(ValueError, match="Doubler uses test_only_double, which has no ONNX form.*pt2"):
        deploy.export_onnx(Doubler(), torch.zeros(2), tmp_path / "model.onnx", optimize=False)


def test_compile_a_detector_in_one_graph() -> None:
    model = _build("ssdlite320_mobilenet_v3_large")
    images = [_image(1)]
    torch._dynamo.reset()
    with torch.no_grad(), torch._dynamo.config.patch(deploy.DETECTION_COMPILE_CONFIG):
        explanation = torch._dynamo.explain(model)(images)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1
        compiled = torch.compile(model)
        actual, expected = deploy._flatten(compiled(images)), deploy._flatten(model(images))
    assert len(actual) == len(expected) == 3
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)
