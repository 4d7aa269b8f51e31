"""Parity of the Feature Pyramid Network and its extra blocks with the reference: state_dict keys, init, outputs."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import pytest
import torch
from torch import nn

import visionzoo.ops as ops
from tests.reference import ops as ref_ops

ref_fpn = ref_ops.feature_pyramid_network


def _inputs() -> OrderedDict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return OrderedDict(
        [("a", torch.randn(2, 4, 16, 15, generator=gen)), ("b", torch.randn(2, 8, 8, 8, generator=gen)),
         ("c", torch.randn(2, 16, 3, 4, generator=gen))]
    )  # fmt: skip


@pytest.mark.parametrize("extra", [None, "maxpool", "p6p7_c5", "p6p7_p5"])
@pytest.mark.parametrize("norm", [None, nn.BatchNorm2d])
def test_fpn_parity(extra: str | None, norm: type[nn.Module] | None) -> None:
    def build(module):
        blocks = {
            None: lambda: None,
            "maxpool": module.LastLevelMaxPool,
            "p6p7_c5": partial(module.LastLevelP6P7, 16, 5),
            "p6p7_p5": partial(module.LastLevelP6P7, 5, 5),
        }
        torch.manual_seed(3)  # same draws: the initialisation must match too
        return module.FeaturePyramidNetwork([4, 8, 16], 5, blocks[extra](), norm_layer=norm)

    ours, theirs = build(ops), build(ref_fpn)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [
        (k, v.shape) for k, v in theirs.state_dict().items()
    ]
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)
    assert repr(ours) == repr(theirs)
    ours.eval()
    theirs.eval()
    out_ours, out_theirs = ours(_inputs()), theirs(_inputs())
    assert list(out_ours) == list(out_theirs)
    for key in out_theirs:
        torch.testing.assert_close(out_ours[key], out_theirs[key], rtol=0, atol=0)


def test_fpn_state_dict_keys_and_version_1_checkpoints() -> None:
    fpn = ops.FeaturePyramidNetwork([4, 8], 5, ops.LastLevelMaxPool())
    assert list(fpn.state_dict()) == [
        "inner_blocks.0.0.weight", "inner_blocks.0.0.bias", "inner_blocks.1.0.weight", "inner_blocks.1.0.bias",
        "layer_blocks.0.0.weight", "layer_blocks.0.0.bias", "layer_blocks.1.0.weight", "layer_blocks.1.0.bias",
    ]  # fmt: skip
    # A version-1 checkpoint kept the convolutions directly in the lists: inner_blocks.0.weight.
    old = OrderedDict((k.replace(".0.", ".", 1), torch.randn_like(v)) for k, v in fpn.state_dict().items())
    old._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    fresh = ops.FeaturePyramidNetwork([4, 8], 5, ops.LastLevelMaxPool())
    fresh.load_state_dict(old, strict=True)
    assert torch.equal(fresh.inner_blocks[1][0].weight, old["inner_blocks.1.weight"])
    # And our checkpoints load into the reference.
    ref_fpn.FeaturePyramidNetwork([4, 8], 5, ref_fpn.LastLevelMaxPool()).load_state_dict(fresh.state_dict())


def test_fpn_errors() -> None:
    with pytest.raises(ValueError, match="must not contain 0"):
        ops.FeaturePyramidNetwork([4, 0], 5)
    with pytest.raises(TypeError, match="ExtraFPNBlock"):
        ops.FeaturePyramidNetwork([4], 5, extra_blocks=nn.Identity())
    with pytest.raises(ValueError, match="expected 3 feature maps, got 2"):
        ops.FeaturePyramidNetwork([4, 8, 16], 5)(OrderedDict(list(_inputs().items())[:2]))
