"""optimize_for_inference: BatchNorm folding, channels-last, torch.compile, and their safety checks.

Models get BatchNorm statistics calibrated on random data (so activations have realistic magnitudes and the
1e-3 contract is meaningful) plus a perturbed affine transform (so folding has something to fold).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from visionzoo import models
from visionzoo.inference import fold_conv_bn, route_linear_through_onednn
from visionzoo.models import InferenceModel, optimize_for_inference
from visionzoo.models.vision_transformer import VisionTransformer
from visionzoo.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d

ATOL = 1e-3


def _calibrated(model: nn.Module, size: int = 64) -> nn.Module:
    """Give every BatchNorm running statistics of real activations and a non-trivial affine transform."""
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
                module.momentum = None  # cumulative average over the calibration batches
                module.reset_running_stats()
        model.train()
        for _ in range(2):
            model(torch.randn(4, 3, size, size))
    return model.eval()


def _count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(
    ("name", "size", "config"),
    [
        ("resnet18", 64, {}),  # named pairs conv1/bn1 in blocks, downsample Sequential
        ("mobilenet_v3_small", 64, {}),  # Conv2dNormActivation, squeeze-excitation
        ("efficientnet_b0", 64, {}),  # MBConv with stochastic depth
        ("regnet_y_400mf", 64, {}),
        ("googlenet", 64, {}),  # BasicConv2d conv/bn, aux heads unused in eval
        ("inception_v3", 80, {"aux_logits": False}),  # the aux head needs 299x299 in training mode
        ("densenet121", 64, {}),  # pre-activation: only conv -> norm pairs fold, norm after concat stays
        ("shufflenet_v2_x0_5", 64, {}),  # channel shuffle, split branches
        ("mnasnet0_5", 64, {}),
        ("convnext_tiny", 64, {}),  # no BatchNorm: LayerNorm, and linear layers that may go through oneDNN
    ],
)
def test_eager_path_matches_model(name: str, size: int, config: dict) -> None:
    model = _nonzero_linears(_calibrated(models.get_model(name, **config), size))
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
    optimised = optimize_for_inference(model, x, compile=False)
    assert isinstance(optimised, InferenceModel) and not optimised.compiled
    assert optimised.folded > 0 or name == "convnext_tiny"
    assert optimised.channels_last  # every one of these is a convolutional network
    actual = optimised(x)
    assert actual.shape == expected.shape
    # Outputs are O(1) here except for Inception v3, whose random weights make logits of ~80 that move by
    # ~1e-2 when the input moves by 1e-6 (a relative tolerance is the meaningful check for it).
    torch.testing.assert_close(actual, expected, atol=ATOL * max(1.0, expected.abs().max().item()), rtol=0)
    # The original model is left alone: it still has its BatchNorms and trainable parameters.
    assert _count(model, nn.BatchNorm2d) >= _count(optimised.module, nn.BatchNorm2d)
    assert all(p.requires_grad for p in model.parameters())


def test_resnet_folds_every_batchnorm_and_keeps_its_class() -> None:
    model = _calibrated(models.resnet18())
    batchnorms = _count(model, nn.BatchNorm2d)
    optimised = optimize_for_inference(model, compile=False)
    assert optimised.folded == batchnorms == 20
    assert _count(optimised.module, nn.BatchNorm2d) == 0
    assert type(optimised.module) is type(model)
    assert optimised.module.layer1[0].bn1.__class__ is nn.Identity
    assert optimised.module.layer1[0].conv1.bias is not None


class _SharedOutput(nn.Module):
    """The convolution's output feeds the BatchNorm and the residual sum: folding would change the sum."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class _DataDependent(nn.Module):
    """Cannot be traced (branches on a value), so folding falls back to the Sequential inside."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(Conv2dNormActivation(3, 4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y if y.sum() > 0 else -y


def _randomise_norms(model: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) and m.running_mean is not None:
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.5, 0.5)
    return model.eval()


def test_shared_convolution_output_is_not_folded() -> None:
    model = _randomise_norms(_SharedOutput())
    x = torch.randn(2, 4, 8, 8)
    optimised = optimize_for_inference(model, x, compile=False)
    assert optimised.folded == 0
    torch.testing.assert_close(optimised(x), model(x).detach(), atol=ATOL, rtol=0)


def test_untraceable_model_still_folds_its_sequentials() -> None:
    model = _randomise_norms(_DataDependent())
    x = torch.randn(2, 3, 8, 8)
    optimised = optimize_for_inference(model, x, compile=False)
    assert optimised.folded == 2
    torch.testing.assert_close(optimised(x), model(x).detach(), atol=ATOL, rtol=0)


def test_frozen_and_affine_free_norms_fold_but_batch_statistics_do_not() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=True),
        FrozenBatchNorm2d(4),
        nn.Conv2d(4, 4, 1, bias=False),
        nn.BatchNorm2d(4, affine=False),
        nn.Conv2d(4, 4, 1),
        nn.BatchNorm2d(4, track_running_stats=False),  # normalises with batch statistics: must stay
    )
    model = _randomise_norms(model)
    x = torch.randn(3, 3, 8, 8)
    expected = model(x).detach()
    assert fold_conv_bn(model) == 2
    assert isinstance(model[1], nn.Identity) and isinstance(model[3], nn.Identity)
    assert isinstance(model[5], nn.BatchNorm2d)
    torch.testing.assert_close(model(x).detach(), expected, atol=ATOL, rtol=0)


def test_channels_last_only_for_convolutional_networks() -> None:
    patch_model = nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    assert not optimize_for_inference(patch_model, compile=False).channels_last
    assert optimize_for_inference(patch_model, compile=False, channels_last=True).channels_last
    cnn = models.mobilenet_v3_small()
    optimised = optimize_for_inference(cnn, compile=False)
    assert optimised.channels_last
    assert optimised.module.features[1].block[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_runs_without_autograd_and_inplace_option() -> None:
    model = _calibrated(models.resnet18())
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    optimised = optimize_for_inference(model, compile=False, inplace=True)
    assert optimised.module is model
    assert not optimised(x).requires_grad
    assert not any(p.requires_grad for p in model.parameters())


def test_keeps_freed_memory_for_the_next_call_unless_told_not_to(allocator_calls: list[bool]) -> None:
    model = _calibrated(models.resnet18())
    assert optimize_for_inference(model, compile=False).keeps_freed_memory
    assert allocator_calls == [True]
    assert not optimize_for_inference(model, compile=False, keep_freed_memory=False).keeps_freed_memory
    assert allocator_calls == [True]


def _nonzero_linears(model: nn.Module) -> nn.Module:
    """Randomise zero-initialised linear layers (classification heads), which would hide any difference."""
    torch.manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) and not m.weight.any():
                m.weight.normal_(std=0.05)
    return model.eval()


def test_linear_layers_through_onednn_match_f_linear() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 20), nn.GELU(), nn.Linear(20, 7, bias=False)).eval()
    keys = {k: v.shape for k, v in model.state_dict().items()}
    x = torch.randn(3, 5, 12)  # any leading dimensions
    expected = model(x).detach()
    assert route_linear_through_onednn(model) == 2
    assert all(type(m).__name__ == "_OneDNNLinear" for m in (model[0], model[2]))
    assert {k: v.shape for k, v in model.state_dict().items()} == keys  # same tensors, same names and shapes
    torch.testing.assert_close(model(x).detach(), expected, atol=1e-5, rtol=1e-5)
    assert model(torch.randn(0, 12)).shape == (0, 7)
    transposed = torch.randn(12, 4).t()  # a non-contiguous input
    first = F.linear(transposed, model[0].weight, model[0].bias)
    torch.testing.assert_close(model(transposed).detach(), model[2](model[1](first)).detach())


@pytest.mark.parametrize("compile", [False, True])
def test_transformer_with_onednn_linears_matches_eager(compile: bool) -> None:
    """A small ViT: nn.MultiheadAttention reads ``out_proj.weight`` itself, which must keep working."""
    model = _nonzero_linears(
        VisionTransformer(
            image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
        )
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    optimised = optimize_for_inference(model, x, compile=compile, onednn_linear=True)
    # Per block the two MLP layers and the attention's out_proj (a subclass of nn.Linear), and the head.
    assert optimised.onednn_linear_layers == 2 * 3 + 1
    assert not optimised.channels_last  # a single patch-embedding convolution
    torch.testing.assert_close(optimised(x), expected, atol=ATOL, rtol=0)
    if compile:  # an ahead-of-time program (torch.export, AOTInductor) raced the in-process graph
        assert set(optimised.seconds_per_call or {}) == {"compiled", "ahead_of_time", "eager"}
    # nn.MultiheadAttention's own path (attention weights asked for) reads out_proj's tensors itself.
    routed = next(m for m in optimised.module.modules() if isinstance(m, nn.MultiheadAttention))
    plain = next(m for m in model.modules() if isinstance(m, nn.MultiheadAttention))
    tokens = torch.randn(2, 5, 32)
    with torch.no_grad():
        for got, want in zip(routed(tokens, tokens, tokens), plain(tokens, tokens, tokens)):
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="nn.Module"):
        optimize_for_inference("resnet18")  # type: ignore[arg-type]
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(TypeError, match="example_input"):
        optimize_for_inference(model, example_input=[torch.zeros(1, 3, 8, 8)], compile=False)  # type: ignore[arg-type]
    optimised = optimize_for_inference(model, compile=False)
    with pytest.raises(TypeError, match="already optimised"):
        optimize_for_inference(optimised)
    with pytest.raises(ValueError, match="eval mode"):
        fold_conv_bn(model.train())


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._dynamo.exc import BackendCompilerFailed

    def broken_compile(module: nn.Module, **options: object) -> object:
        def run(*args: object) -> object:
            raise BackendCompilerFailed(broken_compile, RuntimeError("no C++ compiler found"), None)

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = _randomise_norms(nn.Sequential(Conv2dNormActivation(3, 4), nn.Flatten()))
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        optimised = optimize_for_inference(model, x)
    assert not optimised.compiled and optimised.compile_seconds is None
    torch.testing.assert_close(optimised(x), model(x).detach(), atol=ATOL, rtol=0)


def _fake_compiled(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[int]:
    """Make "compiling" wrap the module in a runner that takes ``seconds`` longer per call, and compiling ahead of
    time fail; returns the runner's call log."""
    import time

    from visionzoo import inference

    calls: list[int] = []

    def compile_with_freezing(module: nn.Module, **settings: bool) -> object:
        def run(*args: object) -> object:
            calls.append(1)
            time.sleep(seconds)
            return module(*args)

        return run

    def no_export(*args: object) -> object:
        raise RuntimeError("torch.export is not under test here")

    monkeypatch.setattr(inference, "_compile_with_freezing", compile_with_freezing)
    monkeypatch.setattr(inference, "_load_or_build_package", no_export)  # no ahead-of-time program to race
    return calls


