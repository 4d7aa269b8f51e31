"""RegNet-specific checks: the design-space arithmetic, the RegNet arguments, and builder rules."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair, pair
from visionzoo import models
from visionzoo.models import regnet
from visionzoo.models.regnet import BlockParams, RegNet
from visionzoo.ops import FrozenBatchNorm2d

_FIELDS = ("depths", "widths", "group_widths", "bottleneck_multipliers", "strides", "se_ratio")


def _reference_block_params(**design: Any) -> Any:
    return reference.models.regnet.BlockParams.from_init_params(**design)


def _assert_same_block_params(design: dict[str, Any]) -> None:
    ours = BlockParams.from_init_params(**design)
    theirs = _reference_block_params(**design)
    for field in _FIELDS:
        assert getattr(ours, field) == getattr(theirs, field), f"{field} of {design}"


@pytest.mark.parametrize("name", sorted(regnet._DESIGNS))
def test_block_params_of_every_builder_match_the_reference(name: str) -> None:
    _assert_same_block_params(regnet._DESIGNS[name])


@pytest.mark.parametrize(
    "design",
    [
        # Bottleneck ratios other than 1 exercise the width/group-width adjustment.
        dict(depth=13, w_0=24, w_a=36.44, w_m=2.49, group_width=8, bottleneck_multiplier=2.0, se_ratio=0.25),
        dict(depth=20, w_0=64, w_a=40.5, w_m=2.3, group_width=24, bottleneck_multiplier=0.75),
        dict(depth=10, w_0=56, w_a=12.0, w_m=3.1, group_width=1, bottleneck_multiplier=0.25),
        # A group width larger than every bottleneck is capped per stage.
        dict(depth=9, w_0=16, w_a=8.0, w_m=2.0, group_width=512),
        # w_a = 0: every block has width w_0, so a single stage.
        dict(depth=5, w_0=96, w_a=0.0, w_m=2.5, group_width=16),
        # Exact ties of the width rounding that float32 decides: 120 * 2.1 / 8 is 31.5 in exact arithmetic but
        # 31.4999... in float32, so the second stage is 248 wide, not 256.
        dict(depth=39, w_0=120, w_a=23.0, w_m=2.1, group_width=8),
        dict(depth=10, w_0=440, w_a=36.0, w_m=2.1, group_width=8),
        dict(depth=15, w_0=200, w_a=80.0, w_m=2.3, group_width=40),
        # depth 0 gives no stage at all, as in the reference.
        dict(depth=0, w_0=48, w_a=27.89, w_m=2.09, group_width=8),
    ],
)
def test_block_params_of_custom_designs_match_the_reference(design: dict[str, Any]) -> None:
    _assert_same_block_params(design)


def test_block_params_match_the_reference_on_random_designs() -> None:
    """Two-decimal slopes and ratios, as in published designs, land on float32 ties of the width rounding."""
    rng = random.Random(0)
    for _ in range(300):
        design = dict(
            depth=rng.randint(1, 40),
            w_0=8 * rng.randint(1, 80),
            w_a=round(rng.uniform(0, 250), 2),
            w_m=round(rng.uniform(1.05, 3.2), 2),
            group_width=rng.choice([1, 8, 16, 24, 56, 112, 232]),
            bottleneck_multiplier=rng.choice([1.0, 0.25, 0.5, 2.0]),
            se_ratio=rng.choice([None, 0.25]),
        )
        _assert_same_block_params(design)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(w_0=0), "w_0"),
        (dict(w_0=44), "w_0"),
        (dict(w_a=-1.0), "w_a"),
        (dict(w_m=1.0), "w_m"),
        (dict(depth=-1), "depth"),
        (dict(group_width=0), "group_width"),
        (dict(bottleneck_multiplier=0.0), "bottleneck_multiplier"),
        (dict(bottleneck_multiplier=0.01), "without channels"),
    ],
)
def test_block_params_reject_invalid_designs(bad: dict[str, Any], message: str) -> None:
    design = {**regnet._DESIGNS["regnet_y_400mf"], **bad}
    with pytest.raises(ValueError, match=message):
        BlockParams.from_init_params(**design)


def test_block_params_need_one_entry_per_stage() -> None:
    with pytest.raises(ValueError, match="one entry per stage"):
        BlockParams(depths=[1, 2], widths=[32], group_widths=[8], bottleneck_multipliers=[1.0], strides=[2])


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("regnet_x_400mf", {"num_classes": 7}),
        ("regnet_y_400mf", {"stem_width": 16}),
        ("regnet_y_400mf", {"activation": nn.SiLU}),
        ("regnet_x_400mf", {"norm_layer": FrozenBatchNorm2d}),
    ],
)
def test_kwargs_parity(name: str, kwargs: dict[str, Any]) -> None:
    frozen = {"norm_layer": reference.ops.FrozenBatchNorm2d} if kwargs.get("norm_layer") is FrozenBatchNorm2d else {}
    ref, ours = build_pair(name, reference_kwargs=frozen, **kwargs)
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 72))


def test_custom_design_parity() -> None:
    """A RegNet built directly from design parameters, with SE and a bottleneck ratio of 2."""
    design = dict(depth=8, w_0=24, w_a=20.0, w_m=2.3, group_width=8, bottleneck_multiplier=2.0, se_ratio=0.25)
    ref, ours = pair(
        lambda: reference.models.regnet.RegNet(_reference_block_params(**design), num_classes=10, stem_width=24),
        lambda: RegNet(BlockParams.from_init_params(**design), num_classes=10, stem_width=24),
    )
    assert_same_outputs(ref, ours, torch.randn(2, 3, 64, 64))


def _recorded_calls(module: Any, name: str) -> list[tuple[Any, ...]]:
    """The positional arguments ``module``'s ``name`` builder passes to its stem and block constructors."""
    calls: list[tuple[Any, ...]] = []

    def recording(cls: type) -> type:
        class Recording(cls):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any) -> None:
                calls.append((cls.__name__, *args))
                super().__init__(*args)

        return Recording

    family = module.regnet
    getattr(module, name)(stem_type=recording(family.SimpleStemIN), block_type=recording(family.ResBottleneckBlock))
    # The norm layer (index 4 of a block call, 3 of a stem call) is a BatchNorm2d either way; the rest must agree.
    return [call[:3] + call[4:] if call[0] == "SimpleStemIN" else call[:4] + call[5:] for call in calls]


