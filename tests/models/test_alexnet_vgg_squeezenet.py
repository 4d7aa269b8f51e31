"""AlexNet, VGG and SqueezeNet: builder arguments, initialisation, input limits and loading weights."""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair
from visionzoo import models
from visionzoo.models import VGG16_Weights
from visionzoo.models._api import WeightsEnum
from visionzoo.models.squeezenet import SqueezeNet
from visionzoo.models.vgg import VGG, cfgs, make_layers


def _dropout_rates(model: nn.Module) -> list[float]:
    return [m.p for m in model.modules() if isinstance(m, nn.Dropout)]


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("alexnet", {"num_classes": 7, "dropout": 0.2}),
        ("vgg11_bn", {"num_classes": 5, "init_weights": False, "dropout": 0.3}),
        ("squeezenet1_0", {"num_classes": 3, "dropout": 0.1}),
        ("squeezenet1_1", {"num_classes": 10}),
    ],
)
def test_kwargs_parity(name: str, kwargs: dict[str, Any]) -> None:
    ref, ours = build_pair(name, **kwargs)
    assert _dropout_rates(ours) == _dropout_rates(ref)
    assert set(_dropout_rates(ours)) == {kwargs.get("dropout", 0.5)}
    x = torch.randn(2, 3, 64, 72)
    assert_same_outputs(ref, ours, x)
    assert ours(x).shape == (2, kwargs["num_classes"])


def test_vgg_init_weights() -> None:
    torch.manual_seed(0)
    model = models.vgg11(num_classes=10)
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert all(abs(m.weight.std().item() - 0.01) < 1e-3 and not m.bias.any() for m in linears)
    conv = model.features[0]
    assert not conv.bias.any()
    # Kaiming normal, fan_out: std = sqrt(2 / (out_channels * 3 * 3)).
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.1)

    untouched = models.vgg11_bn(num_classes=10, init_weights=False)
    assert untouched.classifier[0].bias.any() and untouched.features[0].bias.any()


def test_squeezenet_init_and_head() -> None:
    torch.manual_seed(0)
    model = models.squeezenet1_1(num_classes=20)
    head = model.classifier[1]
    assert isinstance(head, nn.Conv2d) and head.weight.shape == (20, 512, 1, 1)
    assert head.weight.std().item() == pytest.approx(0.01, rel=0.1)
    assert all(not m.bias.any() for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.num_classes == 20


@pytest.mark.parametrize(
    "name, min_size", [("alexnet", 63), ("vgg11", 32), ("squeezenet1_0", 21), ("squeezenet1_1", 17)]
)
def test_smallest_input(name: str, min_size: int) -> None:
    assert models.get_model_weights(name).DEFAULT.meta["min_size"] == (min_size, min_size)
    model = models.get_model(name, num_classes=2).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, min_size, min_size + 5)).shape == (1, 2)
        with pytest.raises(ValueError, match=f"at least {min_size}x{min_size} pixels, got {min_size - 1}x{min_size}"):
            model(torch.randn(1, 3, min_size - 1, min_size))


def test_squeezenet_version_is_fixed_by_the_builder() -> None:
    with pytest.raises(ValueError, match="version='1_0'"):
        models.squeezenet1_0(version="1_1")
    with pytest.raises(ValueError, match="Unsupported SqueezeNet version '1_2'"):
        SqueezeNet(version="1_2")
    assert len(models.squeezenet1_1(version="1_1").features) == 13


def test_bad_architecture_arguments() -> None:
    with pytest.raises(ValueError, match="num_classes must be positive"):
        models.squeezenet1_0(num_classes=0)
    with pytest.raises(ValueError, match="num_classes must be positive"):
        models.alexnet(num_classes=-1)
    with pytest.raises(ValueError, match="positive channel counts or 'M', got 'X'"):
        make_layers([64, "X"])
    with pytest.raises(ValueError, match="dropout"):
        models.alexnet(dropout=1.5)


def test_vgg_configurations_match_the_reference() -> None:
    assert cfgs == reference.models.vgg.cfgs
    small = VGG(make_layers([16, "M", 512, "M"], batch_norm=True), num_classes=4, dropout=0.0).eval()
    assert [type(m) for m in small.features] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d] * 2
    assert small(torch.randn(1, 3, 32, 32)).shape == (1, 4)


# --------------------------------------------------------------------------------------------------
# Loading weights (the network replaced by reference state_dicts)
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, torch.Tensor]]:
    """Checkpoints by file name; ``WeightsEnum.get_state_dict`` reads from here instead of downloading."""
    checkpoints: dict[str, dict[str, torch.Tensor]] = {}

    def get_state_dict(self: WeightsEnum, progress: bool = True, check_hash: bool = True) -> dict[str, torch.Tensor]:
        return dict(checkpoints[self.file_name])

    monkeypatch.setattr(WeightsEnum, "get_state_dict", get_state_dict)
    return checkpoints


def _reference_state_dict(name: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in reference.models.get_model(name, weights=None).state_dict().items()}


@pytest.mark.parametrize(
    "name, head", [("alexnet", "classifier.6"), ("vgg11", "classifier.6"), ("squeezenet1_1", "classifier.1")]
)
def test_num_classes_with_weights_resets_only_the_head(
    name: str, head: str, served: dict[str, dict[str, torch.Tensor]]
) -> None:
    weights = models.get_model_weights(name).DEFAULT
    expected = _reference_state_dict(name)
    served[weights.file_name] = {k: v.clone() for k, v in expected.items()}
    with pytest.warns(UserWarning, match=rf"num_classes=10 differs.*{head}\.weight, {head}\.bias"):
        model = models.get_model(name, weights="DEFAULT", num_classes=10).eval()
    state = model.state_dict()
    for key, value in expected.items():
        if key.startswith(head + "."):
            assert state[key].shape[0] == 10 and not state[key].is_meta and torch.isfinite(state[key]).all()
        else:
            assert torch.equal(state[key], value), key
    assert model.get_submodule(head).weight.std() > 0
    with torch.inference_mode():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_vgg16_feature_weights(served: dict[str, dict[str, torch.Tensor]]) -> None:
    features = VGG16_Weights.IMAGENET1K_FEATURES
    assert features.meta["categories"] is None
    assert math.isnan(features.meta["_metrics"]["ImageNet-1K"]["acc@1"])
    preset = features.transforms()
    assert preset.std == [1 / 255] * 3 and preset.mean == [0.48235, 0.45882, 0.40784]

    checkpoint = _reference_state_dict("vgg16")
    # As in the real file, only `features` holds trained values.
    served[features.file_name] = {
        k: v.clone().fill_(math.nan) if k.startswith("classifier.") else v.clone() for k, v in checkpoint.items()
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = models.vgg16(weights="IMAGENET1K_FEATURES").eval()
    assert model.classifier[6].out_features == 1000
    assert torch.equal(model.features[28].weight, checkpoint["features.28.weight"])
    with torch.inference_mode():
        assert torch.isfinite(model.features(torch.randn(1, 3, 32, 32))).all()

    # Pretrained features with a new head: the natural fine-tuning start (the reference refuses it).
    with pytest.warns(UserWarning, match=r"num_classes=10 differs from the 1000 outputs.*classifier\.6\.weight"):
        model = models.vgg16(weights=features, num_classes=10)
    assert torch.isfinite(model.classifier[6].weight).all() and model.classifier[6].out_features == 10
    assert torch.equal(model.features[0].weight, checkpoint["features.0.weight"])
