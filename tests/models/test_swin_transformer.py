"""Swin Transformer (V1 and V2) specifics, checked against the reference.

The registry tests (test_classification.py) already cover every builder's parity at one input size, its
weights entries and presets; this file covers windows, shifts and padding at many sizes (on small custom
models, so that it stays fast), the position-bias buffers, training mode, checkpoint loading, tracing and
argument errors.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.fx
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair, pair
from visionzoo import models
from visionzoo.models.swin_transformer import (
    PatchMerging,
    PatchMergingV2,
    ShiftedWindowAttention,
    ShiftedWindowAttentionV2,
    SwinTransformer,
    SwinTransformerBlockV2,
)

SWINS = models.list_models(module=models, include="swin_*")
REF = reference.models.swin_transformer

# Sizes that exercise padding to whole windows, odd maps before patch merging, one-window stages (no shift),
# non-square maps and the smallest input (a single patch).
ODD_SIZES = [(64, 72), (36, 52), (97, 33), (12, 100), (4, 4)]


def _small_pair(v2: bool, **kwargs: Any) -> tuple[nn.Module, SwinTransformer]:
    """A 3-stage Swin with a non-square 3x4 window: the reference (seeded) and ours with its weights."""
    config: dict[str, Any] = dict(
        patch_size=[4, 4], embed_dim=16, depths=[2, 2, 2], num_heads=[2, 2, 4], window_size=[3, 4], **kwargs
    )
    if v2:
        return pair(
            lambda: REF.SwinTransformer(
                **config, block=REF.SwinTransformerBlockV2, downsample_layer=REF.PatchMergingV2
            ),
            lambda: SwinTransformer(**config, block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2),
        )
    return pair(lambda: REF.SwinTransformer(**config), lambda: SwinTransformer(**config))


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_windows_shifts_and_padding_match_the_reference_at_many_sizes(v2: bool) -> None:
    ref, ours = _small_pair(v2)
    for height, width in ODD_SIZES:
        assert_same_outputs(ref, ours, torch.randn(2, 3, height, width))


@pytest.mark.parametrize("name,size", [("swin_t", (100, 76)), ("swin_v2_t", (120, 88))])
def test_full_models_at_sizes_not_divisible_by_the_windows(name: str, size: tuple[int, int]) -> None:
    ref, ours = build_pair(name)
    assert_same_outputs(ref, ours, torch.randn(1, 3, *size))


@pytest.mark.parametrize("window,shift", [([7, 7], [3, 3]), ([8, 8], [4, 0]), ([3, 5], [1, 2]), ([1, 1], [0, 0])])
def test_attention_layers_and_their_buffers_match_the_reference(window: list[int], shift: list[int]) -> None:
    pairs = (
        (ShiftedWindowAttention, REF.ShiftedWindowAttention),
        (ShiftedWindowAttentionV2, REF.ShiftedWindowAttentionV2),
    )
    for ours_cls, ref_cls in pairs:
        if ours_cls is ShiftedWindowAttentionV2 and 1 in window:
            continue  # the reference divides by window - 1 (NaN offsets); ours is tested for that below
        # pair compares the fresh tensors too: the computed buffers must equal the reference's before any loading.
        ref, ours = pair(
            lambda ref_cls=ref_cls: ref_cls(32, window, shift, num_heads=4),
            lambda ours_cls=ours_cls: ours_cls(32, window, shift, num_heads=4),
        )
        with torch.no_grad():
            ref.qkv.bias.normal_()  # includes V2's key bias, which both must ignore
            ours.qkv.bias.copy_(ref.qkv.bias)
        for size in ((2, 9, 13), (1, window[0], window[1]), (1, 2 * window[0] + 1, 3)):
            assert_same_outputs(ref, ours, torch.randn(*size, 32))


def test_v2_key_bias_is_ignored_and_zeroed_at_construction() -> None:
    attention = ShiftedWindowAttentionV2(16, [4, 4], [2, 2], num_heads=2).eval()
    assert torch.all(attention.qkv.bias[16:32] == 0)
    x = torch.randn(1, 8, 8, 16)
    with torch.no_grad():
        nn.init.normal_(attention.qkv.bias)
        before = attention(x)
        attention.qkv.bias[16:32] += 5.0
        torch.testing.assert_close(attention(x), before)
        attention.qkv.bias[:16] += 5.0
        assert not torch.allclose(attention(x), before)


def test_v2_large_temperatures_are_clamped_like_the_reference() -> None:
    """Per-head temperatures above 100 (logit scale log(100)) are clamped to 100, as in the reference."""
    ref, ours = pair(
        lambda: REF.ShiftedWindowAttentionV2(16, [4, 4], [2, 2], num_heads=2),
        lambda: ShiftedWindowAttentionV2(16, [4, 4], [2, 2], num_heads=2),
    )
    with torch.no_grad():
        for model in (ref, ours):
            model.logit_scale.copy_(torch.tensor([math.log(100.0) - 0.5, 7.0]).view(2, 1, 1))
    assert_same_outputs(ref, ours, torch.randn(2, 10, 11, 16))


def test_v2_offsets_stay_finite_for_a_single_token_window() -> None:
    """The reference divides by window - 1 and gets NaN for a 1-wide window; here the offset is just 0."""
    attention = ShiftedWindowAttentionV2(8, [1, 3], [0, 1], num_heads=2)
    assert torch.isfinite(attention.relative_coords_table).all()
    out = attention(torch.randn(1, 3, 6, 8))
    assert out.shape == (1, 3, 6, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("cls,ref_cls", [(PatchMerging, "PatchMerging"), (PatchMergingV2, "PatchMergingV2")])
def test_patch_merging_pads_odd_maps_and_keeps_leading_dimensions(cls: type[nn.Module], ref_cls: str) -> None:
    ref, ours = pair(lambda: getattr(REF, ref_cls)(6), lambda: cls(6))
    for shape in ((2, 5, 7, 6), (2, 4, 4, 6), (3, 2, 1, 1, 6)):
        x = torch.randn(*shape)
        expected_hw = (math.ceil(shape[-3] / 2), math.ceil(shape[-2] / 2))
        assert ours(x).shape == (*shape[:-3], *expected_hw, 12)
        assert_same_outputs(ref, ours, x)


def _layer_facts(model: nn.Module) -> list[tuple[Any, ...]]:
    """What the state_dict does not pin down: norm eps, drop probabilities, windows and shifts."""
    facts: list[tuple[Any, ...]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm):
            facts.append((name, module.eps))
        elif isinstance(module, nn.Dropout):
            facts.append((name, module.p))
        elif type(module).__name__ == "StochasticDepth":
            facts.append((name, round(module.p, 10), module.mode))
        elif hasattr(module, "shift_size"):
            windows = (list(module.window_size), list(module.shift_size))
            facts.append((name, *windows, module.attention_dropout, module.dropout))
    return facts


@pytest.mark.parametrize("name", SWINS)
def test_layers_match_the_reference_on_meta(name: str) -> None:
    with torch.device("meta"):
        ours, ref = models.get_model(name), reference.models.get_model(name)
    assert _layer_facts(ours) == _layer_facts(ref)
    probabilities = [m.p for m in ours.modules() if type(m).__name__ == "StochasticDepth"]
    assert probabilities[0] == 0.0 and probabilities[-1] == pytest.approx({"t": 0.2, "s": 0.3, "b": 0.5}[name[-1]])


def test_builder_kwargs_match_the_reference() -> None:
    kwargs = {"num_classes": 7, "mlp_ratio": 2.0, "dropout": 0.1, "attention_dropout": 0.2}
    ref, ours = build_pair("swin_v2_t", norm_layer=partial(nn.LayerNorm, eps=1e-3), **kwargs)
    assert _layer_facts(ours) == _layer_facts(ref)
    assert ours.head.out_features == 7 and ours.features[1][0].mlp[0].out_features == 192
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 72))


def test_builders_fix_the_architecture_but_take_the_rest() -> None:
    with pytest.raises(ValueError, match=r"fixes window_size=\[7, 7\]; got window_size=\[8, 8\]"):
        models.swin_t(window_size=[8, 8])
    with pytest.raises(ValueError, match="fixes embed_dim=96"):
        models.swin_v2_t(embed_dim=64)
    with torch.device("meta"):
        model = models.swin_t(window_size=[7, 7], stochastic_depth_prob=0.0)
        v2 = models.swin_v2_s()
    assert all(m.p == 0.0 for m in model.modules() if type(m).__name__ == "StochasticDepth")
    assert isinstance(v2.features[2], PatchMergingV2) and isinstance(v2.features[5][17], SwinTransformerBlockV2)
    with pytest.raises(TypeError, match="unexpected keyword"):
        models.swin_t(drop_path=0.1)


def test_training_mode_matches_the_reference_draw_for_draw() -> None:
    """Stochastic depth and output dropout consume the random stream in the reference's order."""
    ref, ours = _small_pair(True, stochastic_depth_prob=0.5, dropout=0.2)
    x = torch.randn(8, 3, 40, 44)
    torch.manual_seed(1)
    expected = ref.train()(x)
    torch.manual_seed(1)
    actual = ours.train()(x)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_gradients_match_the_reference(v2: bool) -> None:
    """Every parameter (bias table, logit scale, position-bias MLP, ...) gets the reference's gradient. In float64:
    the patch embedding's float32 gradients sum many terms and differ by rounding alone."""
    ref, ours = (model.double() for model in _small_pair(v2))
    x = torch.randn(2, 3, 36, 52, dtype=torch.float64)
    ref(x).square().sum().backward()
    ours(x).square().sum().backward()
    ref_grads = dict(ref.named_parameters())
    for name, parameter in ours.named_parameters():
        expected = ref_grads[name].grad
        assert parameter.grad is not None and expected is not None, name
        torch.testing.assert_close(parameter.grad, expected, atol=1e-9, rtol=1e-7, msg=name)