@pytest.mark.parametrize("name", ["regnet_x_400mf", "regnet_y_400mf"])
def test_custom_stem_and_block_types_are_called_like_the_reference(name: str) -> None:
    ours, theirs = _recorded_calls(models, name), _recorded_calls(reference.models, name)
    assert ours == theirs
    assert len(ours) == 1 + sum(BlockParams.from_init_params(**regnet._DESIGNS[name]).depths)


@pytest.mark.parametrize("name", ["regnet_y_400mf", "regnet_x_400mf"])
def test_random_initialisation_is_the_references_draw_for_draw(name: str) -> None:
    """Same modules in the same order, same init rules (SE biases keep PyTorch's default): same tensors."""
    ref, ours = build_pair(name)  # pair checks the initial tensors, draw for draw
    ref_norms = [m for m in ref.modules() if isinstance(m, nn.BatchNorm2d)]
    our_norms = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [(m.eps, m.momentum) for m in our_norms] == [(m.eps, m.momentum) for m in ref_norms]


def test_feature_info_and_forward_features() -> None:
    model = models.regnet_y_800mf().eval()
    widths = BlockParams.from_init_params(**regnet._DESIGNS["regnet_y_800mf"]).widths
    assert [f["channels"] for f in model.feature_info] == [32, *widths]  # the stem, then the stages
    assert [f["stride"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert all(model.get_submodule(f["name"]) is not None for f in model.feature_info)
    with torch.inference_mode():
        assert model.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, widths[-1], 2, 2)


def test_builders_fix_their_design() -> None:
    with pytest.raises(ValueError, match="se_ratio"):
        models.regnet_y_400mf(se_ratio=0.5)
    with pytest.raises(ValueError, match="depth, w_0"):
        models.regnet_x_400mf(depth=3, w_0=16)
    with pytest.raises(ValueError, match="block_params"):
        models.regnet_x_400mf(block_params=BlockParams.from_init_params(**regnet._DESIGNS["regnet_x_800mf"]))
    # Repeating the builder's own design is accepted.
    same = BlockParams.from_init_params(**regnet._DESIGNS["regnet_x_400mf"])
    assert isinstance(models.regnet_x_400mf(block_params=same), RegNet)
    with pytest.raises(TypeError, match="BlockParams"):
        RegNet({"depths": [1]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_classes"):
        models.regnet_x_400mf(num_classes=0)


def test_legacy_pretrained_for_regnet_y_128gf_has_no_weights() -> None:
    with pytest.raises(ValueError, match="no weights for the legacy pretrained=True"):
        models.regnet_y_128gf(pretrained=True)
    with pytest.raises(ValueError, match="No weights available"):
        reference.models.regnet_y_128gf(pretrained=True)


def test_loads_a_local_checkpoint(tmp_path: Any) -> None:
    torch.manual_seed(0)
    ref = reference.models.regnet_x_400mf().eval()
    path = tmp_path / "regnet_x_400mf.pth"
    torch.save(ref.state_dict(), path)
    ours = models.regnet_x_400mf(weights=path).eval()
    assert_same_outputs(ref, ours, torch.randn(1, 3, 64, 64))
