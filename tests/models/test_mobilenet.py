"""MobileNet V2 and V3 builder arguments and configuration, checked against the reference."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair
from visionzoo import models
from visionzoo.models import mobilenet, mobilenetv2, mobilenetv3
from visionzoo.models._utils import make_divisible
from visionzoo.ops import SqueezeExcitation


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 7, "dropout": 0.5},
        {"width_mult": 0.75},
        {"width_mult": 1.4, "round_nearest": 4},
        {"inverted_residual_setting": [[1, 16, 1, 1], [4, 24, 2, 2], [6, 40, 2, 2]]},
        {"norm_layer": partial(nn.BatchNorm2d, eps=1e-3, momentum=0.3)},
    ],
)
def test_mobilenet_v2_kwargs_parity(kwargs: dict[str, Any]) -> None:
    ref, ours = build_pair("mobilenet_v2", **kwargs)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 72))


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "mobilenet_v3_small"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"width_mult": 0.75},
        {"reduced_tail": True},
        {"dilated": True},
        {"width_mult": 1.25, "reduced_tail": True, "dilated": True, "num_classes": 5},
    ],
)
def test_mobilenet_v3_kwargs_parity(name: str, kwargs: dict[str, Any]) -> None:
    ref, ours = build_pair(name, **kwargs)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 72))


def test_mobilenet_v3_block_and_norm_layer_parity() -> None:
    norm = partial(nn.BatchNorm2d, eps=1e-5, momentum=0.1)
    sigmoid_se = partial(SqueezeExcitation, scale_activation=nn.Sigmoid)
    ours_block = partial(mobilenetv3.InvertedResidual, se_layer=sigmoid_se)
    ref_block = partial(
        reference.models.mobilenetv3.InvertedResidual,
        se_layer=partial(reference.ops.SqueezeExcitation, scale_activation=nn.Sigmoid),
    )
    ref, ours = build_pair(
        "mobilenet_v3_small", reference_kwargs={"block": ref_block}, block=ours_block, norm_layer=norm, dropout=0.1
    )
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 72))


@pytest.mark.parametrize("arch", ["mobilenet_v3_large", "mobilenet_v3_small"])
@pytest.mark.parametrize(
    "options", [{}, {"width_mult": 0.5, "reduced_tail": True}, {"dilated": True, "width_mult": 1.3}]
)
def test_inverted_residual_configs_match_the_reference(arch: str, options: dict[str, Any]) -> None:
    ours, ours_last = mobilenetv3._mobilenet_v3_conf(arch, **options)
    ref, ref_last = reference.models.mobilenetv3._mobilenet_v3_conf(arch, **options)
    assert ours_last == ref_last
    assert [vars(c) for c in ours] == [vars(c) for c in ref]
    assert all(isinstance(c, mobilenetv3.InvertedResidualConfig) for c in ours)


def test_mobilenet_v3_squeeze_excitation_uses_hardsigmoid_and_rounded_width() -> None:
    model = models.mobilenet_v3_large()
    se_layers = [m for m in model.modules() if isinstance(m, SqueezeExcitation)]
    assert len(se_layers) == 8
    for se in se_layers:
        assert isinstance(se.scale_activation, nn.Hardsigmoid)
        assert se.fc1.out_channels == make_divisible(se.fc1.in_channels // 4, 8)
        assert se.fc1.out_channels % 8 == 0
    # 72 expanded channels squeeze to 18, rounded up to 24.
    assert model.features[4].block[2].fc1.out_channels == 24


def test_mobilenet_v3_dilated_tail_keeps_resolution() -> None:
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert models.mobilenet_v3_small().eval().features(x).shape[-2:] == (2, 2)
        dilated = models.mobilenet_v3_small(dilated=True, reduced_tail=True).eval()
        assert dilated.features(x).shape[-3:] == (6 * 48, 4, 4)
    assert dilated.classifier[0].out_features == 512


def test_custom_blocks_are_used() -> None:
    class TracedV2(mobilenetv2.InvertedResidual):
        pass

    class TracedV3(mobilenetv3.InvertedResidual):
        pass

    v2 = models.mobilenet_v2(block=TracedV2)
    assert all(isinstance(m, TracedV2) for m in v2.features[1:-1])
    v3 = models.mobilenet_v3_small(block=TracedV3)
    assert all(isinstance(m, TracedV3) for m in v3.features[1:-1])
    assert v2.classifier[0].p == 0.2 and models.mobilenet_v2(dropout=0.4).classifier[0].p == 0.4


def test_blocks_mark_where_resolution_drops() -> None:
    """Detection and segmentation backbones cut MobileNet stages at blocks flagged ``_is_cn``."""
    for name in ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"):
        ours = models.get_model(name).features
        ref = reference.models.get_model(name).features
        assert [getattr(b, "_is_cn", False) for b in ours] == [getattr(b, "_is_cn", False) for b in ref]
        assert [getattr(b, "out_channels", None) for b in ours] == [getattr(b, "out_channels", None) for b in ref]


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="inverted_residual_setting"):
        models.mobilenet_v2(inverted_residual_setting=[])
    with pytest.raises(ValueError, match=r"\[t, c, n, s\]"):
        models.mobilenet_v2(inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2]])
    with pytest.raises(ValueError, match="stride must be 1 or 2, got 3"):
        models.mobilenet_v2(inverted_residual_setting=[[1, 16, 1, 3]])
    with pytest.raises(ValueError, match="at least one"):
        mobilenetv3.MobileNetV3([], last_channel=1280)
    with pytest.raises(TypeError, match="InvertedResidualConfig"):
        mobilenetv3.MobileNetV3([[16, 3, 16, 16]], last_channel=1280)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'RE'.*'HS'"):
        mobilenetv3.InvertedResidualConfig(16, 3, 16, 16, False, "relu", 1, 1, 1.0)
    with pytest.raises(ValueError, match="Unknown MobileNetV3 arch"):
        mobilenetv3._mobilenet_v3_conf("mobilenet_v3_medium")
    with pytest.raises(ValueError, match="last_channel"):
        models.mobilenet_v3_large(last_channel=512)
    with pytest.raises(TypeError, match="num_class"):
        models.mobilenet_v3_small(num_class=10)


def test_mobilenet_module_reexports_both_versions() -> None:
    assert set(reference.models.mobilenet.__all__) <= set(mobilenet.__all__)
    assert mobilenet.MobileNetV2 is mobilenetv2.MobileNetV2
    assert mobilenet.mobilenet_v3_small is models.mobilenet_v3_small
    assert mobilenet.InvertedResidualConfig is mobilenetv3.InvertedResidualConfig