def test_attention_dropout_acts_in_training_only() -> None:
    ref, ours = _small_pair(False, attention_dropout=0.5)
    x = torch.randn(2, 3, 32, 32)
    assert_same_outputs(ref, ours, x)  # eval: no dropout
    ours.train()
    assert not torch.allclose(ours(x), ours(x))


@pytest.mark.parametrize("name", ["swin_t", "swin_v2_t"])
def test_local_checkpoint_fills_every_tensor_of_a_model_built_on_meta(name: str, tmp_path: Path) -> None:
    """build_model builds on meta and loads by assignment: the position buffers must come from the file."""
    torch.manual_seed(0)
    ref = reference.models.get_model(name).eval()
    path = tmp_path / f"{name}.pth"
    torch.save(ref.state_dict(), path)
    ours = models.get_model(name, weights=path).eval()
    assert not any(t.is_meta for t in [*ours.parameters(), *ours.buffers()])
    for key, buffer in ref.named_buffers():
        assert torch.equal(dict(ours.named_buffers())[key], buffer), key
    assert_same_outputs(ref, ours, torch.randn(1, 3, 64, 72))

    incomplete = {k: v for k, v in ref.state_dict().items() if not k.endswith("relative_position_index")}
    torch.save(incomplete, path)
    with pytest.raises(ValueError, match=r"missing keys: features\.1\.0\.attn\.relative_position_index"):
        models.get_model(name, weights=path)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_symbolic_trace_gives_the_same_outputs(v2: bool) -> None:
    """Shape-dependent padding and shifting are recorded as single calls, so tracing works at any size."""
    _, ours = _small_pair(v2)
    traced = torch.fx.symbolic_trace(ours)
    for size in ((64, 72), (20, 28)):
        x = torch.randn(1, 3, *size)
        with torch.inference_mode():
            torch.testing.assert_close(traced(x), ours(x))


