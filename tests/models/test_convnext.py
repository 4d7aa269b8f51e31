"""ConvNeXt-specific builder arguments and behaviours, checked against the reference."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair, pair
from visionzoo import models
from visionzoo.models.convnext import CNBlock, CNBlockConfig, ConvNeXt, LayerNorm2d

CONVNEXTS = models.list_models(module=models, include="convnext_*")


def _layer_facts(model: nn.Module) -> list[tuple[Any, ...]]:
    """What the state_dict does not pin down: norm types and eps, stochastic depth probabilities."""
    facts: list[tuple[Any, ...]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm):
            facts.append((name, type(module).__name__, module.eps))
        elif type(module).__name__ == "StochasticDepth":
            facts.append((name, round(module.p, 10), module.mode))
    return facts


@pytest.mark.parametrize("name", CONVNEXTS)
def test_norms_and_drop_probabilities_match_the_reference(name: str) -> None:
    """Per-block stochastic depth grows linearly to the variant's default; checked on meta (no data)."""
    with torch.device("meta"):
        ours = models.get_model(name)
        ref = reference.models.get_model(name)
    assert _layer_facts(ours) == _layer_facts(ref)
    probabilities = [m.p for m in ours.modules() if type(m).__name__ == "StochasticDepth"]
    last = {"convnext_tiny": 0.1, "convnext_small": 0.4}.get(name, 0.5)
    assert probabilities[0] == 0.0 and probabilities[-1] == pytest.approx(last)


@pytest.fixture(scope="module")
def tiny() -> ConvNeXt:
    """One ConvNeXt-T for the tests that only look at it (building one takes seconds on 2 cores)."""
    return models.convnext_tiny().eval()


def test_kwargs_parity() -> None:
    kwargs = {"num_classes": 7, "layer_scale": 0.5, "stochastic_depth_prob": 0.25}
    ref_norm = {"norm_layer": partial(reference.models.convnext.LayerNorm2d, eps=1e-2)}
    ref, ours = build_pair(
        "convnext_tiny", reference_kwargs=ref_norm, norm_layer=partial(LayerNorm2d, eps=1e-2), **kwargs
    )
    assert _layer_facts(ours) == _layer_facts(ref)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 72))


def test_block_argument_matches_the_reference() -> None:
    """``block`` replaces every block; ``norm_layer`` reaches only the stem, downsampling and head norms."""
    setting = [(16, 32, 2), (32, None, 1)]
    ref_lib = reference.models.convnext
    ref, ours = pair(
        lambda: ref_lib.ConvNeXt(
            [ref_lib.CNBlockConfig(*s) for s in setting],
            layer_scale=1.0,
            block=partial(ref_lib.CNBlock, norm_layer=partial(nn.LayerNorm, eps=1e-2)),
            norm_layer=partial(ref_lib.LayerNorm2d, eps=1e-3),
        ),
        lambda: ConvNeXt(
            [CNBlockConfig(*s) for s in setting],
            layer_scale=1.0,
            block=partial(CNBlock, norm_layer=partial(nn.LayerNorm, eps=1e-2)),
            norm_layer=partial(LayerNorm2d, eps=1e-3),
        ),
    )
    assert _layer_facts(ours) == _layer_facts(ref)
    assert {m.eps for m in ours.features[1].modules() if isinstance(m, nn.LayerNorm)} == {1e-2}
    assert ours.classifier[0].eps == 1e-3
    assert_same_outputs(ref, ours, torch.randn(2, 3, 32, 40))


