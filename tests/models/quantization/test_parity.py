"""Registry-driven checks of every quantized builder against the reference.

int8: the reference's quantized model (random init, fixed seed, fbgemm) has a state_dict that loads strictly into
ours, and every module of ours then produces the same int8 tensor (values, scale, zero point) as the reference's.
Float (``quantize=False``): parity as for the classification families, before and after ``fuse_model``. Weights
entries and presets equal the reference's.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, assert_same_weights, build_pair
from visionzoo import models
from visionzoo.models import quantization

QUANTIZED = models.list_models(module=quantization)


def _input(name: str) -> torch.Tensor:
    """A small batch; Inception v3 needs 75x75 at least, the others take 64x64."""
    size = max(64, *models.get_model_weights(name).DEFAULT.meta["min_size"])
    return torch.randn(2, 3, size, size + 8, generator=torch.Generator().manual_seed(1))


def test_registry_matches_the_reference() -> None:
    assert QUANTIZED == reference.models.list_models(module=reference.models.quantization)
    assert len(QUANTIZED) == 12
    for name in QUANTIZED:
        # Importable under the family's own name, as in `from torchvision.models.quantization import resnet50`.
        assert getattr(quantization, name.removeprefix("quantized_")) is models.get_model_builder(name)
    assert not set(QUANTIZED) & set(models.list_models(module=models))


def _record_outputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, list[Any]]]:
    """Run ``model`` and return its output and every submodule's output(s), int8 ones as (ints, scale, zero)."""
    seen: dict[str, list[Any]] = {}

    def hook(name: str) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.is_quantized:
                output = (output.int_repr(), output.q_scale(), output.q_zero_point())
            seen.setdefault(name, []).append(output)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    try:
        with torch.inference_mode():
            out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out, seen


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def _finer_default_scales(state: OrderedDict[str, Any]) -> OrderedDict[str, Any]:
    """Replace untrained quantization parameters (scale 1, zero point 0: MobileNet V3's QAT path converts without
    calibration) by a finer grid, so that activations keep many levels and the comparison means something.
    Calibrated scales are left as they are."""
    metadata = state._metadata  # type: ignore[attr-defined]  (module versions select how int8 modules load)
    state = OrderedDict(state)
    state._metadata = metadata  # type: ignore[attr-defined]
    for key, value in state.items():
        if key.endswith(".scale") and isinstance(value, torch.Tensor) and value.numel() == 1 and value.item() == 1.0:
            state[key] = torch.full_like(value, 0.02)
    if "quant.zero_point" in state and state["quant.scale"].item() == 0.02:
        state["quant.zero_point"] = torch.full_like(state["quant.zero_point"], 128)  # room for negative inputs
    return state


@pytest.mark.parametrize("name", QUANTIZED)
def test_int8_parity(name: str) -> None:
    torch.backends.quantized.engine = "fbgemm"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference prints torch's deprecation notices
        ref = reference.models.get_model(name, weights=None, quantize=True, backend="fbgemm").eval()
    ours = models.get_model(name, weights=None, quantize=True, backend="fbgemm").eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    state = _finer_default_scales(ref.state_dict())
    ref.load_state_dict(state, strict=True)
    ours.load_state_dict(state, strict=True)

    x = _input(name)
    expected, ref_trace = _record_outputs(ref, x)
    actual, our_trace = _record_outputs(ours, x)
    assert torch.equal(actual, expected)
    assert our_trace.keys() == ref_trace.keys()
    mismatched = [n for n in ref_trace if not _same(our_trace[n], ref_trace[n])]
    assert not mismatched, f"modules whose outputs differ: {mismatched[:5]}"
    # The comparison is not vacuous: quantized activations carry information.
    int8_outputs = [o[0] for outs in our_trace.values() for o in outs if isinstance(o, tuple)]
    assert len(int8_outputs) > 10 and any(t.unique().numel() > 10 for t in int8_outputs)
    assert isinstance(ours.quant, torch.ao.nn.quantized.Quantize)


@pytest.mark.parametrize("name", QUANTIZED)
def test_float_parity_and_fusion(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the reference's note on GoogLeNet's initialisation
        ref, ours = build_pair(name, quantize=False)  # same keys in the same order, same initialisation
    x = _input(name)
    assert_same_outputs(ref, ours, x)
    # Fusing folds BatchNorm into the convolutions: the same numbers, up to rounding, and the same layout.
    ours.fuse_model()
    ref.fuse_model()
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert _torch_layers(ours) == _torch_layers(ref)
    assert_same_outputs(ref, ours, x)


def _torch_layers(model: nn.Module) -> list[tuple[str, type]]:
    """Names and types of the torch layers (fused ones included); our container classes may differ."""
    return [
        (n, type(m))
        for n, m in model.named_modules()
        if type(m).__module__.startswith("torch.") and not isinstance(m, nn.Sequential)
    ]


@pytest.mark.parametrize("name", QUANTIZED)
def test_weights_entries(name: str) -> None:
    assert_same_weights(name)
    for member in reference.models.get_model_weights(name):
        mine = models.get_model_weights(name)[member.name]
        assert mine.meta["unquantized"] is models.get_weight(repr(member.meta["unquantized"]))


@pytest.mark.parametrize("name", QUANTIZED)
def test_presets(name: str) -> None:
    image = torch.randint(0, 256, (3, 190, 251), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for member in reference.models.get_model_weights(name):
        mine = models.get_model_weights(name)[member.name].transforms()
        theirs = member.transforms()
        for attr in ("crop_size", "resize_size", "mean", "std", "antialias"):
            assert getattr(mine, attr) == getattr(theirs, attr), attr
        assert mine.interpolation.value == theirs.interpolation.value
        for sample in (image, image.unsqueeze(0), image.float() / 255):
            torch.testing.assert_close(mine(sample), theirs(sample), atol=1e-3, rtol=0)
