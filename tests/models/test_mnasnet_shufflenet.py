"""MNASNet (builder arguments, checkpoint format versions) and ShuffleNet V2 (arguments, channel shuffle)."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.fx
from torch import nn

from tests import reference
from tests.models._parity import assert_same_outputs, build_pair, pair
from visionzoo import models
from visionzoo.models import MNASNet0_5_Weights, mnasnet, shufflenetv2
from visionzoo.models._api import WeightsEnum

X = torch.randn(2, 3, 64, 72)

# --------------------------------------------------------------------------------------------------
# MNASNet
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, kwargs", [("mnasnet0_5", {"num_classes": 7, "dropout": 0.5}), ("mnasnet1_3", {"dropout": 0.0})]
)
def test_mnasnet_kwargs_parity(name: str, kwargs: dict[str, Any]) -> None:
    ref, ours = build_pair(name, **kwargs)
    assert_same_outputs(ref, ours, X)
    assert ours.classifier[0].p == kwargs["dropout"]


@pytest.mark.parametrize("alpha", [0.35, 1.7])
def test_mnasnet_any_alpha_parity(alpha: float) -> None:
    ref, ours = pair(lambda: reference.models.mnasnet.MNASNet(alpha), lambda: mnasnet.MNASNet(alpha))
    assert_same_outputs(ref, ours, X)


def test_mnasnet_bad_arguments() -> None:
    with pytest.raises(ValueError, match="alpha must be positive"):
        mnasnet.MNASNet(0.0)
    with pytest.raises(ValueError, match="alpha=1.0"):
        models.mnasnet1_0(alpha=0.5)
    with pytest.raises(ValueError, match="kernel_size 3 or 5"):
        mnasnet._InvertedResidual(8, 8, 7, 1, 3)
    with pytest.raises(ValueError, match="stride 1 or 2"):
        mnasnet._InvertedResidual(8, 8, 3, 3, 3)


def _randomise_norm_statistics(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def _version_1_checkpoint(alpha: float) -> OrderedDict[str, torch.Tensor]:
    """What a version-1 MNASNet saved: a 32-16 channel stem whatever alpha, and metadata version 1."""
    ref_mnasnet = reference.models.mnasnet
    torch.manual_seed(0)
    model = ref_mnasnet.MNASNet(alpha)
    momentum = ref_mnasnet._BN_MOMENTUM
    old_stem = [
        nn.Conv2d(3, 32, 3, padding=1, stride=2, bias=False),
        nn.BatchNorm2d(32, momentum=momentum),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False),
        nn.BatchNorm2d(32, momentum=momentum),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 16, 1, bias=False),
        nn.BatchNorm2d(16, momentum=momentum),
        ref_mnasnet._stack(16, ref_mnasnet._get_depths(alpha)[2], 3, 2, 3, 3, momentum),
    ]
    for index, layer in enumerate(old_stem):
        model.layers[index] = layer
    model._version = 1
    _randomise_norm_statistics(model)
    state_dict = model.state_dict()
    assert state_dict._metadata[""]["version"] == 1
    return state_dict


def _reference_loading(state_dict: OrderedDict[str, torch.Tensor], alpha: float) -> nn.Module:
    model = reference.models.mnasnet.MNASNet(alpha)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.load_state_dict(state_dict)
    return model.eval()


@pytest.fixture
def serve_checkpoint(monkeypatch: pytest.MonkeyPatch) -> list[OrderedDict[str, torch.Tensor]]:
    """Make every weights entry "download" the checkpoint appended to the returned list, as torch.load gives it
    (an OrderedDict that keeps its ``_metadata``)."""
    served: list[OrderedDict[str, torch.Tensor]] = []

    def get_state_dict(self: WeightsEnum, progress: bool = True, check_hash: bool = True) -> dict:
        checkpoint = served[-1]
        copy = OrderedDict(checkpoint)
        copy._metadata = checkpoint._metadata  # type: ignore[attr-defined]
        return copy

    monkeypatch.setattr(WeightsEnum, "get_state_dict", get_state_dict)
    return served


def test_version_1_checkpoint_loads_into_a_model(tmp_path: Path) -> None:
    checkpoint = _version_1_checkpoint(0.5)
    ours = mnasnet.MNASNet(0.5)
    assert ours.layers[0].out_channels == 16
    with pytest.warns(UserWarning, match="version 1 of MNASNet"):
        ours.load_state_dict(checkpoint)
    assert ours.layers[0].out_channels == 32
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in checkpoint.items()}
    assert_same_outputs(_reference_loading(checkpoint, 0.5), ours.eval(), X)

    # The rebuilt model saves as version 1, so its own checkpoints load back the same way.
    saved = ours.state_dict()
    assert saved._metadata[""]["version"] == 1
    path = tmp_path / "resaved.pth"
    torch.save(saved, path)
    again = mnasnet.MNASNet(0.5)
    with pytest.warns(UserWarning, match="version 1"):
        again.load_state_dict(torch.load(path, weights_only=True))
    assert_same_outputs(ours, again.eval(), X)


def test_version_1_checkpoint_loads_through_the_weights_enum(
    serve_checkpoint: list[OrderedDict[str, torch.Tensor]],
) -> None:
    checkpoint = _version_1_checkpoint(0.5)
    serve_checkpoint.append(checkpoint)
    with pytest.warns(UserWarning, match="version 1 of MNASNet"):
        model = models.mnasnet0_5(weights=MNASNet0_5_Weights.IMAGENET1K_V1).eval()
    assert not any(t.is_meta for t in model.state_dict().values())
    assert model.layers[0].weight.shape == (32, 3, 3, 3) and model._version == 1
    assert_same_outputs(_reference_loading(checkpoint, 0.5), model, X)

    with pytest.warns(UserWarning, match="version 1 of MNASNet"):
        with pytest.warns(UserWarning, match="num_classes=10 differs"):
            fine_tune = models.mnasnet0_5(weights="DEFAULT", num_classes=10)
    assert fine_tune.classifier[1].out_features == 10
    assert torch.equal(fine_tune.layers[0].weight, checkpoint["layers.0.weight"])


def test_version_1_checkpoint_loads_from_a_local_file(tmp_path: Path) -> None:
    checkpoint = _version_1_checkpoint(0.75)
    path = tmp_path / "old_mnasnet.pth"
    torch.save(checkpoint, path)
    with pytest.warns(UserWarning, match="version 1 of MNASNet"):
        model = models.mnasnet0_75(weights=path).eval()
    assert_same_outputs(_reference_loading(checkpoint, 0.75), model, X)


def test_version_1_at_alpha_1_needs_no_change(serve_checkpoint: list[OrderedDict[str, torch.Tensor]]) -> None:
    checkpoint = _version_1_checkpoint(1.0)
    serve_checkpoint.append(checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = models.mnasnet1_0(weights="DEFAULT").eval()
        mnasnet.MNASNet(1.0).load_state_dict(checkpoint)
    assert model._version == 2
    assert_same_outputs(_reference_loading(checkpoint, 1.0), model, X)


def test_current_and_plain_checkpoints_load_silently(serve_checkpoint: list[OrderedDict[str, torch.Tensor]]) -> None:
    torch.manual_seed(0)
    state_dict = reference.models.mnasnet0_5().state_dict()
    assert state_dict._metadata[""]["version"] == 2
    serve_checkpoint.append(state_dict)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = models.mnasnet0_5(weights="DEFAULT")
        mnasnet.MNASNet(0.5).load_state_dict(dict(state_dict))  # no metadata: taken as the model's own layout
    assert model.layers[0].out_channels == 16 and model._version == 2


def test_unknown_checkpoint_version_is_refused(serve_checkpoint: list[OrderedDict[str, torch.Tensor]]) -> None:
    checkpoint = _version_1_checkpoint(0.5)
    checkpoint._metadata[""]["version"] = 3
    serve_checkpoint.append(checkpoint)
    with pytest.raises(ValueError, match="version 1 or 2, got version 3"):
        models.mnasnet0_5(weights="DEFAULT")
    with pytest.raises(ValueError, match="version 1 or 2, got version 3"):
        mnasnet.MNASNet(0.5).load_state_dict(checkpoint)


# --------------------------------------------------------------------------------------------------
# ShuffleNet V2
# --------------------------------------------------------------------------------------------------


def test_shufflenet_num_classes_and_custom_stages_parity() -> None:
    ref, ours = build_pair("shufflenet_v2_x0_5", num_classes=7)
    assert_same_outputs(ref, ours, X)

    stages = {"stages_repeats": [2, 3, 1], "stages_out_channels": [16, 32, 64, 128, 256]}
    ref, ours = pair(
        lambda: reference.models.shufflenetv2.ShuffleNetV2(**stages), lambda: shufflenetv2.ShuffleNetV2(**stages)
    )
    assert_same_outputs(ref, ours, X)


def test_shufflenet_custom_unit_is_used() -> None:
    class Unit(shufflenetv2.InvertedResidual):
        pass

    model = models.shufflenet_v2_x1_0(inverted_residual=Unit)
    units = [*model.stage2, *model.stage3, *model.stage4]
    assert len(units) == 16 and all(isinstance(u, Unit) for u in units)


def test_channel_shuffle_matches_reference_on_any_device_and_traces() -> None:
    x = torch.randn(2, 12, 3, 5)
    for groups in (2, 3, 4):
        expected = reference.models.shufflenetv2.channel_shuffle(x, groups)
        assert torch.equal(shufflenetv2.channel_shuffle(x, groups), expected)
    assert shufflenetv2.channel_shuffle(torch.empty(2, 12, 3, 5, device="meta"), 2).shape == (2, 12, 3, 5)

    stage = models.shufflenet_v2_x0_5().stage2.eval()
    traced = torch.fx.symbolic_trace(stage)
    assert any(node.op == "call_method" and node.target == "transpose" for node in traced.graph.nodes)
    y = torch.randn(1, 24, 16, 16)
    with torch.inference_mode():
        torch.testing.assert_close(traced(y), stage(y))


def test_shufflenet_bad_arguments() -> None:
    with pytest.raises(ValueError, match="stages_repeats must be 3"):
        shufflenetv2.ShuffleNetV2([4, 8], [24, 48, 96, 192, 1024])
    with pytest.raises(ValueError, match="stages_out_channels must be 5"):
        shufflenetv2.ShuffleNetV2([4, 8, 4], [24, 48, 96, 192])
    with pytest.raises(ValueError, match="stages_out_channels="):
        models.shufflenet_v2_x1_0(stages_out_channels=[24, 48, 96, 192, 1024])
    with pytest.raises(ValueError, match="stride 1, 2 or 3"):
        shufflenetv2.InvertedResidual(24, 24, 4)
    with pytest.raises(ValueError, match=r"inp \(24\) must equal"):
        shufflenetv2.InvertedResidual(24, 48, 1)
