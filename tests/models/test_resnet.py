"""ResNet-specific builder arguments, checked against the reference."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair
from visionzoo import models
from visionzoo.ops import FrozenBatchNorm2d


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("resnet18", {"num_classes": 7}),
        ("resnet34", {"zero_init_residual": True}),
        ("resnet50", {"replace_stride_with_dilation": [False, True, True]}),
        ("resnet50", {"groups": 2, "width_per_group": 32}),
        ("resnet18", {"norm_layer": FrozenBatchNorm2d}),
    ],
)
def test_kwargs_parity(name: str, kwargs: dict[str, Any]) -> None:
    frozen = {"norm_layer": reference.ops.FrozenBatchNorm2d} if kwargs.get("norm_layer") is FrozenBatchNorm2d else {}
    ref, ours = build_pair(name, reference_kwargs=frozen, **kwargs)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 72))


def test_zero_init_residual_zeroes_last_norm_of_each_block() -> None:
    model = models.resnet50(zero_init_residual=True)
    assert all(block.bn3.weight.abs().sum() == 0 for stage in (model.layer1, model.layer4) for block in stage)
    assert models.resnet50().layer1[0].bn3.weight.abs().sum() > 0


def test_dilation_keeps_resolution_and_feature_info() -> None:
    model = models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    assert [f["stride"] for f in model.feature_info] == [2, 4, 8, 8, 8]  # the stem, then layer1..layer4
    assert [f["channels"] for f in model.feature_info] == [64, 256, 512, 1024, 2048]
    assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 2048, 8, 8)
    assert [f["stride"] for f in models.resnet18().feature_info] == [2, 4, 8, 16, 32]


def test_basic_block_rejects_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="groups=1"):
        models.resnet18(groups=2)
    with pytest.raises(ValueError, match="dilation"):
        models.resnet34(replace_stride_with_dilation=[False, False, True])


def test_named_variants_fix_their_arguments() -> None:
    with pytest.raises(ValueError, match="groups=32"):
        models.resnext50_32x4d(groups=8)
    with pytest.raises(ValueError, match="width_per_group=128"):
        models.wide_resnet50_2(width_per_group=64)
    assert isinstance(models.resnext50_32x4d(groups=32).layer1[0].conv2, nn.Conv2d)
