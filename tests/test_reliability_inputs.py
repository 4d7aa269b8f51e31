"""Bad tensors at the public boundary: every classification builder and every preset of its weights.

Models are built on the ``meta`` device: the input checks run before any computation, so refusing a bad
input needs no real weights, and a ``meta`` input of exactly the smallest accepted size runs the whole
forward as shape inference. Each refusal must be a ValueError or TypeError whose message names the problem.

Decisions tested here (documented in ``check_image_batch`` and ``ImageClassification``):

* An empty batch is refused by models and presets alike (the reference returns an empty output).
* NaN and infinite values are refused for CPU tensors, by one summing pass; tensors on other devices are not
  scanned (that would wait for the device), nor are inputs while tracing or compiling.
* ``min_size`` in the weights' meta is the smallest input the weights are published for: the model runs
  at that size, and anything smaller either runs too (EfficientNetV2 and Swin pad or pool their way through,
  as the reference's do) or raises a ValueError that names the size; it never fails deep inside the network.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from visionzoo import models
from visionzoo.models._utils import check_image_batch
from visionzoo.transforms import functional as F

CLASSIFIERS = models.list_models(module=models)


def _min_size(name: str) -> tuple[int, int]:
    return tuple(models.get_model_weights(name).DEFAULT.meta.get("min_size", (1, 1)))  # type: ignore[return-value]


def _with_value(shape: tuple[int, ...], value: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    x.view(-1)[x.numel() // 2] = value
    return x


def model_bad_inputs(h: int, w: int) -> list[tuple[str, object, type[Exception], str]]:
    """(label, input, error, message pattern) for a model whose smallest accepted input is h x w."""
    return [
        ("1 channel", torch.rand(1, 1, h, w), ValueError, "expects 3 channels, got 1"),
        ("4 channels", torch.rand(2, 4, h, w), ValueError, "expects 3 channels, got 4"),
        ("channels last", torch.rand(1, h, w, 3), ValueError, "expects 3 channels, got"),
        ("uint8", torch.zeros(1, 3, h, w, dtype=torch.uint8), TypeError, "floating point tensor, got torch.uint8"),
        ("int64", torch.zeros(1, 3, h, w, dtype=torch.int64), TypeError, "floating point tensor, got torch.int64"),
        ("bool", torch.zeros(1, 3, h, w, dtype=torch.bool), TypeError, "floating point tensor, got torch.bool"),
        (
            "complex",
            torch.zeros(1, 3, h, w, dtype=torch.complex64),
            TypeError,
            "floating point tensor, got torch.complex64",
        ),
        ("list", [[0.0]], TypeError, "expects a torch.Tensor .* got list"),
        ("ndarray", np.zeros((1, 3, h, w), np.float32), TypeError, "expects a torch.Tensor .* got ndarray"),
        ("3-D", torch.rand(3, h, w), ValueError, r"4-D batch .* got shape \(3, "),
        ("5-D", torch.rand(1, 1, 3, h, w), ValueError, "4-D batch"),
        ("empty batch", torch.rand(0, 3, h, w), ValueError, r"empty batch \(input shape \(0, 3, "),
        ("NaN", _with_value((2, 3, h, w), math.nan), ValueError, "got 1 NaN or infinite values"),
        ("+inf", _with_value((1, 3, h, w), math.inf), ValueError, "got 1 NaN or infinite values"),
        ("-inf float64", _with_value((1, 3, h, w), -math.inf, torch.float64), ValueError, "got 1 NaN or infinite"),
        ("NaN bfloat16", _with_value((1, 3, h, w), math.nan, torch.bfloat16), ValueError, "got 1 NaN or infinite"),
        ("zero height", torch.rand(1, 3, 0, w), ValueError, f"needs images of at least .* pixels, got 0x{w}"),
    ]


def _smaller_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """Sizes below the published minimum: just below it, half of it, and a few very small ones."""
    sizes = {(h - 1, w), (h, w - 1), (h // 2, w // 2), (1, 1), (2, 3), (7, 7)}
    return sorted((a, b) for a, b in sizes if a >= 1 and b >= 1 and (a < h or b < w))


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_model_refuses_bad_inputs_and_accepts_its_min_size(name: str) -> None:
    h, w = _min_size(name)
    with torch.device("meta"):  # ViTs check the size they were built for: build them for their weights' size
        model = models.get_model(name, **({"image_size": h} if name.startswith("vit_") else {})).eval()
    for _label, x, error, message in model_bad_inputs(h, w):  # `pytest -l` shows the label of a failing case
        with pytest.raises(error, match=message):
            model(x)
    with torch.inference_mode():
        # The smallest size the meta promises really runs: shape inference through the whole network.
        assert model(torch.empty(2, 3, h, w, device="meta")).shape == (2, 1000)
        for small in _smaller_sizes(h, w):
            try:
                out = model(torch.empty(1, 3, *small, device="meta"))
            except ValueError as error:  # refused: the message must say which size was wrong
                assert f"{small[0]}x{small[1]}" in str(error), error
            else:
                assert out.shape == (1, 1000)


def test_bad_input_messages_name_the_model() -> None:
    model = models.get_model("resnet18", num_classes=2).eval()
    with pytest.raises(ValueError, match=r"^ResNet got 1 NaN or infinite values in its input \(shape \(1, 3, 8, 8\)\)"):
        model(_with_value((1, 3, 8, 8), math.nan))
    with torch.inference_mode():  # the check refuses nothing finite: the same input without the NaN runs
        assert model(torch.rand(1, 3, 8, 8)).shape == (1, 2)


# ------------------------------------------------------------------------------------------ the NaN check


def test_nan_check_handles_overflowing_sums_and_half_precision() -> None:
    # A sum that overflows is not evidence: the exact count decides (no false alarm on huge finite values).
    check_image_batch(torch.full((1, 3, 4, 4), 3e38), "M")
    # Half precision sums of ordinary images overflow in half; they are accumulated in float32.
    check_image_batch(torch.full((1, 3, 64, 64), 60000.0, dtype=torch.float16), "M")
    with pytest.raises(ValueError, match="got 3 NaN or infinite"):
        x = torch.zeros(1, 3, 4, 4, dtype=torch.float16)
        x[0, :, 0, 0] = torch.tensor([math.inf, -math.inf, math.nan])
        check_image_batch(x, "M")


def test_nan_check_skips_meta_tensors_and_compiled_code() -> None:
    check_image_batch(torch.full((1, 3, 4, 4), math.nan, device="meta"), "M")  # nothing to read: not checked

    def forward(x: torch.Tensor) -> torch.Tensor:
        check_image_batch(x, "M")
        return x * 2

    # fullgraph=True fails on any data-dependent branch, so this proves the check stays out of compiled graphs.
    compiled = torch.compile(forward, backend="eager", fullgraph=True)
    nan = torch.full((1, 3, 4, 4), math.nan)
    assert torch.isnan(compiled(nan)).all()
    with pytest.raises(ValueError, match="NaN"):  # eager calls are still checked
        forward(nan)


# ------------------------------------------------------------------------------------------ presets


def _distinct_presets() -> dict[str, object]:
    presets = {}
    for name in CLASSIFIERS:
        for weights in models.get_model_weights(name):
            preset = weights.transforms()
            presets.setdefault(repr(preset).replace("\n", ""), preset)
    return presets


PRESETS = _distinct_presets()


def preset_bad_inputs() -> list[tuple[str, object, type[Exception], str]]:
    return [
        ("1 channel", torch.rand(1, 1, 20, 20), ValueError, "expected 3 channels, got 1"),
        ("4 channels", torch.rand(4, 20, 20), ValueError, "expected 3 channels, got 4"),
        ("channels last", torch.zeros(20, 20, 3, dtype=torch.uint8), ValueError, "channels-last"),
        ("PIL L", Image.new("L", (20, 20)), ValueError, "PIL mode 'L'"),
        ("PIL RGBA", Image.new("RGBA", (20, 20)), ValueError, "PIL mode 'RGBA'"),
        ("int64", torch.zeros(3, 20, 20, dtype=torch.int64), ValueError, "unsupported dtype torch.int64"),
        ("bool", torch.zeros(3, 20, 20, dtype=torch.bool), ValueError, "unsupported dtype torch.bool"),
        ("complex", torch.zeros(3, 20, 20, dtype=torch.complex64), ValueError, "unsupported dtype torch.complex64"),
        ("list", [[0.5]], TypeError, "got list"),
        ("ndarray", np.zeros((20, 20, 3), np.uint8), TypeError, "numpy.ndarray"),
        ("2-D", torch.rand(20, 20), ValueError, r"got a tensor of shape \(20, 20\)"),
        ("5-D", torch.rand(1, 1, 3, 20, 20), ValueError, "got a tensor of shape"),
        ("empty batch", torch.rand(0, 3, 20, 20), ValueError, "empty batch"),
        ("zero width", torch.rand(3, 20, 0), ValueError, "zero-sized image"),
        ("zero-size PIL", Image.new("RGB", (0, 5)), ValueError, "zero-sized image"),
        ("NaN", _with_value((3, 20, 20), math.nan), ValueError, "holds 1 NaN or infinite values"),
        ("inf batch", _with_value((2, 3, 20, 20), math.inf), ValueError, "holds 1 NaN or infinite values"),
        ("NaN float16", _with_value((3, 20, 20), math.nan, torch.float16), ValueError, "holds 1 NaN or infinite"),
    ]


@pytest.mark.parametrize("key", list(PRESETS))
def test_preset_refuses_bad_inputs(key: str) -> None:
    preset = PRESETS[key]
    for _label, img, error, message in preset_bad_inputs():
        with pytest.raises(error, match=message):
            preset(img)
    # Tiny images are fine for a preset (it resizes them up), and so are half-precision ones.
    out = preset(torch.rand(1, 3, 1, 2, dtype=torch.float16))
    assert out.shape == (1, 3, *preset.crop_size * 2) and torch.isfinite(out).all()


def test_presets_and_models_together_survive_tiny_images() -> None:
    # The usual pipeline: whatever size the image, the preset output is valid input for its model.
    weights = models.get_model_weights("squeezenet1_1").DEFAULT
    model = models.get_model("squeezenet1_1", num_classes=2).eval()
    batch = weights.transforms()(torch.randint(0, 256, (2, 3, 1, 1), dtype=torch.uint8))
    with torch.inference_mode():
        assert model(batch).shape == (2, 2)


def test_count_non_finite_is_exact() -> None:
    x = torch.rand(5, 7)
    x[0, 0], x[1, 1], x[2, 2] = math.nan, math.inf, -math.inf
    assert F._count_non_finite(x) == 3
    assert F._count_non_finite(torch.rand(5, 7)) == 0
    assert F._count_non_finite(torch.zeros(5, dtype=torch.int64)) == 0
