"""EfficientNet / EfficientNetV2-specific builder arguments and behaviours, checked against the reference."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair, pair
from visionzoo import models
from visionzoo.models._api import WeightsEnum
from visionzoo.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig

EFFICIENTNETS = models.list_models(module=models, include="efficientnet_*")


def _layer_facts(model: nn.Module) -> list[tuple[Any, ...]]:
    """What the state_dict does not pin down: norm eps/momentum, stochastic depth and dropout probabilities."""
    facts: list[tuple[Any, ...]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            facts.append((name, module.eps, module.momentum))
        elif type(module).__name__ == "StochasticDepth":
            facts.append((name, round(module.p, 10), module.mode))
        elif isinstance(module, nn.Dropout):
            facts.append((name, module.p))
    return facts


@pytest.mark.parametrize("name", EFFICIENTNETS)
def test_norms_and_drop_probabilities_match_the_reference(name: str) -> None:
    """B0-B4: PyTorch BatchNorm; B5-B7: TF eps and momentum; V2: TF eps only. Built on meta: no data."""
    with torch.device("meta"):
        ours = models.get_model(name)
        ref = reference.models.get_model(name)
    assert _layer_facts(ours) == _layer_facts(ref)


def test_batchnorm_settings_per_generation() -> None:
    with torch.device("meta"):
        norms = {
            name: {(m.eps, m.momentum) for m in models.get_model(name).modules() if isinstance(m, nn.BatchNorm2d)}
            for name in ("efficientnet_b4", "efficientnet_b5", "efficientnet_v2_s")
        }
    assert norms == {
        "efficientnet_b4": {(1e-5, 0.1)},
        "efficientnet_b5": {(1e-3, 0.01)},
        "efficientnet_v2_s": {(1e-3, 0.1)},
    }


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("efficientnet_b0", {"num_classes": 7, "dropout": 0.5, "stochastic_depth_prob": 0.35}),
        ("efficientnet_b0", {"norm_layer": partial(nn.BatchNorm2d, eps=0.1)}),
        ("efficientnet_b1", {"num_classes": 3}),
        ("efficientnet_v2_s", {"stochastic_depth_prob": 0.0, "dropout": 0.0}),
    ],
)
def test_kwargs_parity(name: str, kwargs: dict[str, Any]) -> None:
    ref, ours = build_pair(name, **kwargs)
    assert _layer_facts(ours) == _layer_facts(ref)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 72))


def test_training_mode_matches_the_reference_draw_for_draw() -> None:
    """Dropout and stochastic depth consume the random stream in the same order as the reference."""
    ref, ours = build_pair("efficientnet_b0", stochastic_depth_prob=0.5, dropout=0.5)
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(1)
    expected = ref.train()(x)
    torch.manual_seed(1)
    actual = ours.train()(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours.state_dict(), ref.state_dict())  # same running statistics afterwards


def _custom_setting(lib: Any) -> list[Any]:
    """Fused and MBConv stages with scaling and odd expand ratios, from the given library's classes."""
    return [
        lib.FusedMBConvConfig(1, 3, 1, 16, 16, 1),
        lib.FusedMBConvConfig(2, 3, 2, 16, 24, 2),
        lib.MBConvConfig(3, 5, 2, 24, 40, 2, depth_mult=1.6),
        lib.MBConvConfig(1, 3, 1, 40, 40, 1),
    ]


@pytest.mark.parametrize("last_channel", [None, 96])
def test_custom_stages_and_last_channel_match_the_reference(last_channel: int | None) -> None:
    from visionzoo.models import efficientnet as ours_lib

    ref_lib = reference.models.efficientnet
    assert repr(_custom_setting(ours_lib)) == repr(_custom_setting(ref_lib)).replace(
        "torchvision.models.efficientnet", "visionzoo.models.efficientnet"
    )
    ref, ours = pair(
        lambda: ref_lib.EfficientNet(_custom_setting(ref_lib), 0.1, num_classes=5, last_channel=last_channel),
        lambda: EfficientNet(_custom_setting(ours_lib), 0.1, num_classes=5, last_channel=last_channel),
    )
    assert ours.features[-1].out_channels == (last_channel or 4 * 40)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 40, 48))


