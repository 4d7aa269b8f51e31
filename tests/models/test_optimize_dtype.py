"""optimize_for_inference's ``dtype``: bfloat16 under autocast, its top-1 check, "auto" and bad arguments."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from visionzoo import inference
from visionzoo.models import optimize_for_inference
from visionzoo.ops.misc import Conv2dNormActivation


def _clear_winner_cnn() -> nn.Module:
    """A small CNN whose head bias makes the last class win by a wide margin, whatever the input."""
    torch.manual_seed(0)
    model = nn.Sequential(
        Conv2dNormActivation(3, 8),
        Conv2dNormActivation(8, 8, groups=8),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),
        nn.LayerNorm(4, elementwise_affine=False),
    )
    with torch.no_grad():
        model[4].bias.copy_(torch.tensor([0.0, 3.0, 6.0, 9.0]))
        model[4].weight.mul_(0.1)
    return model.eval()


def _near_tie() -> tuple[nn.Module, torch.Tensor]:
    """Two logits 1.0 and 1.001: float32 picks the second, bfloat16 (8 bits of mantissa) rounds both to 1.0."""
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    return model.eval(), torch.tensor([[1.0, 1.001], [3.0, -3.0]])


def _with_bf16_units(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    monkeypatch.setattr(inference, "_cpu_features", lambda: {"avx2", "amx_bf16"} if present else {"avx2", "avx512f"})


def test_bfloat16_accepted_reports_its_deviation() -> None:
    model = _clear_winner_cnn()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    optimised = optimize_for_inference(model, x, compile=False, dtype=torch.bfloat16)
    assert optimised.dtype == torch.bfloat16
    out = optimised(x)
    assert out.dtype == torch.float32  # bfloat16 inside, float32 out
    assert optimised.max_deviation == pytest.approx((out - expected).abs().max().item())
    assert 0 < optimised.max_deviation < 0.1  # rounding to 8 bits of mantissa, not a different model
    assert torch.equal(out.argmax(1), expected.argmax(1))
    assert next(optimised.module.parameters()).dtype == torch.float32  # weights are converted by autocast
    # float32 reports its deviation too, within the 1e-3 contract
    exact = optimize_for_inference(model, x, compile=False, dtype="float32")
    assert exact.dtype == torch.float32 and exact.max_deviation is not None and exact.max_deviation <= 1e-3


def test_bfloat16_refused_when_top1_flips() -> None:
    model, x = _near_tie()
    assert model(x).argmax(1).tolist() == [1, 0]
    with pytest.raises(RuntimeError, match=r"top-1 differs for 1 of 2 samples; largest deviation 0\.001"):
        optimize_for_inference(model, x, compile=False, dtype=torch.bfloat16)


def test_auto_falls_back_to_float32_when_bfloat16_flips_top1(monkeypatch: pytest.MonkeyPatch) -> None:
    _with_bf16_units(monkeypatch, present=True)
    model, x = _near_tie()
    with pytest.warns(RuntimeWarning, match="dtype='auto' keeps float32"):
        optimised = optimize_for_inference(model, x, compile=False, dtype="auto")
    assert optimised.dtype == torch.float32
    assert optimised(x).argmax(1).tolist() == [1, 0]


def test_auto_follows_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _clear_winner_cnn()
    x = torch.randn(1, 3, 8, 8)
    _with_bf16_units(monkeypatch, present=False)
    assert not inference.has_native_bfloat16("cpu")
    assert optimize_for_inference(model, x, compile=False, dtype="auto").dtype == torch.float32
    assert optimize_for_inference(model, compile=False, dtype="auto").dtype == torch.float32  # no example needed
    _with_bf16_units(monkeypatch, present=True)
    assert inference.has_native_bfloat16("cpu") == torch.backends.mkldnn.is_available()
    if torch.backends.mkldnn.is_available():
        assert optimize_for_inference(model, x, compile=False, dtype="auto").dtype == torch.bfloat16
    assert not inference.has_native_bfloat16("meta")


def test_cpu_features_come_from_torch_or_proc_cpuinfo() -> None:
    features = inference._cpu_features()
    assert isinstance(features, set)
    if torch.cpu.get_capabilities().get("avx2"):
        assert "avx2" in features


@pytest.mark.parametrize("dtype", [torch.float16, "fp16", 16, None])
def test_bad_dtype_is_refused(dtype: object) -> None:
    model = _clear_winner_cnn()
    with pytest.raises(ValueError, match=r"dtype must be torch\.float32, torch\.bfloat16 or 'auto'"):
        optimize_for_inference(model, torch.randn(1, 3, 8, 8), compile=False, dtype=dtype)  # type: ignore[arg-type]


def test_bfloat16_needs_an_example_input() -> None:
    with pytest.raises(ValueError, match="needs example_input"):
        optimize_for_inference(_clear_winner_cnn(), compile=False, dtype=torch.bfloat16)


def test_bfloat16_normalises_in_float32() -> None:
    """Autocast would hand LayerNorm a bfloat16 input from the linear layer; the pre-hook makes it float32."""
    model = _clear_winner_cnn()
    seen: list[torch.dtype] = []
    model[5].register_forward_hook(lambda m, args, out: seen.append(args[0].dtype))
    optimize_for_inference(model, torch.randn(1, 3, 8, 8), compile=False, dtype="bfloat16", inplace=True)
    assert seen and set(seen) == {torch.float32}


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_compiled_bfloat16_tiny_model() -> None:
    """Autocast inside the compiled region, with freezing (a C++ compile: ~20 s on a quiet 2-core machine)."""
    model = _clear_winner_cnn()
    x = torch.randn(2, 3, 16, 16)
    optimised = optimize_for_inference(model, x, dtype=torch.bfloat16, keep_faster=False)
    assert optimised.compiled and optimised.dtype == torch.bfloat16
    assert optimised.max_deviation is not None and 0 < optimised.max_deviation < 0.1
    out = optimised(x)
    assert out.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), atol=0.1, rtol=0)