def test_eager_kept_when_compiling_is_slower(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_compiled(monkeypatch, seconds=0.05)
    model = _calibrated(nn.Sequential(Conv2dNormActivation(3, 4), nn.Flatten()), size=8)
    x = torch.randn(2, 3, 8, 8)
    optimised = optimize_for_inference(model, x)
    assert not optimised.compiled and optimised.compile_seconds is not None
    timings = optimised.seconds_per_call
    assert timings is not None and timings["compiled"] >= 0.05 > timings["eager"]
    assert 3 <= optimised.timing_rounds <= 10
    assert len(calls) == 1 + optimised.timing_rounds  # the checked first call and the timed ones
    torch.testing.assert_close(optimised(x), model(x).detach(), atol=ATOL, rtol=0)
    assert len(calls) == 1 + optimised.timing_rounds  # later calls run eagerly


def test_compiled_kept_when_not_clearly_slower(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_compiled(monkeypatch, seconds=0.0)
    model = _calibrated(nn.Sequential(Conv2dNormActivation(3, 4), nn.Flatten()), size=8)
    x = torch.randn(2, 3, 8, 8)
    unmeasured = optimize_for_inference(model, x, keep_faster=False)
    assert unmeasured.compiled and unmeasured.seconds_per_call is None
    # Equal work on both sides: a tie keeps the compiled model, unless the sleeping runner really lost by 5%.
    tied = optimize_for_inference(model, x)
    timings = tied.seconds_per_call
    assert timings is not None
    # Dropped only when eager won clearly (its best and its median round); a best-round win alone keeps it.
    assert tied.compiled or timings["eager"] <= 0.95 * timings["compiled"]
    slow = _fake_compiled(monkeypatch, seconds=0.05)
    kept = optimize_for_inference(model, x, keep_faster=False)
    assert kept.compiled and len(slow) == 1
    kept(x)
    assert len(slow) == 2  # calls go through the (slower) compiled runner, as asked


def test_compiled_tiny_model_matches_eager() -> None:
    """The real torch.compile path (Inductor with freezing) on a tiny network.

    This compiles C++ kernels: about 20 s of CPU time on a quiet 2-core machine, several times that in wall
    time when other jobs compete for the cores.
    """
    model = _calibrated(
        nn.Sequential(
            Conv2dNormActivation(3, 8),
            Conv2dNormActivation(8, 8, groups=8, activation_layer=nn.Hardswish),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
        ),
        size=16,
    )
    from torch._inductor.utils import run_and_get_code  # keeps the code Inductor generated

    x = torch.randn(2, 3, 16, 16)
    # keep_faster=False: this tiny network may well run faster eagerly, and the compiled path is under test.
    optimised, code = run_and_get_code(optimize_for_inference, model, x, compile=True, keep_faster=False)
    assert optimised.compiled and optimised.folded == 2 and optimised.seconds_per_call is None
    assert optimised.frozen and optimised.cpp_wrapper
    assert optimised.compile_seconds is not None and optimised.compile_seconds > 0
    with torch.no_grad():
        expected = model(x)
        other = torch.randn(2, 3, 16, 16)
        torch.testing.assert_close(optimised(x), expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(optimised(other), model(other), atol=ATOL, rtol=0)
    if torch.backends.mkldnn.is_available():
        # Freezing is what lets Inductor pre-pack the convolutions for oneDNN (with fused activations); without
        # it the compiled graph calls plain aten convolutions. The C++ wrapper calls them through Inductor's shim.
        assert "mkldnn__convolution_pointwise" in "".join(code)


def test_import_does_not_load_the_compiler() -> None:
    code = "import sys, visionzoo.models as m; m.optimize_for_inference; print('torch._dynamo' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_models_re_exports_the_inference_module() -> None:
    import visionzoo

    assert models.optimize_for_inference is visionzoo.inference.optimize_for_inference
    assert models.InferenceModel is visionzoo.inference.InferenceModel
    assert "inference" in dir(visionzoo)


def test_one_lucky_round_does_not_decide() -> None:
    from visionzoo.inference import _clearly_faster

    # eager's best round beats compiled clearly, but its median does not: noise, keep compiled
    noisy = {"eager": [0.05, 0.2, 0.2, 0.2], "compiled": [0.1, 0.1, 0.1, 0.1]}
    assert not _clearly_faster(noisy, "eager", "compiled", 0.95)
    steady = {"eager": [0.05, 0.06, 0.07], "compiled": [0.1, 0.1, 0.3]}
    assert _clearly_faster(steady, "eager", "compiled", 0.95)