def test_scaling_rounds_widths_to_multiples_of_8_and_depths_up() -> None:
    cnf = MBConvConfig(6, 5, 2, 40, 80, 3, width_mult=1.1, depth_mult=1.2)
    assert (cnf.input_channels, cnf.out_channels, cnf.num_layers) == (48, 88, 4)
    assert MBConvConfig.adjust_channels(32, 1.4) == 48 and MBConvConfig.adjust_depth(3, 3.1) == 10
    fused = FusedMBConvConfig(4, 3, 2, 24, 48, 4)
    assert (fused.input_channels, fused.out_channels, fused.num_layers) == (24, 48, 4)


def test_variant_defaults_can_be_overridden() -> None:
    """Unlike the reference (a TypeError), B5-B7 and V2 accept their own norm_layer and last_channel."""
    with torch.device("meta"):
        b5 = models.efficientnet_b5(norm_layer=partial(nn.BatchNorm2d, eps=0.01))
        v2 = models.efficientnet_v2_s(last_channel=640, num_classes=10)
    assert {m.eps for m in b5.modules() if isinstance(m, nn.BatchNorm2d)} == {0.01}
    assert v2.classifier[1].in_features == 640 and v2.classifier[1].out_features == 10


def test_feature_info_describes_the_feature_maps() -> None:
    """One entry per stride: the last block at that stride, its channels and its stride."""
    model = models.efficientnet_v2_s().eval()
    x = torch.randn(1, 3, 64, 64)
    described = {info["name"]: info for info in model.feature_info}
    with torch.inference_mode():
        for index, layer in enumerate(model.features):
            x = layer(x)
            info = described.pop(f"features.{index}", None)
            if info is not None:
                assert x.shape[1:] == (info["channels"], 64 // info["stride"], 64 // info["stride"])
    assert not described
    assert [f["stride"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert [f["name"] for f in model.feature_info] == [
        "features.1",
        "features.2",
        "features.3",
        "features.5",
        "features.7",
    ]
    assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 1280, 2, 2)


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        EfficientNet([], 0.2)
    with pytest.raises(TypeError, match="MBConvConfig"):
        EfficientNet([(1, 3, 1, 32, 16, 1)], 0.2)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        EfficientNet([MBConvConfig(1, 3, 3, 32, 16, 1)], 0.2)
    with pytest.raises(ValueError, match="stage 1 of inverted_residual_setting takes 24 channels but stage 0 produces"):
        EfficientNet([MBConvConfig(1, 3, 1, 32, 16, 1), MBConvConfig(6, 3, 2, 24, 40, 1)], 0.2)
    with pytest.raises(ValueError, match="num_classes must be positive"):
        models.efficientnet_b0(num_classes=0)
    with pytest.raises(ValueError, match="fix inverted_residual_setting"):
        models.efficientnet_b0(inverted_residual_setting=[MBConvConfig(1, 3, 1, 32, 16, 1)])
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        models.efficientnet_b0(stochastic_depth_prob=1.5)
    with pytest.raises(ValueError, match="dropout"):
        models.efficientnet_b0(dropout=-0.1)


def test_legacy_pretrained_means_the_first_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """B1's DEFAULT is the retrained V2, but ``pretrained=True`` keeps meaning the original V1 weights."""
    torch.manual_seed(0)
    checkpoint = reference.models.efficientnet_b1().state_dict()
    fetched: list[WeightsEnum] = []

    def fake_get_state_dict(self: WeightsEnum, progress: bool = True, check_hash: bool = True) -> dict:
        fetched.append(self)
        return dict(checkpoint)

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake_get_state_dict)
    with pytest.warns(UserWarning, match="EfficientNet_B1_Weights.IMAGENET1K_V1"):
        models.efficientnet_b1(pretrained=True)
    model = models.efficientnet_b1(weights="DEFAULT")
    assert fetched == [models.EfficientNet_B1_Weights.IMAGENET1K_V1, models.EfficientNet_B1_Weights.IMAGENET1K_V2]
    torch.testing.assert_close(model.state_dict(), checkpoint)


def test_local_checkpoint_loads_onto_the_meta_built_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = reference.models.efficientnet_b0().eval()
    path = tmp_path / "b0.pth"
    torch.save(ref.state_dict(), path)
    ours = models.efficientnet_b0(weights=path).eval()
    assert_same_outputs(ref, ours, torch.randn(1, 3, 64, 64))
