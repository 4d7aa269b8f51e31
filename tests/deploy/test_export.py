"""Deployment matrix: ``torch.export`` of every classification (quantized float path included), segmentation,
video and optical flow builder, checked against eager; ONNX (through ONNX Runtime) for the smallest model of each
classification family and every segmentation builder; ``torch.compile`` without graph breaks, one model per task.

Inputs are the smallest each architecture takes: 64x64 images (inception: 75x75; ViT and MaxViT their fixed
size), the video tests' smallest clips, 128x128 frame pairs with two flow updates for RAFT.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import torch

from tests.models.video.test_video import BUILD_KWARGS as VIDEO_BUILD_KWARGS
from tests.models.video.test_video import SMALLEST as VIDEO_CLIPS
from visionzoo import deploy, models
from visionzoo.models import optical_flow, quantization, segmentation, video  # noqa: F401  (registers them)

TASKS = ("classification", "quantization", "segmentation", "video", "optical_flow")
BUILDERS = [name for task in TASKS for name in models.list_models(task=task)]
# Inception's stem needs 75 pixels; every other convnet takes 64.
IMAGE_SIDE = {"inception_v3": 75, "quantized_inception_v3": 75}
FLOW_UPDATES = 2
# One model per task for torch.compile.
COMPILED = ("resnet18", "deeplabv3_mobilenet_v3_large", "r3d_18", "raft_small")


def _smallest_per_family() -> list[str]:
    """The classification builder with the fewest parameters (its DEFAULT weights' meta) of each family."""
    best: dict[str, tuple[int, str]] = {}
    for name in models.list_models(task="classification"):
        params = models.get_model_weights(name).DEFAULT.meta["num_params"]
        family = models.get_model_info(name).family
        best[family] = min(best.get(family, (params, name)), (params, name))
    return sorted(name for _, name in best.values())


ONNX_CHECKED = [*_smallest_per_family(), *models.list_models(task="segmentation")]


def _build(name: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], dict[str, Any]]:
    """The model without weights (eval mode, seeded), an input of the smallest size it takes, forward kwargs."""
    task = models.get_model_info(name).task
    config: dict[str, Any] = {
        "quantization": {"quantize": False},
        # The auxiliary head too, where the architecture has one (LR-ASPP has none).
        "segmentation": {"aux_loss": not name.startswith("lraspp"), "weights_backbone": None},
        "video": VIDEO_BUILD_KWARGS.get(name, {}),
    }.get(task, {})
    torch.manual_seed(0)
    model = models.get_model(name, weights=None, **config).eval()
    generator = torch.Generator().manual_seed(1)
    if task == "video":
        return model, (torch.randn(1, 3, *VIDEO_CLIPS[name], generator=generator),), {}
    if task == "optical_flow":
        frames = tuple(torch.rand(1, 3, 128, 128, generator=generator) * 2 - 1 for _ in range(2))
        return model, frames, {"num_flow_updates": FLOW_UPDATES}
    fixed = getattr(model, "input_size", None)
    side = IMAGE_SIDE.get(name, 64)
    return model, (torch.randn(1, 3, *(fixed or (side, side)), generator=generator),), {}


@cache
def _shared(name: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], dict[str, Any]]:
    """:func:`_build` once per session, for the models several tests use."""
    return _build(name)


def test_the_matrix_covers_every_builder_of_the_tasks() -> None:
    assert len(BUILDERS) == len(set(BUILDERS)) > 100
    assert set(models.list_models(task="video")) == set(VIDEO_CLIPS)
    families = {models.get_model_info(name).family for name in models.list_models(task="classification")}
    assert {models.get_model_info(name).family for name in ONNX_CHECKED} >= families


@pytest.mark.parametrize("name", BUILDERS)
def test_export_matches_eager(name: str) -> None:
    model, example, kwargs = _shared(name) if name in COMPILED else _build(name)
    program = deploy.export_program(model, example, **kwargs)
    assert isinstance(program, torch.export.ExportedProgram)
    deviation = deploy.check_program(model, program, example, atol=1e-4, rtol=1e-4, **kwargs)
    assert 0.0 <= deviation <= 1e-3


def test_dynamic_batch_and_size_for_a_convnet() -> None:
    model, (x,), _ = _shared("resnet18")
    program = deploy.export_program(model, x, dynamic=True)
    for shape in [(1, 3, 64, 64), (3, 3, 48, 72), (2, 3, 97, 33)]:
        deploy.check_program(model, program, torch.randn(shape))


def test_dynamic_batch_with_the_fixed_size_of_a_vit() -> None:
    torch.manual_seed(0)
    model = models.vit_b_32(weights=None, image_size=64).eval()
    program = deploy.export_program(model, torch.randn(1, 3, 64, 64), dynamic=True)
    deploy.check_program(model, program, torch.randn(3, 3, 64, 64))
    with pytest.raises(Exception, match="64"):  # the size stays the one the model was built for
        program.module()(torch.randn(1, 3, 96, 96))


def test_check_program_raises_on_a_different_model() -> None:
    model, (x,), _ = _shared("resnet18")
    program = deploy.export_program(model, x)
    torch.manual_seed(5)
    other = models.resnet18(weights=None).eval()
    with pytest.raises(AssertionError, match="differs from eager by up to"):
        deploy.check_program(other, program, x)


@pytest.mark.parametrize("example", [None, [], "image", [torch.zeros(1), 3]])
def test_bad_examples_are_refused(example: Any) -> None:
    with pytest.raises(TypeError, match="example must be a tensor or a sequence of tensors"):
        deploy.export_program(torch.nn.Identity(), example)


@pytest.mark.parametrize("name", ONNX_CHECKED)
def test_onnx_runtime_matches_eager(name: str, tmp_path: Any) -> None:
    pytest.importorskip("onnxruntime")
    model, example, _ = _build(name)
    # ONNX Runtime's kernels sum in another order than PyTorch's: the tolerance follows the outputs' scale
    # (randomly initialised deep nets reach logits of 1e8: Inception v3).
    with torch.no_grad():
        scale = max(t.abs().max().item() for t in deploy._flatten(model(*example)))
    path = deploy.export_onnx(model, example, tmp_path / f"{name}.onnx", optimize=False)  # the optimiser is slow
    assert path.stat().st_size > 1000
    deploy.check_onnx(model, path, example, atol=1e-4 * max(1.0, scale), rtol=1e-4)


def test_onnx_dynamic_batch(tmp_path: Any) -> None:
    pytest.importorskip("onnxruntime")
    model, (x,), _ = _shared("resnet18")
    path = deploy.export_onnx(model, x, tmp_path / "resnet18.onnx", dynamic=True)
    deploy.check_onnx(model, path, torch.randn(3, 3, 64, 64))


def test_onnx_into_a_missing_folder_is_refused(tmp_path: Any) -> None:
    pytest.importorskip("onnxscript")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        deploy.export_onnx(torch.nn.Identity(), torch.zeros(1), tmp_path / "nowhere" / "m.onnx")


@pytest.mark.parametrize("name", COMPILED)
def test_compile_matches_eager_without_graph_breaks(name: str) -> None:
    model, example, kwargs = _shared(name)
    if "num_flow_updates" in kwargs:  # one update: the loop body once, and Inductor compiles half the kernels
        kwargs = {"num_flow_updates": 1}
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(*example, **kwargs)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    compiled = torch.compile(model)
    with torch.no_grad():
        expected = deploy._flatten(model(*example, **kwargs))
        actual = deploy._flatten(compiled(*example, **kwargs))
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)
