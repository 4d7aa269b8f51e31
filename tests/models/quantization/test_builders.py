"""Builder arguments of the quantized family: weights/quantize combinations, backends, quantize_model, warnings."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import pytest
import torch
from torch.ao.nn import intrinsic

from visionzoo import models
from visionzoo.models import quantization
from visionzoo.models.quantization import (
    Inception_V3_QuantizedWeights,
    MobileNet_V2_QuantizedWeights,
    ResNet50_QuantizedWeights,
)


def test_float_weights_with_quantize_true_name_the_int8_entries() -> None:
    with pytest.raises(
        ValueError, match=r"float weights.*ResNet50_QuantizedWeights\.IMAGENET1K_FBGEMM_V2.*quantize=False"
    ):
        quantization.resnet50(weights=models.ResNet50_Weights.IMAGENET1K_V2, quantize=True)
    with pytest.raises(ValueError, match=r"ResNet50_QuantizedWeights\.IMAGENET1K_FBGEMM_V1"):
        quantization.resnet50(weights="ResNet50_Weights.IMAGENET1K_V1", quantize=True)


def test_int8_weights_without_quantize_name_their_float_counterpart() -> None:
    with pytest.raises(ValueError, match=r"int8 weights: pass quantize=True.*ResNet50_Weights\.IMAGENET1K_V2"):
        quantization.resnet50(weights=ResNet50_QuantizedWeights.DEFAULT)
    with pytest.raises(ValueError, match="quantize=True"):
        models.get_model("quantized_resnet50", weights="IMAGENET1K_FBGEMM_V1")


def test_unknown_weights_and_bad_quantize() -> None:
    with pytest.raises(ValueError, match="IMAGENET1K_FBGEMM_V2"):
        quantization.resnet50(weights="IMAGENET1K_FBGEMM_V3", quantize=True)
    with pytest.raises(ValueError, match="IMAGENET1K_V2"):
        quantization.resnet50(weights="IMAGENET1K_V3")
    with pytest.raises(ValueError, match="belongs to MobileNet_V2_Weights"):
        quantization.resnet18(weights=models.MobileNet_V2_Weights.DEFAULT)
    with pytest.raises(TypeError, match="quantize must be True or False"):
        quantization.resnet18(quantize="yes")


def test_backend_errors() -> None:
    with pytest.raises(ValueError, match=r"quantized for the 'qnnpack' engine.*backend='fbgemm'"):
        quantization.mobilenet_v2(weights=MobileNet_V2_QuantizedWeights.DEFAULT, quantize=True, backend="fbgemm")
    with pytest.raises(ValueError, match="backend must be one of 'fbgemm', 'x86', 'qnnpack', got 'cuda'"):
        quantization.shufflenet_v2_x0_5(quantize=True, backend="cuda")


def test_combinations_that_cannot_load_fail_before_any_download() -> None:
    # Each would need the official checkpoint; the error must come first (this machine has no network).
    with pytest.raises(
        ValueError, match=r"num_classes=10 .* int8 head cannot be re-initialised.*ResNet50_Weights\.IMAGENET1K_V2"
    ):
        quantization.resnet50(weights="DEFAULT", quantize=True, num_classes=10)
    with pytest.raises(ValueError, match="have no auxiliary head"):
        quantization.inception_v3(weights=Inception_V3_QuantizedWeights.DEFAULT, quantize=True, aux_logits=True)
    with pytest.raises(ValueError, match="init_weights=True"):
        quantization.googlenet(weights="DEFAULT", init_weights=True)


def test_legacy_pretrained_false_and_registry_enum() -> None:
    with pytest.warns(UserWarning, match="pretrained=False"):
        model = quantization.shufflenet_v2_x0_5(pretrained=False)
    assert isinstance(model, quantization.QuantizableShuffleNetV2)
    assert models.get_model_weights("quantized_resnet50") is ResNet50_QuantizedWeights
    assert models.get_model_weights(quantization.resnet50) is ResNet50_QuantizedWeights


def test_fuse_model_follows_training_mode() -> None:
    model = quantization.resnet18()
    train_fused = copy.deepcopy(model).train()
    train_fused.fuse_model()
    assert type(train_fused.conv1) is intrinsic.ConvBnReLU2d  # BatchNorm kept apart, for training
    eval_fused = copy.deepcopy(model).eval()
    eval_fused.fuse_model()
    assert type(eval_fused.conv1) is intrinsic.ConvReLU2d
    assert type(eval_fused.layer1[0].bn1) is torch.nn.Identity
    qat_fused = copy.deepcopy(model).eval()
    qat_fused.fuse_model(is_qat=True)
    assert type(qat_fused.conv1) is intrinsic.ConvBnReLU2d


@pytest.mark.parametrize(
    ("name", "backend"),
    [
        ("resnet18", "fbgemm"),
        ("resnet18", "x86"),
        ("resnet18", "qnnpack"),
        ("shufflenet_v2_x0_5", "qnnpack"),
        ("googlenet", "x86"),
    ],
)
def test_quantize_model_approximates_the_float_model(name: str, backend: str) -> None:
    """Calibrated on the batch it is then run on, the int8 model stays within a few percent of the float one."""
    torch.manual_seed(0)
    float_model = getattr(quantization, name)(quantize=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = float_model(x)
    int8_model = quantization.quantize_model(copy.deepcopy(float_model), backend, x)
    assert torch.backends.quantized.engine == backend
    assert not int8_model.training and isinstance(int8_model.quant, torch.ao.nn.quantized.Quantize)
    with torch.inference_mode():
        actual = int8_model(x)
    assert actual.dtype == torch.float32 and actual.shape == expected.shape
    assert ((actual - expected).norm() / expected.norm()).item() < 0.1


def test_quantize_model_needs_a_quantizable_model() -> None:
    with pytest.raises(TypeError, match="no fuse_model"):
        quantization.quantize_model(models.resnet18())


def test_int8_builds_are_quiet_and_leave_the_filters_alone() -> None:
    filters_before = list(warnings.filters)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning, torch's deprecation notices included, would raise
        model = quantization.mobilenet_v3_large(quantize=True)  # the QAT path (prepare_qat, convert)
        model(torch.randn(1, 3, 64, 64))
        model = quantization.shufflenet_v2_x0_5(quantize=True, backend="x86")  # the PTQ path
        model(torch.randn(1, 3, 64, 64))
    assert warnings.filters == filters_before
    assert torch.backends.quantized.engine == "x86"


def test_int8_model_rejects_bad_input_clearly() -> None:
    model = quantization.shufflenet_v2_x0_5(quantize=True)
    with pytest.raises(ValueError, match="3 channels, got 1"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_googlenet_and_inception_arguments_as_the_float_families() -> None:
    model = quantization.googlenet(aux_logits=False, transform_input=True, num_classes=7)
    assert model.aux1 is None and model.transform_input and model.fc.out_features == 7
    model.train()
    outputs = quantization.inception_v3(num_classes=5).train()(torch.randn(2, 3, 299, 299))
    assert outputs.logits.shape == (2, 5) and outputs.aux_logits.shape == (2, 5)


def test_list_models_survives_a_torch_without_eager_quantization() -> None:
    """If torch drops torch.ao.quantization, only the quantized family disappears, with a clear import error."""
    script = (
        "import sys, torch\n"
        "sys.modules['torch.ao.quantization'] = None\n"
        "from visionzoo import models\n"
        "names = models.list_models()\n"
        "assert 'resnet50' in names and not any(n.startswith('quantized_') for n in names), names\n"
        "try:\n"
        "    import visionzoo.models.quantization\n"
        "except ModuleNotFoundError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "needs torch's eager-mode quantization" in result.stdout