def test_feature_info_and_forward_features() -> None:
    _, model = _small_pair(False)
    x = torch.randn(1, 3, 96, 64)
    outputs = {}
    with torch.inference_mode():
        for index, layer in enumerate(model.features):
            x = outputs[f"features.{index}"] = layer(x)
        assert model.forward_features(torch.randn(1, 3, 96, 64)).shape == (1, 64, 6, 4)
    for info in model.feature_info:
        assert outputs[info["name"]].shape[1:] == (96 // info["stride"], 64 // info["stride"], info["channels"])
    assert [(f["channels"], f["stride"]) for f in model.feature_info] == [(16, 4), (32, 8), (64, 16)]


def test_bad_arguments_and_inputs_raise_clear_errors() -> None:
    config: dict[str, Any] = dict(patch_size=[4, 4], embed_dim=16, depths=[2], num_heads=[2], window_size=[4, 4])
    with pytest.raises(ValueError, match="same positive number of stages"):
        SwinTransformer(**{**config, "num_heads": [2, 4]})
    with pytest.raises(ValueError, match="stage 0 has width 16, not divisible by 3 heads"):
        SwinTransformer(**{**config, "num_heads": [3]})
    with pytest.raises(ValueError, match="window_size must be an int or a sequence of 2 ints"):
        SwinTransformer(**{**config, "window_size": [4, 4, 4]})
    with pytest.raises(ValueError, match="num_classes must be positive"):
        SwinTransformer(**config, num_classes=0)
    with pytest.raises(ValueError, match="mlp_ratio must be positive"):
        SwinTransformer(**config, mlp_ratio=0)
    with pytest.raises(ValueError, match=r"0 <= shift_size < window_size"):
        ShiftedWindowAttention(16, [4, 4], [4, 0], num_heads=2)
    with pytest.raises(ValueError, match="attention_dropout must be in"):
        ShiftedWindowAttention(16, [4, 4], [0, 0], num_heads=2, attention_dropout=1.5)
    model = SwinTransformer(**config, num_classes=3).eval()
    with pytest.raises(ValueError, match="at least 4x4 pixels, got 3x8"):
        model(torch.randn(1, 3, 3, 8))
    assert model(torch.randn(1, 3, 4, 4)).shape == (1, 3)