def test_training_mode_matches_the_reference_draw_for_draw() -> None:
    """Stochastic depth consumes the random stream in the same order as the reference."""
    setting = [(32, 64, 2), (64, None, 2)]
    ref_lib = reference.models.convnext
    ref, ours = pair(
        lambda: ref_lib.ConvNeXt(
            [ref_lib.CNBlockConfig(*s) for s in setting], stochastic_depth_prob=0.6, layer_scale=1.0
        ),
        lambda: ConvNeXt([CNBlockConfig(*s) for s in setting], stochastic_depth_prob=0.6, layer_scale=1.0),
    )
    x = torch.randn(8, 3, 32, 32)
    torch.manual_seed(1)
    expected = ref.train()(x)
    torch.manual_seed(1)
    actual = ours.train()(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_custom_block_setting_matches_the_reference() -> None:
    """Stages that end in a downsampling layer, and a setting that is not four stages long."""
    setting = [(16, 24, 1), (24, 48, 2), (48, 40, 1)]
    ref_lib = reference.models.convnext
    assert repr(CNBlockConfig(16, None, 2)) == repr(ref_lib.CNBlockConfig(16, None, 2))
    ref, ours = pair(
        lambda: ref_lib.ConvNeXt([ref_lib.CNBlockConfig(*s) for s in setting], num_classes=4),
        lambda: ConvNeXt([CNBlockConfig(*s) for s in setting], num_classes=4),
    )
    assert ours.classifier[-1].in_features == 40
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 64))


def test_layer_norm_2d_normalises_each_pixel_over_channels() -> None:
    torch.manual_seed(0)
    ours, ref = LayerNorm2d(6, eps=1e-3), reference.models.convnext.LayerNorm2d(6, eps=1e-3)
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(ours(x), ref(x))
    channels_last = nn.functional.layer_norm(x.permute(0, 2, 3, 1), (6,), ours.weight, ours.bias, 1e-3)
    torch.testing.assert_close(ours(x), channels_last.permute(0, 3, 1, 2))


def test_layer_scale_starts_at_the_given_value(tiny: ConvNeXt) -> None:
    block = CNBlock(8, layer_scale=0.25, stochastic_depth_prob=0.0)
    assert block.layer_scale.shape == (8, 1, 1) and torch.all(block.layer_scale == 0.25)
    assert torch.all(tiny.features[1][0].layer_scale == 1e-6)


def test_minimum_input_size_follows_the_downsampling(tiny: ConvNeXt) -> None:
    with pytest.raises(ValueError, match="at least 32x32 pixels, got 31x40"):
        tiny(torch.randn(1, 3, 31, 40))
    with torch.inference_mode():
        assert tiny(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
    small = ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=2).eval()
    with pytest.raises(ValueError, match="at least 8x8"):
        small(torch.randn(1, 3, 7, 8))
    assert small(torch.randn(1, 3, 8, 8)).shape == (1, 2)


def test_single_block_gets_no_stochastic_depth() -> None:
    """The reference divides by (blocks - 1) and fails on a single block; here that block keeps p = 0."""
    model = ConvNeXt([CNBlockConfig(8, None, 1)], stochastic_depth_prob=0.5)
    assert model.features[1][0].stochastic_depth.p == 0.0


def test_feature_info_describes_the_stages(tiny: ConvNeXt) -> None:
    model = tiny
    features = {}
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        for index, layer in enumerate(model.features):
            x = features[f"features.{index}"] = layer(x)
    for info in model.feature_info:
        assert features[info["name"]].shape[1:] == (info["channels"], 64 // info["stride"], 64 // info["stride"])
    assert [(f["channels"], f["stride"]) for f in model.feature_info] == [(96, 4), (192, 8), (384, 16), (768, 32)]
    with torch.inference_mode():
        assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 768, 2, 2)


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        ConvNeXt([])
    with pytest.raises(TypeError, match="CNBlockConfig"):
        ConvNeXt([(96, 192, 3)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="stage 1 of block_setting takes 48 channels but stage 0 produces 32"):
        ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(48, None, 1)])
    with pytest.raises(ValueError, match="num_classes must be positive"):
        models.convnext_tiny(num_classes=0)
    with pytest.raises(ValueError, match="fix block_setting"):
        models.convnext_tiny(block_setting=[CNBlockConfig(8, None, 1)])
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        models.convnext_tiny(stochastic_depth_prob=2.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        models.convnext_tiny(drop_path=0.1)
