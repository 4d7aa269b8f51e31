"""Loading checkpoints into the quantized builders: int8 entries through the real pipeline (HTTP mirror, cache),
QAT states, float weights into the quantizable float models, and checkpoints that do not fit."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch

from tests import reference
from visionzoo import models
from visionzoo.models import quantization
from visionzoo.models.quantization import MobileNet_V2_QuantizedWeights, ResNet18_QuantizedWeights


def _reference_int8(name: str, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the reference prints torch's deprecation notices
        return reference.models.get_model(name, weights=None, quantize=True, **kwargs).eval()


def _int8_features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The int8 output of the first blocks (a randomly initialised MobileNet's deeper activations fade to zero)."""
    with torch.inference_mode():
        return model.features[:4](model.quant(x)).int_repr()


def test_int8_entry_from_a_mirror_then_the_cache(
    file_server: tuple[str, Path], isolated_weights_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, served = file_server
    torch.backends.quantized.engine = "fbgemm"
    ref = _reference_int8("quantized_resnet18", backend="fbgemm")
    entry = ResNet18_QuantizedWeights.IMAGENET1K_FBGEMM_V1
    # The official name has no "-<sha256 prefix>" part, so a checkpoint of our own may stand in for it.
    assert entry.file_name == "resnet18_fbgemm_16fa66dd.pth"
    torch.save(ref.state_dict(), served / entry.file_name)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_URL", base)

    ours = models.get_model("quantized_resnet18", weights="DEFAULT", quantize=True)
    assert (isolated_weights_cache / entry.file_name).is_file()
    x = torch.randn(2, 3, 64, 72)
    with torch.inference_mode():
        expected = ref(x)
        assert torch.equal(ours(x), expected)

    (served / entry.file_name).unlink()  # the cache must answer now
    with pytest.warns(UserWarning, match=r"pretrained=True.*ResNet18_QuantizedWeights\.IMAGENET1K_FBGEMM_V1"):
        legacy = quantization.resnet18(pretrained=True, quantize=True)
    with torch.inference_mode():
        assert torch.equal(legacy(x), expected)


def test_qnnpack_entry_switches_the_engine(file_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    base, served = file_server
    ref = _reference_int8("quantized_mobilenet_v2")  # the family's default engine: qnnpack
    entry = MobileNet_V2_QuantizedWeights.IMAGENET1K_QNNPACK_V1
    torch.save(ref.state_dict(), served / entry.file_name)
    monkeypatch.setenv("VISIONZOO_WEIGHTS_URL", base)

    torch.backends.quantized.engine = "fbgemm"
    ours = quantization.mobilenet_v2(weights=entry, quantize=True)
    assert torch.backends.quantized.engine == "qnnpack"
    x = torch.randn(2, 3, 64, 64)
    features = _int8_features(ref, x)
    assert features.unique().numel() > 10 and torch.equal(_int8_features(ours, x), features)
    with torch.inference_mode():
        assert torch.equal(ours(x), ref(x))


def _reference_qat_state(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    """A MobileNet V3 QAT state made with the reference's classes (a few training steps move the fake-quant
    ranges and BatchNorm statistics), and the int8 model the reference makes from it."""
    family = reference.models.quantization.mobilenetv3
    setting, last_channel = family._mobilenet_v3_conf("mobilenet_v3_large")
    torch.manual_seed(0)
    qat = family.QuantizableMobileNetV3(setting, last_channel, block=family.QuantizableInvertedResidual)
    reference.models.quantization.utils._replace_relu(qat)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat.fuse_model(is_qat=True)
        qat.qconfig = torch.ao.quantization.get_default_qat_qconfig("qnnpack")
        torch.ao.quantization.prepare_qat(qat, inplace=True)
        with torch.no_grad():
            for _ in range(3):
                qat(torch.randn(4, 3, 64, 64))
        path = tmp_path / "mobilenet_v3_large_qat.pth"
        torch.save(qat.state_dict(), path)
        torch.backends.quantized.engine = "qnnpack"
        int8 = torch.ao.quantization.convert(copy.deepcopy(qat)).eval()  # as the reference builder: convert, eval
    return path, int8


def test_qat_checkpoint_old_and_new_layout(tmp_path: Path) -> None:
    path, ref = _reference_qat_state(tmp_path)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = ref(x)
    features = _int8_features(ref, x)
    assert features.unique().numel() > 10  # trained ranges: the int8 features carry information

    ours = quantization.mobilenet_v3_large(weights=path, quantize=True)
    assert torch.equal(_int8_features(ours, x), features)
    with torch.inference_mode():
        assert torch.equal(ours(x), expected)

    # Checkpoints from before the hard-sigmoid gate had fixed quantization parameters lack its buffers.
    state = torch.load(path, weights_only=True)
    gate = [k for k in state if ".scale_activation.activation_post_process." in k]
    assert gate
    old = tmp_path / "old_layout.pth"
    torch.save({k: v for k, v in state.items() if k not in gate}, old)
    with torch.inference_mode():
        assert torch.equal(quantization.mobilenet_v3_large(weights=old, quantize=True)(x), expected)


def test_float_weights_into_the_quantizable_googlenet(tmp_path: Path) -> None:
    """Float weights follow the Inception family's rules: inputs rescaled, untrained auxiliary heads left out."""
    torch.manual_seed(0)
    float_state = reference.models.googlenet(init_weights=True).state_dict()
    path = tmp_path / "googlenet_float.pth"
    torch.save(float_state, path)
    ours = quantization.googlenet(weights=path).eval()
    assert ours.aux1 is None and ours.aux2 is None and ours.transform_input

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = reference.models.quantization.googlenet(aux_logits=False, transform_input=True, init_weights=False)
    ref.load_state_dict({k: v for k, v in float_state.items() if not k.startswith(("aux1.", "aux2."))})
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), ref.eval()(x), atol=1e-4, rtol=1e-4)


def test_checkpoints_that_do_not_fit(tmp_path: Path) -> None:
    int8_path = tmp_path / "shufflenet_x0_5_int8.pth"
    torch.save(quantization.shufflenet_v2_x0_5(quantize=True).state_dict(), int8_path)
    with pytest.raises(ValueError, match=r"shufflenet_x0_5_int8\.pth does not fit quantized_shufflenet_v2_x1_0"):
        quantization.shufflenet_v2_x1_0(weights=int8_path, quantize=True)

    float_path = tmp_path / "shufflenet_x0_5_float.pth"
    torch.save(quantization.shufflenet_v2_x0_5().state_dict(), float_path)
    with pytest.raises(
        ValueError, match=r"missing keys: .*scale.*\n.*unexpected keys.*\n.*float checkpoint needs quantize=False"
    ):
        quantization.shufflenet_v2_x0_5(weights=float_path, quantize=True)
    assert isinstance(quantization.shufflenet_v2_x0_5(weights=float_path), quantization.QuantizableShuffleNetV2)
